"""RemoteDrive: the Drive seam over HTTP, to a drive on a storage node (storage_node/service.py);
NodeClient: the node's own controls (its scrubber), beside its drives. Both call through
cluster/client.py's RpcClient.

It raises what a LocalDrive raises (FragmentNotFound, CorruptFragment with the chunk number,
InvalidFragmentStream), and DriveUnavailable for anything that keeps the drive out of reach: a
refused or cut connection, a timeout, a 5xx, a refused signature, bytes damaged in transit.
No retries here: the gateway retries, at one layer only. Puts are idempotent by FragmentId.

Timeouts bound every wait on the network, never a whole transfer: connecting, each socket read,
and each write of a put body (the node must keep taking bytes); a stream may run as long as it
keeps moving. A put waiting on its own source (a slow S3 client upstream) is not timed out here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import aiohttp

from cluster.auth import FrameChain
from cluster.client import ErrorAnswer, Refused, RpcClient, StreamedBody, Timeouts, read_answer
from storage_node import protocol
from storage_node.drive import (
    DriveError,
    DriveUnavailable,
    FragmentId,
    FragmentInfo,
    InvalidFragmentStream,
)
from storage_node.protocol import ErrorFrame, FrameEncoder, FrameReader, FramingError, ScrubStatus, WireError

TIMEOUT = 30.0  # seconds without progress on a connection before the drive counts as unavailable
CONNECT_TIMEOUT = 5.0
VERIFY_TIMEOUT = 600.0  # verify reads a whole fragment before it answers: allow for big, slow ones


def _timeouts(timeout: float, connect_timeout: float = CONNECT_TIMEOUT) -> Timeouts:
    # `pool` also bounds the wait for a pooled connection; no total: streams may run long.
    return Timeouts(pool=timeout, connect=connect_timeout, read=timeout, write=timeout)


def _drive_refusal(where: str, fid: FragmentId | None) -> Refused:
    """The exception for an error answer: the node's own error if it sent one."""

    def refused(answer: ErrorAnswer) -> Exception:
        if answer.doc is None:  # not one of ours (a proxy, or not a storage node at all)
            return DriveUnavailable(f"{where}: HTTP {answer.status} {answer.reason}")
        return protocol.drive_error(WireError.from_json(answer.doc), fid, where)

    return refused


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
        self._closed = False
        timeouts = _timeouts(timeout, connect_timeout)
        self._verify_timeouts = replace(timeouts, read=max(timeout, verify_timeout))
        self._rpc = RpcClient(
            self.base_url,
            secret,
            session=session,
            timeouts=timeouts,
            unavailable=lambda why: DriveUnavailable(f"{self}: {why}"),
            refused=_drive_refusal(str(self), None),
        )

    def __repr__(self) -> str:
        return f"RemoteDrive({self.base_url!r}, id={self.drive_id})"

    async def close(self) -> None:
        """Refuse further calls; close the session if this drive made it (one passed in is the caller's)."""
        self._closed = True
        await self._rpc.close()

    # -- the Drive seam -------------------------------------------------------------------------------

    async def put(self, fid: FragmentId, chunks: AsyncIterable[bytes]) -> FragmentInfo:
        upload = _Upload(fid, chunks)
        obj: Any = None
        error: DriveError | None = None
        try:
            async with self._stream("PUT", protocol.fragment_path(self.drive_id, fid.name), fid, upload.frames) as r:
                obj = await self._json(r)
        except DriveError as e:
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
        async with self._stream("GET", path, fid) as resp:
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
        info = self._info(await self._small("GET", protocol.fragment_path(self.drive_id, fid.name) + "/stat", fid))
        if info.fid != fid:
            raise DriveUnavailable(f"{self}: stat {fid.name} was answered for {info.fid.name}")
        return info

    async def delete(self, fid: FragmentId) -> bool:
        obj = await self._small("DELETE", protocol.fragment_path(self.drive_id, fid.name), fid)
        deleted = obj.get("deleted") if isinstance(obj, dict) else None
        if not isinstance(deleted, bool):
            raise DriveUnavailable(f"{self}: unexpected answer to delete: {obj!r}")
        return deleted

    async def list(self) -> AsyncIterator[FragmentInfo]:
        async with self._stream("GET", protocol.fragments_path(self.drive_id), None) as resp:
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
        obj = await self._small("POST", path, fid, self._verify_timeouts)
        bad = obj.get("bad") if isinstance(obj, dict) else None
        if not isinstance(bad, list) or not all(type(j) is int for j in bad):
            raise DriveUnavailable(f"{self}: unexpected answer to verify: {obj!r}")
        return bad

    # -- plumbing -----------------------------------------------------------------------------------

    def _stream(
        self, method: str, path_qs: str, fid: FragmentId | None, body: StreamedBody | None = None
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        if self._closed:
            raise DriveUnavailable(f"{self}: closed")
        return self._rpc.stream(method, path_qs, b"" if body is None else body, refused=_drive_refusal(str(self), fid))

    async def _small(self, method: str, path_qs: str, fid: FragmentId, timeouts: Timeouts | None = None) -> Any:
        """A call answered with a small JSON document."""
        if self._closed:
            raise DriveUnavailable(f"{self}: closed")
        body = await self._rpc.call(method, path_qs, timeouts=timeouts, refused=_drive_refusal(str(self), fid))
        try:
            return json.loads(body)
        except ValueError as e:
            raise DriveUnavailable(f"{self}: unreadable answer: {e}") from None

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        try:
            return json.loads(await read_answer(resp))
        except ValueError as e:
            raise DriveUnavailable(f"{self}: unreadable answer (HTTP {resp.status}): {e}") from None

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

    def __init__(self, fid: FragmentId, chunks: AsyncIterable[bytes]) -> None:
        self.fid = fid
        self.error: Exception | None = None
        self._chunks = chunks

    async def frames(self, chain: FrameChain) -> AsyncIterator[bytes]:
        # Every chunk goes out as it comes: the node must see a slow source's bytes (and time it out
        # if they stop), and the gateway's chunks are large enough that batching would buy nothing.
        encoder = FrameEncoder(flush_bytes=0, chain=chain)
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
                    yield data
            if chunk_size == 0:
                raise InvalidFragmentStream(f"{name}: no chunks")
        except Exception as e:
            self.error = e
            yield encoder.error(WireError(protocol.ABORTED, f"{type(e).__name__}: {e}"), keep_pending=False)
        else:
            yield encoder.end()


def _small_timeouts(read_timeout: float) -> Timeouts:
    return Timeouts(pool=read_timeout, connect=CONNECT_TIMEOUT, read=read_timeout)


async def fetch_node_drives(
    base_url: str, secret: bytes, session: aiohttp.ClientSession | None = None, read_timeout: float = TIMEOUT
) -> list[protocol.NodeDrive]:
    """The drives a node serves (GET /v1/drives). Raises DriveUnavailable if it cannot say."""
    where = f"node {base_url}"
    rpc = RpcClient(
        base_url,
        secret,
        session=session,
        timeouts=_small_timeouts(read_timeout),
        unavailable=lambda why: DriveUnavailable(f"{where}: {why}"),
        refused=_drive_refusal(where, None),
    )
    try:
        body = await rpc.call("GET", protocol.drives_path(), idempotent=True, limit=16 << 20)
    finally:
        await rpc.close()
    try:
        obj = json.loads(body)
        return [protocol.NodeDrive(d["id"], d["path"], d.get("capacity"), d.get("free")) for d in obj["drives"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DriveUnavailable(f"{where}: unreadable answer: {e}") from None


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
        self._rpc = RpcClient(
            self.address,
            secret,
            session=session,
            timeouts=_small_timeouts(timeout),
            unavailable=lambda why: NodeError(f"node {self.address}: {why}"),
            refused=lambda answer: NodeError(f"{self}: HTTP {answer.status}"),
        )

    def __repr__(self) -> str:
        return f"NodeClient({self.address!r})"

    async def close(self) -> None:
        """Close the session if this client made it (one passed in is the caller's)."""
        await self._rpc.close()

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
        """A signed call; the JSON document of a 2xx, else NodeError."""

        def refused(answer: ErrorAnswer) -> Exception:
            if answer.doc is None:
                return NodeError(f"{self}: {method} {path}: HTTP {answer.status}")
            return NodeError(f"{self}: {method} {path}: {answer.kind}: {answer.message}", answer.kind)

        body = await self._rpc.call(method, path, idempotent=method == "GET", refused=refused)
        try:
            return json.loads(body)
        except ValueError:
            raise NodeError(f"{self}: {method} {path}: unreadable answer") from None
