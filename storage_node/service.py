"""The storage node's HTTP service: its local drives on the network, for RemoteDrive clients.

The wire format is in storage_node/protocol.py. Fragments stream through in both directions: a
request holds at most a couple of chunks in memory, however large the fragment. Built on the
service skeleton (cluster/service): every route but /health and /metrics (open, for probes and
scrapers) needs a valid cluster signature, judged on the route resolved, or is refused (403) before
it touches a drive. /v1/scrub starts and reports the node's scrubber.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from cluster import auth
from cluster.service import (
    SERVICE,
    ClusterAuthenticator,
    ErrorAnswer,
    Errors,
    Failure,
    exchange,
    make_service_app,
)
from storage_node import protocol
from storage_node.drive import OFFLINE, FragmentId, FragmentInfo
from storage_node.local_drive import LocalDrive
from storage_node.protocol import FrameEncoder, FrameReader, WireError
from storage_node.scrubber import Scrubber

log = logging.getLogger(__name__)

IO_TIMEOUT = 60.0  # seconds a client may take to send (or to take) the next bytes of a stream
READY_TIMEOUT = 5.0  # a drive that cannot answer a stat in this long is not ready
MAX_SMALL_BODY = 1 << 20  # a body signed by hash is read whole to check it; ours are empty


@dataclass
class _Node:
    drives: dict[str, LocalDrive]
    io_timeout: float
    scrubber: Scrubber | None = None


NODE_KEY = web.AppKey("tessera.storage_node", _Node)


def _failure(error: WireError) -> Failure:
    return Failure(error.status, error.kind, error.message, {} if error.chunk is None else {"chunk": error.chunk})


def _classify(exc: BaseException) -> Failure | None:
    error = protocol.wire_error(exc)
    return None if error.kind == protocol.INTERNAL else _failure(error)


ERRORS = Errors(
    forbidden=protocol.FORBIDDEN,
    internal=protocol.INTERNAL,
    http_kinds=protocol.HTTP_KINDS,
    classify=_classify,
)


class _ScrubMetrics:
    """Read from the scrubber's status at each scrape (0 on a node without one)."""

    def __init__(self, scrubber: Scrubber | None) -> None:
        self._scrubber = scrubber

    def collect(self) -> Iterator[Metric]:
        status = self._scrubber.status() if self._scrubber is not None else None
        running, passes, corrupt = (int(status.running), status.passes, status.corrupt) if status else (0, 0, 0)
        yield GaugeMetricFamily("tessera_node_scrub_running", "1 while a scrub pass runs", value=running)
        yield GaugeMetricFamily("tessera_node_scrub_passes", "Scrub passes completed since start", value=passes)
        yield GaugeMetricFamily(
            "tessera_node_scrub_corrupt_fragments", "Corrupt fragments found by the running or last pass", value=corrupt
        )


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
    node = _Node(by_id, io_timeout, scrubber)
    app = make_service_app(
        namespace="tessera_node",
        log=log,
        errors=ERRORS,
        authenticate=ClusterAuthenticator(secret, max_body=MAX_SMALL_BODY, io_timeout=io_timeout),
        ready=lambda: _ready(node),
        client_max_size=MAX_SMALL_BODY,
    )
    app[NODE_KEY] = node
    svc = app[SERVICE]
    svc.registry.register(_ScrubMetrics(scrubber))
    fragment = protocol.fragment_path("{drive}", "{name}")
    svc.route("PUT", fragment, _put, operation="put", streamed_body=True)
    svc.route("GET", fragment, _get, operation="get")
    svc.route("DELETE", fragment, _delete, operation="delete")
    svc.route("GET", fragment + "/stat", _stat, operation="stat")
    svc.route("POST", fragment + "/verify", _verify, operation="verify")
    svc.route("GET", protocol.fragments_path("{drive}"), _list, operation="list")
    svc.route("GET", protocol.drives_path(), _drives, operation="drives")
    svc.route("POST", protocol.scrub_path(), _scrub_start, operation="scrub_start")
    svc.route("GET", protocol.scrub_path(), _scrub_status, operation="scrub_status")
    # Anything else under /v1 is refused like the rest of the API (403 unsigned), then not found.
    svc.route("*", protocol.API + "/{tail:.*}", _no_such_endpoint, operation="unknown")
    return app


# -- helpers -------------------------------------------------------------------------------------------


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


