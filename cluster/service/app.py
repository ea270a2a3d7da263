"""The service skeleton: routes that say how they are served, and one middleware that serves them all.

Authentication is judged on the route the router resolved (request.match_info.route), never on the
text of the path: every route is authenticated unless it was registered as open, a route added to
the router behind the skeleton's back is authenticated too, and a request that matches no route is
answered 404/405 without any handler running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_urldispatcher import AbstractRoute

from cluster import auth
from cluster.service.access_log import AccessLog
from cluster.service.errors import Errors, Failure
from cluster.service.metrics import CONTENT_TYPE, RequestMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]  # (ready, the JSON document to answer)
READY_TIMEOUT = 10.0  # a readiness check that takes longer is "not ready"


def request_key(name: str, kind: type) -> Any:
    """A typed request key where aiohttp has them (3.14+ warns about plain strings); the name before."""
    make = getattr(web, "RequestKey", None)
    return make(name, kind) if make is not None else name


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How the skeleton serves one route."""

    operation: str  # its name in metrics and logs
    open: bool = False  # answered without authentication: probes and scrapes only
    quiet: bool = False  # logged at DEBUG unless it fails: probes, scrapes, chatty internal traffic
    streamed_body: bool = False  # its handler checks a hash-signed body itself as it reads it


_UNROUTED = Endpoint("unrouted")
_UNKNOWN = Endpoint("unknown")  # a route added without the skeleton: authenticated all the same


@dataclass(slots=True)
class Exchange:
    """One request as the skeleton accounts for it; handlers add what only they know."""

    operation: str
    quiet: bool
    bytes_in: int = 0  # 0: the request's Content-Length is taken
    bytes_out: int = 0  # 0: the response's own length is taken
    error: str = ""  # the error kind answered (or met mid-stream)
    counted: bool = True  # False: another process accounts for it (a request forwarded there)
    claim: str = ""  # the cluster signature's body claim, for a handler that checks a streamed body
    chain: auth.FrameChain | None = None  # a STREAMING body's frame MACs, for the handler to check


EXCHANGE: Any = request_key("tessera.exchange", Exchange)
REQUEST_ID: Any = request_key("tessera.request_id", str)  # set by a service that gives requests ids


def exchange(request: web.Request) -> Exchange:
    return request[EXCHANGE]


Authenticator = Callable[[web.Request, Endpoint], Awaitable[None]]


