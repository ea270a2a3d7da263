"""The connection under every service: aiohttp's RequestHandler with the timeouts it lacks and HTTP
protocol errors answered in the service's own error vocabulary.

aiohttp closes a connection only when it has been idle for keepalive_timeout; a client that dribbles
a request head, or stalls an upload, holds its socket (and an upload its buffers) for ever. Here a
request head must be complete within `header` seconds of the connection opening or of the first byte
of a keep-alive request, and a request body must make progress at least every `body` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from cluster.service.app import SERVICE

log = logging.getLogger("tessera.connection")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; the defaults are the CLI's (README.md, docs/security.md)."""

    header: float = 10.0  # to send a complete request head
    idle: float = 60.0  # between keep-alive requests
    body: float | None = 30.0  # without a byte of the request body while the handler waits for it; None: off


# Internal services: a gateway streams fragments to a node at its own client's pace (a segment at a time),
# so a slow but live upload would look stalled there; the gateway's own body timeout covers it.
INTERNAL = Timeouts(body=None)


# Answers a malformed request (the parser's error) as the service answers its own errors, and logs it.
ProtocolErrorAnswer = Callable[[web.BaseRequest, HttpProcessingError], web.StreamResponse]


class Connection(RequestHandler):
    """One client connection with the service's timeouts and protocol-error answers."""

    __slots__ = ("_answer", "_body_progress", "_body_seen", "_body_timer", "_busy", "_head_timer", "_timeouts")

    def __init__(self, manager: Any, *, timeouts: Timeouts, answer: ProtocolErrorAnswer | None, **kwargs: Any) -> None:
        kwargs["keepalive_timeout"] = timeouts.idle
        super().__init__(manager, **kwargs)
        self._timeouts = timeouts
        self._answer = answer
        self._head_timer: asyncio.TimerHandle | None = None
        self._busy = False  # a request head was read and its response is not finished
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen = 0
        self._body_progress = 0.0

    # -- the request head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._stop_body_watch()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a complete head (or a malformed one, answered now)
            self._busy = True
            self._cancel_head_timer()
        elif data and not self._busy:  # the first bytes of a keep-alive request
            self._start_head_timer()

    def _start_head_timer(self) -> None:
        if self._head_timer is None and not self._force_close:
            self._head_timer = self._loop.call_later(self._timeouts.header, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._busy:
            log.debug(
                "closing a connection from %s: no complete request head in %ss", self.peername, self._timeouts.header
            )
            self.force_close()

    # -- the request body

    async def _handle_request(self, request: web.BaseRequest, start_time: float | None, request_handler: Any) -> Any:
        if self._timeouts.body is not None and not request.content.is_eof():
            self._body_seen, self._body_progress = request.content.total_bytes, self._loop.time()
            self._body_timer = self._loop.call_later(self._tick, self._check_body, request)
        try:
            resp, reset = await super()._handle_request(request, start_time, request_handler)
        finally:
            self._stop_body_watch()
            self._busy = bool(self._messages)  # a pipelined head is already waiting
        if _body_never_asked_for(request, resp):
            # Answered (refused) before 100 Continue: the client holds its body back, and aiohttp would
            # wait for it and then read the next request as its remainder. Close once the answer is out.
            self.force_close()
        return resp, reset

    @property
    def _tick(self) -> float:
        return min(1.0, (self._timeouts.body or 4.0) / 4)

    def _check_body(self, request: web.BaseRequest) -> None:
        self._body_timer = None
        payload = request.content
        if payload.is_eof() or self._force_close:
            return
        now = self._loop.time()
        # Paused: our buffer is full and the handler is the slow one, not the client.
        if payload.total_bytes != self._body_seen or self._reading_paused:
            self._body_seen, self._body_progress = payload.total_bytes, now
        elif now - self._body_progress >= (self._timeouts.body or float("inf")):
            log.info("cutting off an upload from %s: no body bytes for %ss", self.peername, self._timeouts.body)
            self.force_close()  # the handler's read fails: its partial write is discarded
            return
        self._body_timer = self._loop.call_later(self._tick, self._check_body, request)

    def _stop_body_watch(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- malformed requests

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A client's protocol error: one access-log line, no traceback (aiohttp logs each at ERROR);
        anything else (a bug) keeps aiohttp's traceback."""
        if not isinstance(exc, HttpProcessingError) or self._answer is None:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was started: no error answer can follow")
        response = self._answer(request, exc)
        response.force_close()
        return response


def _body_never_asked_for(request: web.BaseRequest, resp: web.StreamResponse) -> bool:
    payload = request.content
    waiting = request.headers.get("Expect", "").lower() == "100-continue"
    return waiting and resp.status >= 300 and not payload.is_eof() and payload.total_bytes == 0


class ConnectionFactory:
    """The protocol factory a site listens with: aiohttp's Server builds plain RequestHandlers."""

    def __init__(self, server: web.Server, timeouts: Timeouts, answer: ProtocolErrorAnswer | None) -> None:
        self.server = server
        self._timeouts = timeouts
        self._answer = answer

    def __call__(self) -> Connection:
        # The Server's own keyword arguments (read_bufsize, access_log, ...) as it would pass them.
        kwargs = dict(self.server._kwargs)
        return Connection(self.server, loop=self.server._loop, timeouts=self._timeouts, answer=self._answer, **kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose sites accept Connections."""

    def __init__(self, app: web.Application, *, timeouts: Timeouts, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._timeouts = timeouts

    @property
    def server(self) -> Any:
        server = super().server
        if server is None:
            return None
        service = self.app.get(SERVICE)
        answer = service.protocol_error if service is not None else None
        return ConnectionFactory(server, self._timeouts, answer)