def _in_band(request: web.Request, exc: BaseException) -> WireError:
    """The error to send inside a stream whose status is already sent (a bug is logged there)."""
    failure = request.app[SERVICE].failure(request, exc)
    chunk = failure.fields.get("chunk")
    return WireError(failure.kind, failure.message, chunk if isinstance(chunk, int) else None)


async def _stream_out(request: web.Request, content_type: str, batches: AsyncIterator[bytes]) -> web.StreamResponse:
    """Send what `batches` yields as the body of a 200; a client that stops taking bytes for
    io_timeout is cut off. Errors met while producing must be encoded in the stream itself."""
    io_timeout = request.app[NODE_KEY].io_timeout
    tally = exchange(request)
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(headers={"Content-Type": content_type})
    try:
        async with asyncio.timeout(None) as deadline:
            deadline.reschedule(loop.time() + io_timeout)
            await response.prepare(request)
            deadline.reschedule(None)
            async for data in batches:
                tally.bytes_out += len(data)
                # Only the wait on the client is bounded: the drive's reads are not the client's fault.
                deadline.reschedule(loop.time() + io_timeout)
                await response.write(data)
                deadline.reschedule(None)
            deadline.reschedule(loop.time() + io_timeout)
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


def _drive(request: web.Request) -> LocalDrive:
    drive_id = request.match_info["drive"]
    drive = request.app[NODE_KEY].drives.get(drive_id)
    if drive is None:
        raise ErrorAnswer(404, protocol.NO_SUCH_DRIVE, f"this node has no drive {drive_id}")
    return drive


def _fid(request: web.Request) -> FragmentId:
    try:
        return FragmentId.parse(request.match_info["name"])
    except ValueError as e:
        raise ErrorAnswer(400, protocol.BAD_REQUEST, str(e)) from None


# -- fragments -----------------------------------------------------------------------------------------


async def _put(request: web.Request) -> web.StreamResponse:
    io_timeout = request.app[NODE_KEY].io_timeout
    drive, fid = _drive(request), _fid(request)
    claim, chain = exchange(request).claim, exchange(request).chain
    hasher = auth.body_hasher(claim)  # a body signed by its hash, or a chain for one signed STREAMING
    reader = FrameReader(request.content, hasher, chain)
    loop = asyncio.get_running_loop()

    async def chunks(deadline: asyncio.Timeout) -> AsyncIterator[bytes]:
        # The deadline runs only while we wait for the client, not while the drive writes.
        while True:
            deadline.reschedule(loop.time() + io_timeout)
            payload = await reader.read()
            if payload is None:
                break
            deadline.reschedule(None)
            yield payload
        await reader.expect_eof()
        deadline.reschedule(None)
        if hasher is not None:
            auth.check_body(claim, hasher=hasher)  # before the end: a body that fails it is never committed

    # Whatever breaks (the stream, its framing, a frame's MAC, the drive), drive.put drops the temp
    # file; the end MAC is checked before the last chunk is handed over, so only a whole chain commits.
    try:
        async with asyncio.timeout(None) as deadline:
            info = await drive.put(fid, chunks(deadline))
    finally:
        exchange(request).bytes_in = reader.bytes
    return _json(protocol.info_to_json(info))


async def _get(request: web.Request) -> web.StreamResponse:
    drive, fid = _drive(request), _fid(request)
    try:
        first = protocol.parse_index(request.query.get("first"), 0)
        end = protocol.parse_index(request.query.get("end"), None)
    except ValueError as e:
        raise ErrorAnswer(400, protocol.BAD_REQUEST, str(e)) from None
    assert first is not None
    chunks = drive.get(fid, first, end)
    # The first chunk decides the status: a missing fragment is a 404, not a stream.
    try:
        payload: bytes | None = await anext(chunks)
    except StopAsyncIteration:
        payload = None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise

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
                    yield encoder.error(_in_band(request, e))
                    return
            yield encoder.end()
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    return await _stream_out(request, protocol.FRAMES_TYPE, batches())


async def _stat(request: web.Request) -> web.StreamResponse:
    return await _answer(request, lambda d, fid: d.stat(fid), protocol.info_to_json)


async def _delete(request: web.Request) -> web.StreamResponse:
    return await _answer(request, lambda d, fid: d.delete(fid), lambda deleted: {"deleted": deleted})


