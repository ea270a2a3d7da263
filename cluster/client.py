"""RpcClient: the one signed HTTP client for calls between Tessera's services.

- Connections are reused: one aiohttp ClientSession, lent by the caller (clients that share it share
  its pool) or made on first use (a session belongs to the loop it was made in).
- Every request is signed (cluster/auth.py) over the path exactly as sent, each attempt anew (a
  retry is a new request with a new nonce: the peer refuses a repeated one). A streamed body is a
  function of the attempt's FrameChain, which authenticates each frame it sends.
- Timeouts on every call (Timeouts): a total budget for the call, attempts and backoff sleeps together;
  connecting; waiting for a pooled connection; each socket read (a stream may run as long as it keeps
  moving); and each piece of a streamed body the peer must take (the wait on the caller's own source
  is not timed: a slow S3 client upstream is not the peer's fault).
- One retry layer, whose policy the caller states (RetryPolicy): capped exponential backoff with full
  jitter. An idempotent call is retried on connection errors and on the statuses the policy names; any
  other only when the connection could not be made (the request never left this process). A timeout is
  never retried: it has spent the call's budget. A streamed body is sent once.
- TLS to a peer whose base URL is https://, trusting the cluster's CA (trust_cluster_ca, or the file
  named by TESSERA_CLUSTER_CA), else the system's; plain http:// stays plain.
- Failures become the caller's exceptions: unavailable(why) when no usable answer came (refused or cut
  connection, timeout), refused(answer) for an error answer, with the {"error", "message"} document
  when the peer is one of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import random
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from cluster import auth

MAX_ERROR_BODY = 64 << 10
LARGE_BODY = 512 << 10  # bytes bodies larger than this go out as a stream: aiohttp frowns on one big write
NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.IncompleteReadError)  # OSError covers TimeoutError

T = TypeVar("T")
CA_ENV = "TESSERA_CLUSTER_CA"  # a PEM file of the CA that signs the services' certificates
_cluster_ca: str | None = None
# A streamed request body: the frames to send, each authenticated by the attempt's chain.
StreamedBody = Callable[[auth.FrameChain], AsyncIterable[bytes]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; None leaves that wait unbounded."""

    total: float | None = None  # the whole call: every attempt and backoff sleep
    connect: float | None = None  # opening a connection
    pool: float | None = None  # waiting for a pooled connection, connecting included
    read: float | None = None  # each socket read
    write: float | None = None  # the peer taking each piece of a streamed body


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1
    base: float = 0.05  # the longest first backoff; it doubles with each attempt, up to cap
    cap: float = 1.0
    statuses: frozenset[int] = frozenset()  # answers that say "try again" (to idempotent calls)

    def backoff(self, attempt: int) -> float:
        """Full jitter: anywhere in [0, min(cap, base * 2^(attempt - 1))]."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def allows(self, failure: BaseException, idempotent: bool, attempt: int) -> bool:
        if attempt >= self.attempts:
            return False
        if isinstance(failure, aiohttp.ClientConnectorError):
            return True  # never sent: safe to repeat whatever it was
        return idempotent and isinstance(failure, _Again | aiohttp.ClientError | OSError | asyncio.IncompleteReadError)


NO_RETRIES = RetryPolicy()


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """A non-2xx answer: its status, and its error document if the peer sent one of ours."""

    status: int
    reason: str
    doc: dict[str, Any] | None  # {"error": kind, "message": ..., ...}
    text: str  # the start of the body, for messages when there is no document

    @property
    def kind(self) -> str:
        return self.doc["error"] if self.doc is not None else ""

    @property
    def message(self) -> str:
        return str(self.doc.get("message", "")) if self.doc is not None else self.text

    @classmethod
    def parse(cls, status: int, reason: str | None, body: bytes) -> ErrorAnswer:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
            doc = None  # not one of ours (a proxy, or not a Tessera service at all)
        return cls(status, reason or "", doc, body[:200].decode(errors="replace"))


Unavailable = Callable[[str], Exception]
Refused = Callable[[ErrorAnswer], Exception]


class AnswerTooLarge(ValueError):
    pass


class _Again(Exception):
    """An answer whose status the retry policy names."""

    def __init__(self, answer: ErrorAnswer) -> None:
        super().__init__(f"the service answered {answer.status}")
        self.answer = answer


def trust_cluster_ca(cafile: str | None) -> None:
    """Trust this CA for https peers from now on (None: TESSERA_CLUSTER_CA, else the system's CAs).
    Raises OSError or ssl.SSLError if the file is not a readable PEM certificate."""
    global _cluster_ca
    if cafile is not None:
        _tls_context(cafile)
    _cluster_ca = cafile


@functools.cache
def _tls_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def peer_tls(base_url: str) -> ssl.SSLContext | bool:
    """How to connect to a peer: with the cluster's CA for an https one (the system's CAs when none is
    given: a self-signed peer is refused); True is aiohttp's default (and means nothing for http)."""
    if not base_url.startswith("https://"):
        return True
    cafile = _cluster_ca or os.environ.get(CA_ENV)
    return _tls_context(cafile) if cafile else True


