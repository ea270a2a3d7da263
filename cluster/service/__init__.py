"""The one service skeleton: auth on the resolved route, health, metrics, access log, error mapping."""

from cluster.service.app import (
    REQUEST_ID,
    SERVICE,
    Authenticator,
    ClusterAuthenticator,
    Endpoint,
    Exchange,
    Handler,
    ReadyCheck,
    Service,
    exchange,
    exposition,
    make_service_app,
    request_key,
)
from cluster.service.errors import ErrorAnswer, Errors, Failure
from cluster.service.metrics import CONTENT_TYPE, RequestMetrics

__all__ = [
    "CONTENT_TYPE",
    "REQUEST_ID",
    "SERVICE",
    "Authenticator",
    "ClusterAuthenticator",
    "Endpoint",
    "ErrorAnswer",
    "Errors",
    "Exchange",
    "Failure",
    "Handler",
    "ReadyCheck",
    "RequestMetrics",
    "Service",
    "exchange",
    "exposition",
    "make_service_app",
    "request_key",
]