async def _verify(request: web.Request) -> web.StreamResponse:
    return await _answer(request, lambda d, fid: d.verify(fid), lambda bad: {"bad": bad})


async def _answer(
    request: web.Request,
    call: Callable[[LocalDrive, FragmentId], Awaitable[Any]],
    shape: Callable[[Any], Any],
) -> web.StreamResponse:
    """One drive call on the request's fragment, answered as JSON (what it raises, the skeleton answers)."""
    return _json(shape(await call(_drive(request), _fid(request))))


async def _list(request: web.Request) -> web.StreamResponse:
    infos = _drive(request).list()
    try:
        info: FragmentInfo | None = await anext(infos)
    except StopAsyncIteration:
        info = None
    except BaseException:
        await infos.aclose()  # type: ignore[attr-defined]
        raise

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
                    lines.append(json.dumps(_in_band(request, e).to_json()).encode() + b"\n")
                    yield b"".join(lines)
                    return
            lines.append(json.dumps({"end": True, "count": count}).encode() + b"\n")
            yield b"".join(lines)
        finally:
            await infos.aclose()  # type: ignore[attr-defined]

    return await _stream_out(request, protocol.NDJSON_TYPE, batches())


async def _no_such_endpoint(request: web.Request) -> web.StreamResponse:
    raise ErrorAnswer(404, protocol.NO_SUCH_ENDPOINT, f"no {request.method} {request.path} on a storage node")


# -- the node ------------------------------------------------------------------------------------------


def _statvfs(drive: LocalDrive) -> dict[str, Any]:
    report = _drive_report(drive)
    try:
        st = os.statvfs(drive.root)
    except OSError as e:
        report["error"] = e.strerror or str(e)
    else:
        report["capacity"] = st.f_blocks * st.f_frsize
        report["free"] = st.f_bavail * st.f_frsize
    return report


def _drive_report(drive: LocalDrive) -> dict[str, Any]:
    """A drive's identity and its state as the node's drive watch last saw it (adopted: epoch s, 0 never)."""
    h = drive.health
    return dict(
        id=drive.drive_id,
        path=str(drive.root),
        capacity=None,
        free=None,
        state=h.state,
        detail=h.detail,
        adopted=h.adopted,
    )


async def _drives(request: web.Request) -> web.StreamResponse:
    drives = request.app[NODE_KEY].drives.values()
    reports = await asyncio.gather(*(_bounded(asyncio.to_thread(_statvfs, d)) for d in drives), return_exceptions=True)
    out = []
    for drive, report in zip(drives, reports, strict=True):
        if isinstance(report, BaseException):  # a hung disk: report it without blocking the answer
            report = _drive_report(drive)
            report["error"] = "statvfs timed out"
        out.append(report)
    return _json({"drives": out})


def _scrubber(request: web.Request) -> Scrubber:
    scrubber = request.app[NODE_KEY].scrubber
    if scrubber is None:
        raise ErrorAnswer(501, protocol.NO_SCRUBBER, "this node runs no scrubber")
    return scrubber


async def _scrub_start(request: web.Request) -> web.StreamResponse:
    return _json(_scrubber(request).start().to_json())


async def _scrub_status(request: web.Request) -> web.StreamResponse:
    return _json(_scrubber(request).status().to_json())


async def _bounded(aw: Awaitable[Any]) -> Any:
    async with asyncio.timeout(READY_TIMEOUT):
        return await aw


async def _ready(node: _Node) -> tuple[bool, dict[str, Any]]:
    """Deep: every drive's fragments directory is there (a wiped or unmounted disk is not), and no drive is
    offline (storage_node/drive_watch.py)."""
    drives = list(node.drives.values())
    checks = [_bounded(asyncio.to_thread(os.path.isdir, d.root / "fragments")) for d in drives]
    results = await asyncio.gather(*checks, return_exceptions=True)
    problems = {}
    for drive, ok in zip(drives, results, strict=True):
        if isinstance(ok, BaseException):
            problems[drive.drive_id] = f"{drive.root}: no answer within {READY_TIMEOUT} s"
        elif drive.health.state == OFFLINE:
            problems[drive.drive_id] = drive.health.detail
        elif not ok:
            problems[drive.drive_id] = f"{drive.root}: fragments directory is missing"
    if problems:
        return False, {"status": "not ready", "drives": problems}
    return True, {"status": "ready", "drives": len(drives)}
