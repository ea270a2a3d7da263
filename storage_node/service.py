"""The storage node's HTTP service: its local drives on the network, for RemoteDrive clients.

The wire format is in storage_node/protocol.py. Fragments stream through in both directions: a
request holds at most a couple of chunks in memory, however large the fragment. Every /v1 request
must carry a valid cluster signature or is refused (403) before it touches a drive; /health and
/metrics are open, for probes and scrapers. /v1/scrub starts and reports the node's scrubber.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cluster import auth
from storage_node import protocol
from storage_node.drive import FragmentId, FragmentInfo
from storage_node.local_drive import LocalDrive
from storage_node.protocol import FrameEncoder, FrameReader, WireError
from storage_node.scrubber import Scrubber

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IO_TIMEOUT = 60.0  # seconds a client may take to send (or to take) the next bytes of a stream
READY_TIMEOUT = 5.0  # a drive that cannot answer a stat in this long is not ready
MAX_SMALL_BODY = 1 << 20  # a body signed by hash is read whole to check it; ours are empty


class _BodyHashMismatch(Exception):
    pass


@dataclass
class _Tally:
    """What one request moved, for its log line and the metrics."""

    bytes_in: int = 0
    bytes_out: int = 0
    error: str = ""


class _Metrics:
    def __init__(self) -> None:
        # A registry per app: several nodes (or a node and a gateway) may share one process.
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tessera_node_requests", "Requests answered", ["op", "status"], registry=r)
        self.duration = Histogram(
            "tessera_node_request_duration_seconds",
            "Time to answer a request, streaming included",
            ["op"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.bytes_in = Counter("tessera_node_received_bytes", "Request body bytes received", ["op"], registry=r)
        self.bytes_out = Counter("tessera_node_sent_bytes", "Response body bytes sent", ["op"], registry=r)
        self.errors = Counter("tessera_node_errors", "Errors answered, by kind", ["kind"], registry=r)
        self.in_flight = Gauge("tessera_node_requests_in_flight", "Requests being served", registry=r)
        # Set from the scrubber's status at each scrape (0 on a node without one).
        self.scrub_running = Gauge("tessera_node_scrub_running", "1 while a scrub pass runs", registry=r)
        self.scrub_passes = Gauge("tessera_node_scrub_passes", "Scrub passes completed since start", registry=r)
        self.scrub_corrupt = Gauge(
            "tessera_node_scrub_corrupt_fragments", "Corrupt fragments found by the running or last pass", registry=r
        )


@dataclass
class _Node:
    drives: dict[str, LocalDrive]
    secret: bytes
    metrics: _Metrics
    io_timeout: float
    scrubber: Scrubber | None = None


NODE_KEY = web.AppKey("tessera.storage_node", _Node)
# Typed request keys where aiohttp has them (3.14+; it warns about plain strings there).
_RequestKey: Any = getattr(web, "RequestKey", None)
_TALLY: Any = _RequestKey("tessera.tally", _Tally) if _RequestKey else "tessera.tally"
_CLAIM: Any = _RequestKey("tessera.body_claim", str) if _RequestKey else "tessera.body_claim"


def make_node_app(
    drives: list[LocalDrive], secret: bytes, *, io_timeout: float = IO_TIMEOUT, scrubber: Scrubber | None = None
) -> web.Application:
    """The node's aiohttp application, serving `drives` to clients that know `secret`.

    A client that stops sending a put body, or stops reading a get or list, for io_timeout
    seconds is cut off, so it cannot hold a file and a temp file open forever. The caller opens
    and closes the drives (and the scrubber, if any; without one /v1/scrub answers 501).
    Run it with access_log=None: the app logs each request itself.
    """
    by_id: dict[str, LocalDrive] = {}
    for drive in drives:
        if drive.drive_id in by_id:
            raise ValueError(f"drive {drive.drive_id} is listed twice ({by_id[drive.drive_id].root}, {drive.root})")
        by_id[drive.drive_id] = drive
    app = web.Application(middlewares=[_observe, _authenticate])
    app[NODE_KEY] = _Node(by_id, secret, _Metrics(), io_timeout, scrubber)
    fragment = protocol.fragment_path("{drive}", "{name}")
    app.router.add_put(fragment, _put, name="put")
    app.router.add_get(fragment, _get, name="get", allow_head=False)
    app.router.add_delete(fragment, _delete, name="delete")
    app.router.add_get(fragment + "/stat", _stat, name="stat", allow_head=False)
    app.router.add_post(fragment + "/verify", _verify, name="verify")
    app.router.add_get(protocol.fragments_path("{drive}"), _list, name="list", allow_head=False)
    app.router.add_get(protocol.drives_path(), _drives, name="drives", allow_head=False)
    app.router.add_post(protocol.scrub_path(), _scrub_start, name="scrub_start")
    app.router.add_get(protocol.scrub_path(), _scrub_status, name="scrub_status", allow_head=False)
    app.router.add_get("/health/live", _live, name="live", allow_head=False)
    app.router.add_get("/health/ready", _ready, name="ready", allow_head=False)
    app.router.add_get("/metrics", _metrics, name="metrics", allow_head=False)
    return app


# -- middlewares -------------------------------------------------------------------------------------


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One log line and one set of metric samples per request, whatever happened to it."""
    node = request.app[NODE_KEY]
    tally = request[_TALLY] = _Tally()
    route = request.match_info.route.name or "other"
    start = time.perf_counter()
    status = 500
    node.metrics.in_flight.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:
        status, tally.error = 499, "cancelled"  # the client went away and the server cancelled us
        raise
    except Exception as e:
        response = _error(request, e)  # logged there, with its traceback, if it is a bug of ours
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - start
        node.metrics.in_flight.dec()
        m = node.metrics
        m.requests.labels(route, str(status)).inc()
        m.duration.labels(route).observe(elapsed)
        if tally.bytes_in:
            m.bytes_in.labels(route).inc(tally.bytes_in)
        if tally.bytes_out:
            m.bytes_out.labels(route).inc(tally.bytes_out)
        fields = {
            "method": request.method,
            "path": request.rel_url.raw_path_qs,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "bytes_in": tally.bytes_in,
            "bytes_out": tally.bytes_out,
            "error": tally.error,
        }
        # Probes and scrapes come every few seconds: keep them out of the INFO log.
        level = logging.DEBUG if route in ("live", "ready", "metrics") else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s", json.dumps(fields), extra={"tessera_request": fields})


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.rel_url.raw_path.startswith(protocol.API + "/"):
        return await handler(request)
    node = request.app[NODE_KEY]
    try:
        claim = auth.verify(node.secret, request.method, request.rel_url.raw_path_qs, request.headers.get(auth.HEADER))
    except auth.ClusterAuthError as e:
        return _error(request, WireError(protocol.FORBIDDEN, str(e)))
    if claim != auth.STREAMING and request.method != "PUT":  # a PUT body is hashed as it streams
        if request.content_length is not None and request.content_length > MAX_SMALL_BODY:
            return _error(request, WireError(protocol.BAD_REQUEST, "body too large"))
        try:
            async with asyncio.timeout(node.io_timeout):
                body = await request.read()
        except TimeoutError:
            return _error(request, WireError(protocol.TIMEOUT, "the body did not arrive"))
        request[_TALLY].bytes_in += len(body)
        if not protocol.hash_matches(hashlib.sha256(body), claim):
            return _error(request, WireError(protocol.FORBIDDEN, "body does not match its signature"))
    request[_CLAIM] = claim
    return await handler(request)


