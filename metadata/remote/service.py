"""The metadata service: an Index served over HTTP to the rest of the cluster.

    POST /v1/<operation>   an Index method (metadata/remote/protocol.py); needs a valid cluster signature
    GET  /health/live      the process answers (shallow)
    GET  /health/ready     the index answers a read (deep)
    GET  /metrics          Prometheus text: requests and their durations by operation and outcome

A /v1 request is authenticated before anything else is looked at: a missing or bad signature, or
a body that does not match the hash it was signed with, gets 403 and the index is not touched.
The app serves the index it is given and does not close it: its owner does, after the runner's
cleanup (which waits for requests in flight).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from cluster import auth
from cluster.auth import ClusterAuthError
from metadata.index import Index
from metadata.remote import protocol
from metadata.replica import protocol as replica_protocol
from metadata.replica import service as replica_service
from metadata.replica.store import ReplicaStore

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0  # seconds for the readiness read
READY_PROBE = ".ready-probe"  # not a valid S3 bucket name, so never a real bucket


@dataclass
class _Service:
    index: Index
    secret: bytes
    registry: CollectorRegistry
    requests: Counter
    seconds: Histogram


SERVICE = web.AppKey("meta_service", _Service)


class _Failure(Exception):
    """An error answer: raised by handlers, rendered (and counted) by the middleware."""

    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        super().__init__(doc["message"])
        self.status = status
        self.doc = doc


def _fail(kind_status: tuple[str, int], message: str) -> _Failure:
    kind, status = kind_status
    return _Failure(status, {"error": kind, "message": message})


async def _call(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICE]
    try:
        claim = auth.verify(svc.secret, request.method, request.rel_url.raw_path_qs, request.headers.get(auth.HEADER))
    except ClusterAuthError as exc:
        raise _fail(protocol.FORBIDDEN, str(exc)) from None
    if claim == auth.STREAMING:
        raise _fail(protocol.FORBIDDEN, "the metadata service takes no streamed bodies")
    body = await request.read()
    if auth.body_hash(body) != claim:  # the claim itself is authentic: no need for a constant-time compare
        raise _fail(protocol.FORBIDDEN, "the body does not match its signature")
    op = protocol.OPERATIONS.get(request.match_info["name"])
    if op is None:
        raise _fail(("NotFound", 404), f"no operation {request.match_info['name']!r}")
    if request.method != "POST":
        raise _fail(("MethodNotAllowed", 405), "operations are called with POST")
    try:
        args = protocol.decode_request(op, body)
        result = await getattr(svc.index, op.name)(**args)
    except Exception as exc:
        known = protocol.error_document(exc)
        if known is None:
            raise
        raise _Failure(*known) from None
    return web.Response(body=protocol.encode_result(result), content_type=protocol.MSGPACK)


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    store = request.app.get(replica_service.STORE)
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            if store is not None:
                # A replica is ready when its own store answers: the cluster's quorum is the gateways' concern,
                # and a replica must come up while its peers are still down.
                await store.count("buckets")
                return web.json_response({"status": "ready", "initialized": store.initialized})
            await request.app[SERVICE].index.get_bucket(READY_PROBE)
    except Exception as exc:
        return web.json_response({"status": "unavailable", "error": repr(exc)}, status=503)
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICE].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _not_found(request: web.Request) -> web.Response:
    raise _fail(("NotFound", 404), f"no such endpoint {request.path}")


def _operation(request: web.Request) -> str | None:
    """The metric label of a /v1 request (None for other paths): a bounded set, whatever the path says."""
    rop = request.match_info.get("rop")
    if rop is not None:
        return f"replica_{rop}" if rop in replica_protocol.OPERATIONS else "unknown"
    name = request.match_info.get("name")
    if name is None:
        return None
    return name if name in protocol.OPERATIONS else "unknown"


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Errors as JSON (never a traceback), one access log line, and the metrics of each /v1 request."""
    start = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # raised by aiohttp itself: an unknown method, a body too large
            raise _fail((protocol.HTTP_KINDS.get(exc.status, "HTTPError"), exc.status), exc.reason) from None
        except _Failure:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            raise _fail(protocol.INTERNAL, "the metadata service failed; see its log") from None
        outcome = "ok" if response.status < 400 else protocol.HTTP_KINDS.get(response.status, "HTTPError")
    except _Failure as failure:
        response = web.json_response(failure.doc, status=failure.status)
        outcome = failure.doc["error"]
    elapsed = time.perf_counter() - start
    svc = request.app[SERVICE]
    op = _operation(request)
    if op is not None:
        svc.requests.labels(op, outcome).inc()
        svc.seconds.labels(op, outcome).observe(elapsed)
    line = {
        "method": request.method,
        "path": request.path,
        "op": op,
        "status": response.status,
        "outcome": outcome,
        "ms": round(elapsed * 1000, 3),
        "peer": request.remote,
        "bytes_in": request.content_length or 0,
        "bytes_out": response.content_length or 0,
    }
    # Probes and scrapes come every few seconds: keep them out of the log unless debugging.
    # Replica traffic (three calls per write, anti-entropy rounds) is logged only when debugging or failing.
    loud = (op is not None and not op.startswith("replica_")) or response.status >= 400
    level = logging.INFO if loud else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "%s", json.dumps(line))
    return response


def make_meta_app(index: Index, secret: bytes, replica: ReplicaStore | None = None) -> web.Application:
    """The metadata service over `index`, accepting requests signed with the cluster `secret`.

    With `replica`, it also serves the replica protocol (metadata/replica/service.py) over that store.
    """
    registry = CollectorRegistry()  # per app: several apps in one process (tests) keep separate counts
    labels = ("operation", "outcome")
    svc = _Service(
        index=index,
        secret=secret,
        registry=registry,
        requests=Counter("tessera_meta_requests", "Index operations served", labels, registry=registry),
        seconds=Histogram(
            "tessera_meta_request_duration_seconds", "Time to serve an index operation", labels, registry=registry
        ),
    )
    app = web.Application(client_max_size=protocol.MAX_BODY, middlewares=[_observe])
    app[SERVICE] = svc
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", protocol.PREFIX + "{name:.*}", _call)
    if replica is not None:
        replica_service.add_routes(app, replica, secret)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
