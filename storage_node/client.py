"""RemoteDrive: the Drive seam over HTTP, to a drive on a storage node (storage_node/service.py);
NodeClient: the node's own controls (its scrubber), beside its drives.

It raises what a LocalDrive raises (FragmentNotFound, CorruptFragment with the chunk number,
InvalidFragmentStream), and DriveUnavailable for anything that keeps the drive out of reach: a
refused or cut connection, a timeout, a 5xx, a refused signature, bytes damaged in transit.
No retries here: the gateway retries, at one layer only. Puts are idempotent by FragmentId.

Timeouts bound every wait on the network, never a whole transfer: connecting, each socket read,
and each write of a put body (the node must keep taking bytes); a stream may run as long as it
keeps moving. A put waiting on its own source (a slow S3 client upstream) is not timed out here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import aiohttp
from yarl import URL

from cluster import auth
from storage_node import protocol
from storage_node.drive import (
    DriveUnavailable,
    FragmentId,
    FragmentInfo,
    InvalidFragmentStream,
)
from storage_node.protocol import ErrorFrame, FrameEncoder, FrameReader, FramingError, ScrubStatus, WireError

TIMEOUT = 30.0  # seconds without progress on a connection before the drive counts as unavailable
CONNECT_TIMEOUT = 5.0
VERIFY_TIMEOUT = 600.0  # verify reads a whole fragment before it answers: allow for big, slow ones
MAX_ERROR_BODY = 64 << 10

_NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.IncompleteReadError)


class RemoteDrive:
    """A Drive on a storage node. Share one ClientSession among the drives a gateway uses."""

    def __init__(
        self,
        base_url: str,
        drive_id: str,
        secret: bytes,
        session: aiohttp.ClientSession | None = None,
        timeout: float = TIMEOUT,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        verify_timeout: float = VERIFY_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.drive_id = protocol.check_drive_id(drive_id)
        self._secret = secret
        self._session = session
        self._own_session = session is None
        self._closed = False
        self._read_timeout = timeout
        # `connect` also bounds the wait for a pooled connection; total=None: streams may run long.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self._verify_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=connect_timeout, sock_read=max(timeout, verify_timeout)
        )

    def __repr__(self) -> str:
        return f"RemoteDrive({self.base_url!r}, id={self.drive_id})"

    async def close(self) -> None:
        """Refuse further calls; close the session if this drive made it (one passed in is the caller's)."""
        self._closed = True
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    # -- the Drive seam -------------------------------------------------------------------------------

    async def put(self, fid: FragmentId, chunks: AsyncIterable[bytes]) -> FragmentInfo:
        upload = _Upload(fid, chunks, self._read_timeout)
        path = protocol.fragment_path(self.drive_id, fid.name)
        try:
            async with asyncio.timeout(None) as deadline:
                upload.deadline = deadline
                async with self._call("PUT", path, data=upload.frames()) as resp:
                    upload.done()  # the node answered: from here sock_read bounds the waits
                    if resp.status != 200:
                        error = await self._failure(resp, fid)
                    else:
                        obj = await self._json(resp)
                        error = None
        except TimeoutError:  # our send deadline (aiohttp's own timeouts are mapped inside _call)
            error = DriveUnavailable(f"{self}: node stopped taking the body of {fid.name} for {self._read_timeout} s")
        except DriveUnavailable as e:
            error = e
        if upload.error is not None:
            raise upload.error  # the caller's stream failed (or broke the rules): that is the news
        if error is not None:
            raise error
        info = self._info(obj)
        if info.fid != fid:
            raise DriveUnavailable(f"{self}: put {fid.name} was answered for {info.fid.name}")
        return info

    async def get(self, fid: FragmentId, first_chunk: int = 0, end_chunk: int | None = None) -> AsyncIterator[bytes]:
        if first_chunk < 0 or (end_chunk is not None and end_chunk < 0):
            raise ValueError(f"invalid chunk range [{first_chunk}, {end_chunk})")
        path = protocol.get_path(self.drive_id, fid.name, first_chunk, end_chunk)
        limit = None if end_chunk is None else max(0, end_chunk - first_chunk)
        async with self._call("GET", path) as resp:
            if resp.status != 200:
                raise await self._failure(resp, fid)
            self._expect_type(resp, protocol.FRAMES_TYPE)
            reader = FrameReader(resp.content)
            while True:
                try:
                    payload = await reader.read()
                except ErrorFrame as e:
                    raise protocol.drive_error(e.error, fid, str(self)) from None
                except FramingError as e:
                    where = f"chunk {first_chunk + reader.frames} of {fid.name}"
                    raise DriveUnavailable(f"{self}: {where}: {e}") from None
                if payload is None:
                    break
                if limit is not None and reader.frames > limit:
                    raise DriveUnavailable(f"{self}: get {fid.name} sent more than the {limit} chunks asked for")
                yield payload
            try:
                await reader.expect_eof()  # so the connection goes back to the pool
            except FramingError as e:
                raise DriveUnavailable(f"{self}: get {fid.name}: {e}") from None

    async def stat(self, fid: FragmentId) -> FragmentInfo:
        async with self._call("GET", protocol.fragment_path(self.drive_id, fid.name) + "/stat") as resp:
            if resp.status != 200:
                raise await self._failure(resp, fid)
            info = self._info(await self._json(resp))
        if info.fid != fid:
            raise DriveUnavailable(f"{self}: stat {fid.name} was answered for {info.fid.name}")
        return info

    async def delete(self, fid: FragmentId) -> bool:
        async with self._call("DELETE", protocol.fragment_path(self.drive_id, fid.name)) as resp:
            if resp.status != 200:
                raise await self._failure(resp, fid)
            obj = await self._json(resp)
        deleted = obj.get("deleted") if isinstance(obj, dict) else None
        if not isinstance(deleted, bool):
            raise DriveUnavailable(f"{self}: unexpected answer to delete: {obj!r}")
        return deleted

    async def list(self) -> AsyncIterator[FragmentInfo]:
        async with self._call("GET", protocol.fragments_path(self.drive_id)) as resp:
            if resp.status != 200:
                raise await self._failure(resp, None)
            self._expect_type(resp, protocol.NDJSON_TYPE)
            count = 0
            while True:
                line = await resp.content.readline()
                if not line.endswith(b"\n"):
                    raise DriveUnavailable(f"{self}: the listing was cut short after {count} fragments")
                try:
                    obj = json.loads(line)
                    if "name" in obj:
                        info = protocol.info_from_json(obj)
                    elif "error" in obj:
                        raise protocol.drive_error(WireError.from_json(obj), None, str(self))
                    elif obj.get("end") is True and obj.get("count") == count:
                        return
                    else:
                        raise ValueError(f"unexpected line {obj!r}")
                except (ValueError, TypeError) as e:
                    raise DriveUnavailable(f"{self}: unreadable listing: {e}") from None
                count += 1
                yield info

    async def verify(self, fid: FragmentId) -> list[int]:
        path = protocol.fragment_path(self.drive_id, fid.name) + "/verify"
        async with self._call("POST", path, limits=self._verify_timeout) as resp:
            if resp.status != 200:
                raise await self._failure(resp, fid)
            obj = await self._json(resp)
        bad = obj.get("bad") if isinstance(obj, dict) else None
        if not isinstance(bad, list) or not all(type(j) is int for j in bad):
            raise DriveUnavailable(f"{self}: unexpected answer to verify: {obj!r}")
        return bad

    # -- plumbing -----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _call(
        self, method: str, path_qs: str, *, data: Any = None, limits: aiohttp.ClientTimeout | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed request; network failures, here or while the caller reads, become DriveUnavailable."""
        if self._closed:
            raise DriveUnavailable(f"{self}: closed")
        if self._session is None:  # made on first use: a session belongs to the loop it was made in
            self._session = aiohttp.ClientSession()
        signature = auth.sign(self._secret, method, path_qs, None if data is not None else b"")
        try:
            async with self._session.request(
                method,
                URL(self.base_url + path_qs, encoded=True),  # sent exactly as signed
                data=data,
                headers={auth.HEADER: signature},
                timeout=limits or self._timeout,
                allow_redirects=False,
            ) as resp:
                yield resp
        except _NETWORK_ERRORS as e:
            raise DriveUnavailable(f"{self}: {_describe(e)}") from e

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        try:
            return json.loads(await _read_small(resp, MAX_ERROR_BODY))
        except ValueError as e:
            raise DriveUnavailable(f"{self}: unreadable answer (HTTP {resp.status}): {e}") from None

    async def _failure(self, resp: aiohttp.ClientResponse, fid: FragmentId | None) -> Exception:
        """The exception for a non-200 answer: the node's own error if it sent one."""
        try:
            error = WireError.from_json(json.loads(await _read_small(resp, MAX_ERROR_BODY)))
        except ValueError:
            # Not one of ours (a proxy, or not a storage node at all).
            return DriveUnavailable(f"{self}: HTTP {resp.status} {resp.reason}")
        return protocol.drive_error(error, fid, str(self))

    def _info(self, obj: Any) -> FragmentInfo:
        try:
            return protocol.info_from_json(obj)
        except ValueError as e:
            raise DriveUnavailable(f"{self}: {e}") from None

    def _expect_type(self, resp: aiohttp.ClientResponse, content_type: str) -> None:
        if resp.content_type != content_type:
            raise DriveUnavailable(f"{self}: answered {resp.content_type}, not {content_type}")


class _Upload:
    """The body of a put: the caller's chunks, checked against the chunk rules and framed.

    A failure of the caller's stream (or a broken rule) is kept in `error` and the node is told with
    an error frame, so it drops the fragment and the connection stays usable; put() then raises it.
    """

    def __init__(self, fid: FragmentId, chunks: AsyncIterable[bytes], timeout: float) -> None:
        self.fid = fid
        self.error: Exception | None = None
        self.deadline: asyncio.Timeout | None = None
        self._chunks = chunks
        self._timeout = timeout
        self._answered = False

    async def frames(self) -> AsyncIterator[bytes]:
        # Every chunk goes out as it comes: the node must see a slow source's bytes (and time it out
        # if they stop), and the gateway's chunks are large enough that batching would buy nothing.
        encoder = FrameEncoder(flush_bytes=0)
        name = self.fid.name
        chunk_size = last_len = 0
        try:
            async for chunk in self._chunks:
                # The node enforces these too; checking here fails fast, and an empty chunk cannot
                # be framed at all (length 0 is the end frame).
                n = len(chunk)
                if n == 0:
                    raise InvalidFragmentStream(f"{name}: empty chunk")
                if chunk_size == 0:
                    if n > protocol.MAX_PAYLOAD:
                        raise InvalidFragmentStream(f"{name}: chunk of {n} bytes is too large for a remote drive")
                    chunk_size = n
                elif last_len != chunk_size:
                    raise InvalidFragmentStream(f"{name}: {last_len}-byte chunk before the last, not {chunk_size}")
                elif n > chunk_size:
                    raise InvalidFragmentStream(f"{name}: a {n}-byte chunk after {chunk_size}-byte ones")
                last_len = n
                data = encoder.chunk(chunk)
                if data is not None:
                    self._arm()
                    yield data
                    self._disarm()
            if chunk_size == 0:
                raise InvalidFragmentStream(f"{name}: no chunks")
        except Exception as e:
            self.error = e
            last = encoder.error(WireError(protocol.ABORTED, f"{type(e).__name__}: {e}"), keep_pending=False)
        else:
            last = encoder.end()
        self._arm()
        yield last
        self._disarm()

    def done(self) -> None:
        self._answered = True
        self._reschedule(None)

    def _arm(self) -> None:
        # While aiohttp holds a batch, we wait on the node taking bytes: that wait is bounded.
        self._reschedule(asyncio.get_running_loop().time() + self._timeout)

    def _disarm(self) -> None:
        # Back to waiting on the caller's stream, which is not the node's fault.
        self._reschedule(None)

    def _reschedule(self, when: float | None) -> None:
        if self.deadline is None or (self._answered and when is not None):
            return
        with contextlib.suppress(RuntimeError):  # the deadline already fired, or put() has returned
            self.deadline.reschedule(when)


async def fetch_node_drives(
    base_url: str, secret: bytes, session: aiohttp.ClientSession | None = None, read_timeout: float = TIMEOUT
) -> list[protocol.NodeDrive]:
    """The drives a node serves (GET /v1/drives). Raises DriveUnavailable if it cannot say."""
    where = f"node {base_url}"
    status, body = await _small_call(
        session, base_url, secret, "GET", protocol.drives_path(), read_timeout, 16 << 20, DriveUnavailable
    )
    try:
        obj = json.loads(body)
        if status != 200:
            raise protocol.drive_error(WireError.from_json(obj), None, where)
        return [protocol.NodeDrive(d["id"], d["path"], d.get("capacity"), d.get("free")) for d in obj["drives"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DriveUnavailable(f"{where}: unreadable answer (HTTP {status}): {e}") from None


class NodeError(Exception):
    """A node did not carry out a control request: unreachable, timed out, refused, or an unreadable answer."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # the node's error kind (protocol.NO_SCRUBBER, FORBIDDEN, ...), "" if it sent none


class NodeClient:
    """A storage node's controls (its drives are RemoteDrives). No retries here: callers decide."""

    def __init__(
        self, address: str, secret: bytes, session: aiohttp.ClientSession | None = None, timeout: float = TIMEOUT
    ) -> None:
        self.address = address.rstrip("/")
        self._secret = secret
        self._session = session
        self._own_session = session is None
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"NodeClient({self.address!r})"

    async def close(self) -> None:
        """Close the session if this client made it (one passed in is the caller's)."""
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def start_scrub(self) -> ScrubStatus:
        """Start a scrub pass unless one is running; returns the status of the pass now running."""
        return self._scrub_status(await self._call("POST", protocol.scrub_path()))

    async def scrub_status(self) -> ScrubStatus:
        """The pass running, else the last one."""
        return self._scrub_status(await self._call("GET", protocol.scrub_path()))

    def _scrub_status(self, obj: Any) -> ScrubStatus:
        try:
            return ScrubStatus.from_json(obj)
        except ValueError as e:
            raise NodeError(f"{self}: {e}") from None

    async def _call(self, method: str, path: str) -> Any:
        """A signed call; the JSON document of a 200, else NodeError."""
        if self._session is None:  # made on first use: a session belongs to the loop it was made in
            self._session = aiohttp.ClientSession()
        status, body = await _small_call(self._session, self.address, self._secret, method, path, self._timeout)
        try:
            obj = json.loads(body)
        except ValueError:
            raise NodeError(f"{self}: {method} {path}: unreadable answer (HTTP {status})") from None
        if status != 200:
            try:
                error = WireError.from_json(obj)
            except ValueError:
                raise NodeError(f"{self}: {method} {path}: HTTP {status}") from None
            raise NodeError(f"{self}: {method} {path}: {error.kind}: {error.message}", error.kind)
        return obj


async def _small_call(
    session: aiohttp.ClientSession | None,
    base_url: str,
    secret: bytes,
    method: str,
    path: str,
    read_timeout: float,
    limit: int = MAX_ERROR_BODY,
    fail: Callable[[str], Exception] = NodeError,
) -> tuple[int, bytes]:
    """A signed, bodiless request with a small answer: (status, body). No answer raises fail(why)."""
    own = session is None
    session = session or aiohttp.ClientSession()
    where = f"node {base_url}"
    try:
        async with session.request(
            method,
            URL(base_url.rstrip("/") + path, encoded=True),
            headers={auth.HEADER: auth.sign(secret, method, path, b"")},
            timeout=aiohttp.ClientTimeout(
                total=None, connect=read_timeout, sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout
            ),
            allow_redirects=False,
        ) as resp:
            try:
                return resp.status, await _read_small(resp, limit)
            except ValueError as e:
                raise fail(f"{where}: {e}") from None
    except _NETWORK_ERRORS as e:
        raise fail(f"{where}: {_describe(e)}") from e
    finally:
        if own:
            await session.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection cut mid-stream"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


async def _read_small(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """A whole (JSON) answer, refusing one larger than limit."""
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"answer larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
