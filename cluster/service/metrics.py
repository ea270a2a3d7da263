"""Every service's request metrics, in a registry of its own app's (several apps may share a process).

`<namespace>_requests_total{operation, status}`, `<namespace>_request_duration_seconds{operation}` (the
gateway keeps its older name), received and sent body bytes by operation, errors by operation and
error kind, and the requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _InFlight:
    """Read at scrape time: no lock taken per request."""

    def __init__(self, name: str, count: Callable[[], int]) -> None:
        self._name = name
        self._count = count

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._name, "Requests being served", value=self._count())


class RequestMetrics:
    def __init__(self, namespace: str, in_flight: Callable[[], int], duration_name: str | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        by_op = ("operation",)
        self._requests = Counter(f"{namespace}_requests", "Requests answered", ("operation", "status"), registry=r)
        self._duration = Histogram(
            duration_name or f"{namespace}_request_duration_seconds",
            "Time to answer a request, to the end of its body",
            by_op,
            buckets=BUCKETS,
            registry=r,
        )
        self._received = Counter(f"{namespace}_received_bytes", "Request body bytes received", by_op, registry=r)
        self._sent = Counter(f"{namespace}_sent_bytes", "Response body bytes sent", by_op, registry=r)
        self._errors = Counter(f"{namespace}_errors", "Errors answered, by kind", ("operation", "error"), registry=r)
        r.register(_InFlight(f"{namespace}_requests_in_flight", in_flight))
        # labels() checks and locks on every call: a few percent of a small request's CPU. The
        # children it returns are stable, so each is looked up once.
        self._counted: dict[tuple[str, int], Any] = {}
        self._per_op: dict[str, tuple[Any, Any, Any]] = {}
        self._failed: dict[tuple[str, str], Any] = {}

    def observe(self, operation: str, status: int, seconds: float, received: int, sent: int, error: str) -> None:
        counted = self._counted.get((operation, status))
        if counted is None:
            counted = self._counted[operation, status] = self._requests.labels(operation, str(status))
        per_op = self._per_op.get(operation)
        if per_op is None:
            per_op = self._per_op[operation] = (
                self._duration.labels(operation),
                self._received.labels(operation),
                self._sent.labels(operation),
            )
        counted.inc()
        timed, received_bytes, sent_bytes = per_op
        timed.observe(seconds)
        if received:
            received_bytes.inc(received)
        if sent:
            sent_bytes.inc(sent)
        if error:
            failed = self._failed.get((operation, error))
            if failed is None:
                failed = self._failed[operation, error] = self._errors.labels(operation, error)
            failed.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