# -- helpers -------------------------------------------------------------------------------------------


def _json(request: web.Request, obj: Any, status: int = 200) -> web.Response:
    body = json.dumps(obj).encode()
    request[_TALLY].bytes_out += len(body)
    return web.Response(body=body, status=status, content_type="application/json")


def _count_error(request: web.Request, error: WireError) -> None:
    request[_TALLY].error = error.kind
    request.app[NODE_KEY].metrics.errors.labels(error.kind).inc()


def _wire_error(request: web.Request, exc: BaseException) -> WireError:
    error = protocol.wire_error(exc)
    if error.kind == protocol.INTERNAL:
        log.error("%s %s failed", request.method, request.rel_url.raw_path_qs, exc_info=exc)
    _count_error(request, error)
    return error


def _error(request: web.Request, error: WireError | BaseException) -> web.Response:
    if isinstance(error, WireError):
        _count_error(request, error)
    else:
        error = _wire_error(request, error)
    return _json(request, error.to_json(), error.status)


async def _stream_out(request: web.Request, content_type: str, batches: AsyncIterator[bytes]) -> web.StreamResponse:
    """Send what `batches` yields as the body of a 200; a client that stops taking bytes for
    io_timeout is cut off. Errors met while producing must be encoded in the stream itself."""
    node, tally = request.app[NODE_KEY], request[_TALLY]
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(headers={"Content-Type": content_type})
    try:
        async with asyncio.timeout(None) as deadline:
            deadline.reschedule(loop.time() + node.io_timeout)
            await response.prepare(request)
            deadline.reschedule(None)
            async for data in batches:
                tally.bytes_out += len(data)
                # Only the wait on the client is bounded: the drive's reads are not the client's fault.
                deadline.reschedule(loop.time() + node.io_timeout)
                await response.write(data)
                deadline.reschedule(None)
            deadline.reschedule(loop.time() + node.io_timeout)
            await response.write_eof()
    except ConnectionError:
        tally.error = "disconnected"  # the client stopped reading (an abandoned get): nothing to answer
    except TimeoutError:
        tally.error = "timeout"
        if request.transport is not None:
            request.transport.abort()  # a half-sent body cannot be finished: drop the connection
    finally:
        await batches.aclose()  # type: ignore[attr-defined]
    return response


