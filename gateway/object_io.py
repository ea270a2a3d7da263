"""The streaming erasure-coded pipelines: a body into fragments on drives, and back.

Memory per request stays at a few segments: the writer holds one segment being cut, its
k+m fragments, and at most QUEUE_DEPTH fragments queued per drive; the reader holds one
chunk per fragment it reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.erasure import Scheme
from metadata.records import PartRecord
from storage_node.drive import Drive, DriveError, FragmentId

log = logging.getLogger(__name__)

QUEUE_DEPTH = 2  # fragments buffered per drive: enough to keep every drive busy
CHUNK_TIMEOUT = 30.0  # seconds a drive may take to deliver one chunk before we read parity instead


class BodySource(Protocol):
    async def read(self) -> bytes:
        """The next piece of the decoded body; b"" at the end."""
        ...


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


class WriteQuorumError(Exception):
    """Fewer than k+1 fragments became durable: the data must not be committed."""


class ReadError(Exception):
    """Fewer than k fragments of a segment could be read and verified."""


@dataclass(slots=True)
class WrittenPart:
    size: int
    md5: bytes
    placement: list[str]
    missed: list[int]  # fragment indexes that did not become durable (to repair)


def write_quorum(scheme: Scheme) -> int:
    return min(scheme.k + 1, scheme.width)


async def _segments(source: BodySource, size: int) -> AsyncIterator[bytes]:
    """Cut the body into segments of exactly `size` bytes (the last may be shorter or empty)."""
    buf = bytearray()
    sent = False
    while True:
        piece = await source.read()
        if not piece:
            break
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
            sent = True
    if buf or not sent:
        yield bytes(buf)


class _FragmentFeed:
    """Queue of fragments for one drive, and the task that streams them into drive.put."""

    def __init__(self, drive: Drive, fid: FragmentId) -> None:
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_DEPTH)
        self.task = asyncio.ensure_future(drive.put(fid, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def feed(self, item: bytes | BaseException | None) -> bool:
        """Queue an item unless the drive has already failed; never blocks on a dead drive."""
        if self.task.done():
            return False
        if not self.queue.full():
            self.queue.put_nowait(item)
            return True
        put = asyncio.ensure_future(self.queue.put(item))
        await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if put.done():
            return True
        put.cancel()
        return False


class _Abort(Exception):
    """Makes a drive drop its temporary file when the body fails mid-stream."""


async def write_part(
    source: BodySource,
    drives: Sequence[Drive],
    scheme: Scheme,
    data_id: str,
    part_number: int,
    hashers: Sequence[Hasher] = (),
) -> WrittenPart:
    """Stream a body into k+m fragments, fragment i onto drives[i], concurrently.

    MD5 and the given hashers see every byte (in a worker thread: hashlib releases the GIL
    while the event loop thread encodes). Raises WriteQuorumError if fewer than k+1
    fragments became durable, after removing the ones that did; re-raises the source's
    error after aborting every drive write.
    """
    md5 = hashlib.md5()
    all_hashers = [md5, *hashers]

    def hash_segment(seg: bytes) -> None:
        for h in all_hashers:
            h.update(seg)

    feeds = [_FragmentFeed(d, FragmentId(data_id, part_number, i)) for i, d in enumerate(drives)]
    size = 0
    try:
        async for seg in _segments(source, scheme.segment_size):
            size += len(seg)
            hashing = asyncio.ensure_future(asyncio.to_thread(hash_segment, seg))
            fragments = scheme.encode(seg)
            await asyncio.gather(*(f.feed(frag) for f, frag in zip(feeds, fragments, strict=True)))
            await hashing
    except BaseException as exc:
        for f in feeds:
            if not f.task.done():
                f.queue = _drain_and_put(f.queue, _Abort())
        await asyncio.gather(*(f.task for f in feeds), return_exceptions=True)
        raise exc
    await asyncio.gather(*(f.feed(None) for f in feeds))
    results = await asyncio.gather(*(f.task for f in feeds), return_exceptions=True)
    missed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    for i in missed:
        log.warning("fragment %s.%d.%d missed its write: %r", data_id, part_number, i, results[i])
    if len(drives) - len(missed) < write_quorum(scheme):
        await delete_fragments(drives, data_id, part_number)
        raise WriteQuorumError(f"only {len(drives) - len(missed)} of {len(drives)} fragments written")
    return WrittenPart(size, md5.digest(), [d.drive_id for d in drives], missed)


def _drain_and_put(
    q: asyncio.Queue[bytes | BaseException | None], item: BaseException
) -> asyncio.Queue[bytes | BaseException | None]:
    # Queued fragments no longer matter: make room so the abort reaches the drive at once.
    while not q.empty():
        q.get_nowait()
    q.put_nowait(item)
    return q


async def delete_fragments(drives: Sequence[Drive | None], data_id: str, part_number: int) -> None:
    """Delete fragment i from drives[i]; best effort, as a fragment left behind (its drive
    absent or failing now) is an orphan for the collector."""
    results = await asyncio.gather(
        *(d.delete(FragmentId(data_id, part_number, i)) for i, d in enumerate(drives) if d is not None),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BaseException):
            log.warning("could not delete a fragment of %s.%d: %r", data_id, part_number, r)


class _Cursor:
    """Reads one fragment's chunks in order, one at a time."""

    def __init__(self, drive: Drive, fid: FragmentId, first: int, end: int) -> None:
        self.fid = fid
        self._it = drive.get(fid, first, end).__aiter__()

    async def next(self) -> bytes:
        try:
            return await asyncio.wait_for(self._it.__anext__(), CHUNK_TIMEOUT)
        except StopAsyncIteration:
            raise DriveError(f"fragment {self.fid.name} ended early") from None

    async def close(self) -> None:
        aclose = getattr(self._it, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a broken stream must not hide the read's own outcome
                log.debug("closing %s failed", self.fid.name, exc_info=True)


async def read_part(
    part: PartRecord,
    drives: Mapping[str, Drive],
    first: int,
    end: int,
    on_bad_fragment: Callable[[FragmentId, BaseException], None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the plaintext of segments [first, end) of a part, each verified.

    Reads the k data fragments; a fragment that is missing, corrupt, unreachable or slow is
    replaced by a parity fragment from that segment on. Raises ReadError when fewer than k
    fragments of a segment are good; nothing unverified is ever yielded.
    """
    scheme = Scheme(part.k, part.m, part.segment_size)

    def open_cursor(i: int, at: int) -> _Cursor | None:
        drive = drives.get(part.placement[i])
        if drive is None:
            if on_bad_fragment:
                on_bad_fragment(FragmentId(part.data_id, part.number, i), DriveError("drive not attached"))
            return None
        return _Cursor(drive, FragmentId(part.data_id, part.number, i), at, end)

    spare = list(range(scheme.width))
    active: dict[int, _Cursor] = {}
    try:
        for seg in range(first, end):
            chunks: dict[int, bytes] = {}
            while len(chunks) < scheme.k:
                pending = [i for i in active if i not in chunks]
                while len(pending) < scheme.k - len(chunks) and spare:
                    i = spare.pop(0)
                    cursor = open_cursor(i, seg)
                    if cursor is not None:
                        active[i] = cursor
                        pending.append(i)
                if not pending:
                    raise ReadError(
                        f"{part.data_id} part {part.number} segment {seg}: "
                        f"only {len(chunks)} of the {scheme.k} fragments needed are readable"
                    )
                got = await asyncio.gather(*(active[i].next() for i in pending), return_exceptions=True)
                for i, r in zip(pending, got, strict=True):
                    if isinstance(r, BaseException):
                        if not isinstance(r, DriveError | TimeoutError | OSError):
                            raise r
                        log.warning("fragment %s.%d.%d unreadable: %r", part.data_id, part.number, i, r)
                        if on_bad_fragment:
                            on_bad_fragment(active[i].fid, r)
                        await active.pop(i).close()
                    else:
                        chunks[i] = r
            yield scheme.decode([chunks[i] for i in sorted(chunks)])
    finally:
        await asyncio.gather(*(c.close() for c in active.values()))