class Service:
    """One service's skeleton: its endpoints, metrics, access log, authenticator and error vocabulary."""

    def __init__(
        self,
        app: web.Application,
        *,
        namespace: str,
        log: logging.Logger,
        errors: Errors,
        authenticate: Authenticator | None,
        ready: ReadyCheck | None = None,
        access_log: logging.Logger | None = None,
        level: int = logging.INFO,
        duration_name: str | None = None,
        access_writer: AccessLog | None = None,
    ) -> None:
        """access_writer: where a request's access line goes, in place of the access_log logger (which
        then gets only the 5xx ones, as warnings)."""
        self.app = app
        self._writer = access_writer
        self.errors = errors
        self.in_flight = 0
        self.metrics = RequestMetrics(namespace, lambda: self.in_flight, duration_name)
        self._log = log
        self._access = access_log or log
        self._level = level
        self._authenticate = authenticate
        self._ready = ready
        self._endpoints: dict[AbstractRoute, Endpoint] = {}

    def flush_access_log(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    @property
    def registry(self) -> Any:
        return self.metrics.registry

    def route(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        operation: str,
        open: bool = False,
        quiet: bool = False,
        streamed_body: bool = False,
        expect_handler: Any = None,
    ) -> AbstractRoute:
        """expect_handler: aiohttp's, run before any middleware (its default sends 100 Continue at once)."""
        route = self.app.router.add_route(method, path, handler, expect_handler=expect_handler)
        self._endpoints[route] = Endpoint(operation, open, quiet, streamed_body)
        return route

    def add_probes(self) -> None:
        """GET /health/live, /health/ready and /metrics: open, for probes and scrapers."""
        self.route("GET", "/health/live", self.live, operation="live", open=True, quiet=True)
        self.route("GET", "/health/ready", self.ready, operation="ready", open=True, quiet=True)
        self.route("GET", "/metrics", self.scrape, operation="metrics", open=True, quiet=True)

    # -- probes and scrapes

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Shallow: the process answers."""
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.StreamResponse:
        """Deep: the service's own check, bounded."""
        ok, doc = True, {"status": "ready"}
        if self._ready is not None:
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    ok, doc = await self._ready()
            except Exception as exc:
                ok, doc = False, {"status": "not ready", "error": repr(exc)}
        return web.json_response(doc, status=200 if ok else 503)

    async def scrape(self, request: web.Request) -> web.StreamResponse:
        return exposition(self.metrics.render())

    # -- failures

    def failure(self, request: web.Request, exc: BaseException) -> Failure:
        """What to tell the client about exc (also for an error sent inside a stream): a bug is logged
        here, once, with its traceback, and answered as an internal error."""
        failure = self.errors.classify(exc)
        if failure is None:
            self._log.error("%s %s failed", request.method, request.rel_url.raw_path, exc_info=exc)
            failure = self.errors.internal(exc)
        request[EXCHANGE].error = failure.kind
        return failure

    def _answer_failure(self, request: web.Request, exc: Exception) -> web.StreamResponse | None:
        if isinstance(exc, web.HTTPException) and exc.status < 400:  # not a failure (a redirect): pass it on
            return web.Response(status=exc.status, reason=exc.reason, headers=exc.headers)
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # Nothing went wrong here and nothing more can be sent: counted as 499, no traceback.
            request[EXCHANGE].error = request[EXCHANGE].error or "disconnected"
            return None
        return self.errors.render(request, self.failure(request, exc))

    def protocol_error(self, request: web.BaseRequest, exc: HttpProcessingError) -> web.StreamResponse:
        """A request the HTTP parser refused (cluster/service/connection.py): answered in the service's
        vocabulary and logged as one access-log line, without a traceback."""
        failure = self.errors.protocol(exc)
        ex = request[EXCHANGE] = Exchange("malformed", False, error=failure.kind)
        response = self.errors.render(request, failure)  # type: ignore[arg-type]
        self._account(request, ex, response, 0.0)  # type: ignore[arg-type]
        return response

    # -- the middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        endpoint = self._endpoints.get(match.route)
        if endpoint is None:
            endpoint = _UNROUTED if match.http_exception is not None else _UNKNOWN
        ex = request[EXCHANGE] = Exchange(endpoint.operation, endpoint.quiet)
        start = time.perf_counter()
        self.in_flight += 1
        response: web.StreamResponse | None = None
        try:
            try:
                if match.http_exception is not None:  # nothing routed: no handler runs
                    raise match.http_exception
                if not endpoint.open and self._authenticate is not None:
                    await self._authenticate(request, endpoint)
                response = await handler(request)
            except asyncio.CancelledError:
                ex.error = ex.error or "cancelled"  # the client went away and the server cancelled us
                raise
            except Exception as exc:
                response = self._answer_failure(request, exc)
        finally:
            self.in_flight -= 1
            if ex.counted:
                self._account(request, ex, response, time.perf_counter() - start)
        return response if response is not None else web.Response(status=499)  # aiohttp finds it closed

    def _account(self, request: web.Request, ex: Exchange, response: web.StreamResponse | None, seconds: float) -> None:
        """The metric samples and the one JSON access-log line of a request, whatever happened to it."""
        status = response.status if response is not None else 499  # 499: the client went away
        received = ex.bytes_in or request.content_length or 0
        sent = ex.bytes_out or _body_length(response)
        self.metrics.observe(ex.operation, status, seconds, received, sent, ex.error)
        if self._writer is not None:
            if self._writer.wants(status, ex.quiet):
                rid = request.get(REQUEST_ID) or ""
                path = request.rel_url.raw_path  # as sent; never the query, which may carry a presigned signature
                self._writer.line(
                    request.method, path, ex.operation, status, seconds, received, sent, request.remote, ex.error, rid
                )
            if status < 500:
                return
        level = logging.DEBUG if ex.quiet and status < 400 else self._level
        if status >= 500:
            level = max(level, logging.WARNING)
        if not self._access.isEnabledFor(level):
            return
        line: dict[str, Any] = {
            "method": request.method,
            "path": request.rel_url.raw_path,  # as sent; never the query, which may carry a presigned signature
            "operation": ex.operation,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_in": received,
            "bytes_out": sent,
            "peer": request.remote,
        }
        if ex.error:
            line["error"] = ex.error
        rid = request.get(REQUEST_ID)
        if rid:
            line["rid"] = rid
        self._access.log(level, "%s", json.dumps(line), extra={"tessera_request": line})


def exposition(body: bytes) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _body_length(response: web.StreamResponse | None) -> int:
    if response is None:
        return 0
    if response.prepared:  # streamed by the handler
        return response.body_length
    return response.content_length or 0


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class ClusterAuthenticator:
    """Requests signed with the cluster secret (cluster/auth.py), each nonce once (a replay is
    refused). A body signed by its hash is read here and checked before the handler runs, unless
    its endpoint streams it and checks it as it reads; a streamed ("STREAMING") claim is taken only
    by such endpoints, which check each frame against the exchange's chain."""

    def __init__(self, secret: bytes, *, max_body: int, io_timeout: float | None = None) -> None:
        self._secret = secret
        self._max_body = max_body
        self._io_timeout = io_timeout
        self._seen = auth.NonceCache()
        self._previous = auth.previous_from_env()

    async def __call__(self, request: web.Request, endpoint: Endpoint) -> None:
        path_qs = request.rel_url.raw_path_qs
        signed = auth.verify_headers(
            self._secret,
            request.method,
            path_qs,
            request.headers,
            self._seen,
            previous=self._previous,
        )
        claim = request[EXCHANGE].claim = signed.claim
        if endpoint.streamed_body:
            if claim == auth.STREAMING:
                request[EXCHANGE].chain = auth.FrameChain(signed.secret, signed.signature)
            return
        if claim == auth.STREAMING:
            raise auth.ClusterAuthError("this endpoint takes no streamed body")
        if request.content_length is not None and request.content_length > self._max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=self._max_body, actual_size=request.content_length)
        async with asyncio.timeout(self._io_timeout):
            body = await request.read()  # kept by aiohttp: the handler reads it again for free
        auth.check_body(claim, body)


def make_service_app(
    *,
    namespace: str,
    log: logging.Logger,
    errors: Errors,
    authenticate: Authenticator | None,
    ready: ReadyCheck | None = None,
    probes: bool = True,
    client_max_size: int = 1 << 20,
    middlewares: Iterable[Any] = (),
    **options: Any,
) -> web.Application:
    """An aiohttp app with the skeleton installed (app[SERVICE]); add routes with app[SERVICE].route().

    probes: serve /health/live, /health/ready and /metrics as open routes (a service whose every path
    may be a client's, like the gateway's, calls the Service's live/ready/scrape itself instead).
    middlewares run outside the skeleton's (a request id for the error answers, say).
    Run it with access_log=None: the skeleton logs each request itself.
    """
    app = web.Application(client_max_size=client_max_size)
    service = Service(
        app, namespace=namespace, log=log, errors=errors, authenticate=authenticate, ready=ready, **options
    )
    app.middlewares.extend([*middlewares, service.middleware])
    app[SERVICE] = service
    if probes:
        service.add_probes()
    return app


SERVICE = web.AppKey("tessera.service", Service)