class _Refused(Exception):
    """Answer the request with this error."""

    def __init__(self, error: WireError) -> None:
        super().__init__(error.message)
        self.error = error


def _drive(request: web.Request) -> LocalDrive:
    drive_id = request.match_info["drive"]
    drive = request.app[NODE_KEY].drives.get(drive_id)
    if drive is None:
        raise _Refused(WireError(protocol.NO_SUCH_DRIVE, f"this node has no drive {drive_id}"))
    return drive


def _fid(request: web.Request) -> FragmentId:
    try:
        return FragmentId.parse(request.match_info["name"])
    except ValueError as e:
        raise _Refused(WireError(protocol.BAD_REQUEST, str(e))) from None


def _refusals(handler: Handler) -> Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as e:
            return _error(request, e.error)

    wrapper.__name__ = handler.__name__
    return wrapper


# -- fragments -----------------------------------------------------------------------------------------


@_refusals
async def _put(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    drive, fid = _drive(request), _fid(request)
    claim = request[_CLAIM]
    hasher = None if claim == auth.STREAMING else hashlib.sha256()
    reader = FrameReader(request.content, hasher)
    loop = asyncio.get_running_loop()

    async def chunks(deadline: asyncio.Timeout) -> AsyncIterator[bytes]:
        # The deadline runs only while we wait for the client, not while the drive writes.
        while True:
            deadline.reschedule(loop.time() + node.io_timeout)
            payload = await reader.read()
            if payload is None:
                break
            deadline.reschedule(None)
            yield payload
        await reader.expect_eof()
        deadline.reschedule(None)
        if hasher is not None and not protocol.hash_matches(hasher, claim):
            raise _BodyHashMismatch()

    try:
        async with asyncio.timeout(None) as deadline:
            info = await drive.put(fid, chunks(deadline))
    except _BodyHashMismatch:
        return _error(request, WireError(protocol.FORBIDDEN, "body does not match its signature"))
    except Exception as e:
        # Whatever broke (the stream, its framing, the drive), drive.put has dropped the temp file.
        return _error(request, e)
    finally:
        request[_TALLY].bytes_in += reader.bytes
    return _json(request, protocol.info_to_json(info))


@_refusals
async def _get(request: web.Request) -> web.StreamResponse:
    drive, fid = _drive(request), _fid(request)
    try:
        first = protocol.parse_index(request.query.get("first"), 0)
        end = protocol.parse_index(request.query.get("end"), None)
    except ValueError as e:
        return _error(request, WireError(protocol.BAD_REQUEST, str(e)))
    assert first is not None
    chunks = drive.get(fid, first, end)
    # The first chunk decides the status: a missing fragment is a 404, not a stream.
    try:
        payload: bytes | None = await anext(chunks)
    except StopAsyncIteration:
        payload = None
    except Exception as e:
        await chunks.aclose()  # type: ignore[attr-defined]
        return _error(request, e)

    async def batches() -> AsyncIterator[bytes]:
        nonlocal payload
        encoder = FrameEncoder()
        try:
            while payload is not None:
                data = encoder.chunk(payload)
                if data is not None:
                    yield data
                try:
                    payload = await anext(chunks)
                except StopAsyncIteration:
                    payload = None
                except Exception as e:
                    # The status is sent: say what went wrong in the stream itself.
                    yield encoder.error(_wire_error(request, e))
                    return
            yield encoder.end()
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    return await _stream_out(request, protocol.FRAMES_TYPE, batches())


@_refusals
async def _stat(request: web.Request) -> web.StreamResponse:
    return await _answer(request, lambda d, fid: d.stat(fid), protocol.info_to_json)


@_refusals
async def _delete(request: web.Request) -> web.StreamResponse:
    return await _answer(request, lambda d, fid: d.delete(fid), lambda deleted: {"deleted": deleted})


@_refusals
async def _verify(request: web.Request) -> web.StreamResponse:
    return await _answer(request, lambda d, fid: d.verify(fid), lambda bad: {"bad": bad})


async def _answer(
    request: web.Request,
    call: Callable[[LocalDrive, FragmentId], Awaitable[Any]],
    shape: Callable[[Any], Any],
) -> web.StreamResponse:
    """One drive call on the request's fragment, answered as JSON (or as the wire error it raised)."""
    drive, fid = _drive(request), _fid(request)  # their refusals are answered by @_refusals
    try:
        result = await call(drive, fid)
    except Exception as e:
        return _error(request, e)
    return _json(request, shape(result))


@_refusals
async def _list(request: web.Request) -> web.StreamResponse:
    infos = _drive(request).list()
    try:
        info: FragmentInfo | None = await anext(infos)
    except StopAsyncIteration:
        info = None
    except Exception as e:
        await infos.aclose()  # type: ignore[attr-defined]
        return _error(request, e)

    async def batches() -> AsyncIterator[bytes]:
        nonlocal info
        lines: list[bytes] = []
        size = count = 0
        try:
            while info is not None:
                line = json.dumps(protocol.info_to_json(info)).encode() + b"\n"
                lines.append(line)
                size += len(line)
                count += 1
                if size >= protocol.FLUSH_BYTES:
                    yield b"".join(lines)
                    lines.clear()
                    size = 0
                try:
                    info = await anext(infos)
                except StopAsyncIteration:
                    info = None
                except Exception as e:
                    lines.append(json.dumps(_wire_error(request, e).to_json()).encode() + b"\n")
                    yield b"".join(lines)
                    return
            lines.append(json.dumps({"end": True, "count": count}).encode() + b"\n")
            yield b"".join(lines)
        finally:
            await infos.aclose()  # type: ignore[attr-defined]

    return await _stream_out(request, protocol.NDJSON_TYPE, batches())


# -- the node ------------------------------------------------------------------------------------------


def _statvfs(drive: LocalDrive) -> dict[str, Any]:
    report: dict[str, Any] = {"id": drive.drive_id, "path": str(drive.root), "capacity": None, "free": None}
    try:
        st = os.statvfs(drive.root)
    except OSError as e:
        report["error"] = e.strerror or str(e)
    else:
        report["capacity"] = st.f_blocks * st.f_frsize
        report["free"] = st.f_bavail * st.f_frsize
    return report


async def _drives(request: web.Request) -> web.StreamResponse:
    drives = request.app[NODE_KEY].drives.values()
    reports = await asyncio.gather(*(_bounded(asyncio.to_thread(_statvfs, d)) for d in drives), return_exceptions=True)
    out = []
    for drive, report in zip(drives, reports, strict=True):
        if isinstance(report, BaseException):  # a hung disk: report it without blocking the answer
            report = {"id": drive.drive_id, "path": str(drive.root), "capacity": None, "free": None}
            report["error"] = "statvfs timed out"
        out.append(report)
    return _json(request, {"drives": out})


async def _scrub_start(request: web.Request) -> web.StreamResponse:
    scrubber = request.app[NODE_KEY].scrubber
    if scrubber is None:
        return _error(request, WireError(protocol.NO_SCRUBBER, "this node runs no scrubber"))
    return _json(request, scrubber.start().to_json())


async def _scrub_status(request: web.Request) -> web.StreamResponse:
    scrubber = request.app[NODE_KEY].scrubber
    if scrubber is None:
        return _error(request, WireError(protocol.NO_SCRUBBER, "this node runs no scrubber"))
    return _json(request, scrubber.status().to_json())


async def _bounded(aw: Awaitable[Any]) -> Any:
    async with asyncio.timeout(READY_TIMEOUT):
        return await aw


async def _live(request: web.Request) -> web.StreamResponse:
    return _json(request, {"status": "ok"})


async def _ready(request: web.Request) -> web.StreamResponse:
    """Deep: every drive's fragments directory is there (a wiped or unmounted disk is not)."""
    drives = list(request.app[NODE_KEY].drives.values())
    checks = [_bounded(asyncio.to_thread(os.path.isdir, d.root / "fragments")) for d in drives]
    results = await asyncio.gather(*checks, return_exceptions=True)
    problems = {}
    for drive, ok in zip(drives, results, strict=True):
        if isinstance(ok, BaseException):
            problems[drive.drive_id] = f"{drive.root}: no answer within {READY_TIMEOUT} s"
        elif not ok:
            problems[drive.drive_id] = f"{drive.root}: fragments directory is missing"
    if problems:
        return _json(request, {"status": "not ready", "drives": problems}, 503)
    return _json(request, {"status": "ready", "drives": len(drives)})


async def _metrics(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    if node.scrubber is not None:
        status = node.scrubber.status()
        node.metrics.scrub_running.set(int(status.running))
        node.metrics.scrub_passes.set(status.passes)
        node.metrics.scrub_corrupt.set(status.corrupt)
    body = generate_latest(node.metrics.registry)
    request[_TALLY].bytes_out += len(body)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