class RpcClient:
    """Signed calls to the service at base_url ("http://host:port", maybe with a path prefix)."""

    def __init__(
        self,
        base_url: str,
        secret: bytes,
        *,
        unavailable: Unavailable,
        refused: Refused,
        session: aiohttp.ClientSession | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy = NO_RETRIES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tls = peer_tls(self.base_url)
        self.timeouts = timeouts or Timeouts()
        self.retry = retry
        self._secret = secret
        self._unavailable = unavailable
        self._refused = refused
        self._session = session
        self._own_session = session is None

    async def close(self) -> None:
        """Close the session if this client made it (a lent one is the lender's); a later call makes a new one."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def call(
        self,
        method: str,
        path_qs: str,
        body: bytes = b"",
        *,
        idempotent: bool = False,
        content_type: str | None = None,
        limit: int | None = MAX_ERROR_BODY,
        timeouts: Timeouts | None = None,
        unavailable: Unavailable | None = None,
        refused: Refused | None = None,
    ) -> bytes:
        """A request with a small answer: the body of a 2xx answer (of at most `limit` bytes)."""
        url = URL(self.base_url + path_qs, encoded=True)  # sent exactly as signed

        async def attempt(limits: aiohttp.ClientTimeout) -> tuple[int, str, bytes]:
            headers = auth.sign_headers(self._secret, method, url.raw_path_qs, body)  # a new nonce each time
            if content_type is not None:
                headers["Content-Type"] = content_type
            data = (io.BytesIO(body) if len(body) > LARGE_BODY else body) if body else None  # anew for each attempt
            async with self._session_now().request(
                method, url, data=data, headers=headers, timeout=limits, allow_redirects=False, ssl=self._tls
            ) as resp:
                answer = await read_answer(resp, limit if 200 <= resp.status < 300 else MAX_ERROR_BODY)
                if resp.status in self.retry.statuses:
                    raise _Again(ErrorAnswer.parse(resp.status, resp.reason, answer))
                return resp.status, resp.reason or "", answer

        fail, refuse = unavailable or self._unavailable, refused or self._refused
        status, reason, answer = await self._attempts(attempt, idempotent, timeouts or self.timeouts, fail, refuse)
        if 200 <= status < 300:
            return answer
        raise refuse(ErrorAnswer.parse(status, reason, answer))

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path_qs: str,
        body: bytes | StreamedBody = b"",
        *,
        idempotent: bool = False,
        timeouts: Timeouts | None = None,
        unavailable: Unavailable | None = None,
        refused: Refused | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose 2xx answer the caller reads as it comes; network failures while it reads
        become unavailable(why) too. A body given as a StreamedBody is streamed (signed STREAMING) and
        sent once: body(chain) makes the frames, each authenticated by chain."""
        t = timeouts or self.timeouts
        fail, refuse = unavailable or self._unavailable, refused or self._refused
        url = URL(self.base_url + path_qs, encoded=True)
        streamed = None if isinstance(body, bytes) else body
        try:
            async with asyncio.timeout(None) as deadline:
                feed = None if streamed is None else _Feed(t.write, deadline)

                async def attempt(limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
                    signed = body if isinstance(body, bytes) else None
                    headers = auth.sign_headers(self._secret, method, url.raw_path_qs, signed)
                    data: Any = body or None
                    if feed is not None and streamed is not None:
                        chain = auth.FrameChain(self._secret, auth.signature_of(headers[auth.HEADER]))
                        data = feed.pieces(streamed(chain))
                    resp = await self._session_now().request(
                        method, url, data=data, headers=headers, timeout=limits, allow_redirects=False, ssl=self._tls
                    )
                    if feed is not None:
                        feed.answered()  # from here the read timeout bounds the waits
                    if resp.status in self.retry.statuses:
                        async with resp:
                            raise _Again(ErrorAnswer.parse(resp.status, resp.reason, await read_answer(resp)))
                    return resp

                resp = await self._attempts(attempt, idempotent and feed is None, t, fail, refuse)
                async with resp:
                    try:
                        if not 200 <= resp.status < 300:
                            refusal = refuse(ErrorAnswer.parse(resp.status, resp.reason, await read_answer(resp)))
                        else:
                            refusal = None
                            yield resp
                    except NETWORK_ERRORS as exc:
                        raise fail(describe(exc, t)) from exc
                    if refusal is not None:
                        raise refusal
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise fail(f"the peer stopped taking the body for {t.write} s") from exc

    async def _attempts(
        self,
        attempt: Callable[[aiohttp.ClientTimeout], Awaitable[T]],
        idempotent: bool,
        t: Timeouts,
        fail: Unavailable,
        refuse: Refused,
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = None if t.total is None else loop.time() + t.total
        n = 1
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise fail(describe(TimeoutError(), t))
            limits = aiohttp.ClientTimeout(total=left, connect=t.pool, sock_connect=t.connect, sock_read=t.read)
            try:
                return await attempt(limits)
            except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
                raise fail(describe(exc, t)) from exc
            except AnswerTooLarge as exc:
                raise fail(str(exc)) from exc
            except (_Again, *NETWORK_ERRORS) as exc:
                failure: Exception = exc
            delay = self.retry.backoff(n)
            out_of_time = deadline is not None and loop.time() + delay >= deadline
            if out_of_time or not self.retry.allows(failure, idempotent, n):
                if isinstance(failure, _Again):
                    raise refuse(failure.answer)
                raise fail(describe(failure, t)) from failure
            await asyncio.sleep(delay)
            n += 1


class _Feed:
    """A streamed request body. aiohttp pulls it from its own writer task: while it holds a piece the
    wait is on the peer and bounded by the write timeout (by rescheduling the caller's deadline);
    while it pulls the next one from the source the wait is not the peer's fault and is not bounded."""

    def __init__(self, timeout: float | None, deadline: asyncio.Timeout) -> None:
        self._timeout = timeout
        self._deadline = deadline
        self._answered = False

    async def pieces(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        source = aiter(body)
        try:
            async for piece in source:
                self._reschedule(self._timeout)
                yield piece
                self._reschedule(None)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def answered(self) -> None:
        self._reschedule(None)
        self._answered = True

    def _reschedule(self, after: float | None) -> None:
        if self._timeout is None or self._answered:
            return
        when = None if after is None else asyncio.get_running_loop().time() + after
        with contextlib.suppress(RuntimeError):  # the deadline already fired, or the call has returned
            self._deadline.reschedule(when)


def describe(exc: BaseException, t: Timeouts | None = None) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {t.total} s" if t is not None and t.total is not None else "timed out"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection cut mid-stream"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def read_answer(resp: aiohttp.ClientResponse, limit: int | None = MAX_ERROR_BODY) -> bytes:
    """A whole answer, refusing (AnswerTooLarge) one larger than limit."""
    if limit is None:
        return await resp.read()
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"answer larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
