"""Objects as data: writing parts onto drives, streaming byte ranges back, discarding old data.

Sits between the S3 handlers and the two seams. It knows nothing of HTTP; it knows which
drives hold which fragments, and it defers deleting data that a reader is still streaming.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence

from gateway.objects.drive_set import DriveSet
from gateway.objects.erasure import Scheme
from gateway.objects.pipelines import (
    BodySource,
    Hasher,
    WriteQuorumError,
    delete_fragments,
    read_part,
    write_part,
    write_quorum,
)
from gateway.objects.placement import full_drives, place
from metadata.records import ObjectManifest, PartRecord, RepairEntry
from storage_node.drive import CorruptFragment, FragmentId, FragmentNotFound

log = logging.getLogger(__name__)


_ID_BYTES = 16
_ID_POOL = _ID_BYTES * 256
_id_pool = b""
_id_next = _ID_POOL
_id_lock = threading.Lock()


def new_id() -> str:
    """128 random bits as 32 hex digits, like uuid4().hex, drawn from a pool filled 256 ids at a time:
    one getrandom call per id was, at 4 KiB PUTs, a GIL release and a wait to get it back each time."""
    global _id_pool, _id_next
    with _id_lock:  # two threads must never take the same bytes
        if _id_next == _ID_POOL:
            _id_pool, _id_next = os.urandom(_ID_POOL), 0
        start = _id_next
        _id_next += _ID_BYTES
    return _id_pool[start : start + _ID_BYTES].hex()


def _forget_ids() -> None:
    """In a forked child (`--workers`): never hand out the bytes the parent or a sibling may also use."""
    global _id_pool, _id_next
    _id_pool, _id_next = b"", _ID_POOL


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_ids)


class StorageUnavailable(Exception):
    """Too few drives are placeable, up, or took the data to store it safely; retrying later may succeed."""


INLINE_MAX = 128 << 10  # bytes; bodies up to this size live in the manifest (MinIO's threshold too)


async def _read_head(source: BodySource, limit: int) -> tuple[bytes, bool]:
    """Read until more than `limit` bytes or the end; (bytes read, whether the body ended)."""
    pieces: list[bytes] = []
    n = 0
    while n <= limit:
        piece = await source.read()
        if not piece:
            return b"".join(pieces), True
        pieces.append(piece)
        n += len(piece)
    return b"".join(pieces), False


class _Prefixed:
    """A body source whose first bytes were already read."""

    def __init__(self, head: bytes, rest: BodySource) -> None:
        self._head: bytes | None = head
        self._rest = rest

    async def read(self) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            if head:
                return head
        return await self._rest.read()


class ObjectLayer:
    def __init__(self, drives: DriveSet, scheme: Scheme) -> None:
        self.scheme = scheme
        self.drives = drives
        self._readers: Counter[str] = Counter()
        self._doomed: dict[str, list[PartRecord]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Where damage seen while writing or reading goes (the repairer's queue); None: nowhere.
        self.report: Callable[[list[RepairEntry]], None] | None = None

    async def write(self, source: BodySource, number: int, hashers: Sequence[Hasher] = ()) -> tuple[PartRecord, bytes]:
        """Store a body as a new data version; returns its part record and the body's MD5.

        A body of at most INLINE_MAX bytes is kept in the part record itself (the manifest),
        as MinIO does: one durable index write instead of k+m fragment files and their fsyncs.
        Raises StorageUnavailable when the data cannot be stored at write quorum.
        """
        head, ended = await _read_head(source, INLINE_MAX)
        if ended:
            return self._inline(head, number, hashers)
        data_id = new_id()
        try:
            placement = place(data_id, self.drives.slots(), self.scheme.width)
        except ValueError as exc:
            raise StorageUnavailable(f"Not enough storage nodes: {exc}") from None
        full = full_drives(self.drives.slots())  # no room: their fragments miss the write
        targets = [None if d in full else self.drives.drive(d) for d in placement]
        if sum(t is not None for t in targets) < write_quorum(self.scheme):
            why = "have free space" if full else "are up"
            raise StorageUnavailable(f"Too few storage nodes {why} to store data safely.")
        try:
            written = await write_part(_Prefixed(head, source), targets, self.scheme, data_id, number, hashers)
        except WriteQuorumError as exc:
            raise StorageUnavailable(f"Too few drives took the data: {exc}") from None
        rec = PartRecord(
            number=number,
            data_id=data_id,
            size=written.size,
            etag=written.md5.hex(),
            placement=placement,
            missed=written.missed,
            k=self.scheme.k,
            m=self.scheme.m,
            segment_size=self.scheme.segment_size,
            last_modified=time.time(),
        )
        return rec, written.md5

    def _inline(self, data: bytes, number: int, hashers: Sequence[Hasher]) -> tuple[PartRecord, bytes]:
        md5 = hashlib.md5(data)
        for h in hashers:
            h.update(data)
        rec = PartRecord(
            number=number,
            data_id=new_id(),
            size=len(data),
            etag=md5.hexdigest(),
            placement=[],
            k=self.scheme.k,
            m=self.scheme.m,
            segment_size=self.scheme.segment_size,
            last_modified=time.time(),
            inline=data,
        )
        return rec, md5.digest()

    async def stream(self, man: ObjectManifest, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes [start, end] (inclusive) of an object, reading only the segments needed."""
        ids = [p.data_id for p in man.parts]
        self._readers.update(ids)
        try:
            offset = 0
            for part in man.parts:
                p_start, p_end = offset, offset + part.size - 1
                offset += part.size
                if p_end < start or p_start > end or part.size == 0:
                    continue
                lo, hi = max(start, p_start) - p_start, min(end, p_end) - p_start
                if part.inline is not None:
                    yield part.inline[lo : hi + 1]
                    continue
                scheme = Scheme(part.k, part.m, part.segment_size)
                first, last = scheme.segment_span(part.size, lo, hi)
                pos = first * part.segment_size
                heal = functools.partial(self._bad_fragment, man, part)
                async for seg in read_part(part, self.drives.drive, first, last, heal):
                    a, b = max(lo - pos, 0), min(hi - pos + 1, len(seg))
                    pos += len(seg)
                    if a < b:
                        yield seg[a:b] if (a, b) != (0, len(seg)) else seg
        finally:
            self._readers.subtract(ids)
            for data_id in ids:
                if self._readers[data_id] <= 0:
                    del self._readers[data_id]
                    if data_id in self._doomed:
                        self._spawn(self._delete(self._doomed.pop(data_id)))

    def committed(self, man: ObjectManifest) -> None:
        """A manifest is in the index: fragments that missed their write are queued for repair."""
        if self.report is None:
            return
        now = time.time()
        entries = [
            RepairEntry(
                p.k + p.m - len(p.missed), p.data_id, p.number, i, man.bucket, man.key, "write", p.placement[i], now
            )
            for p in man.parts
            for i in p.missed
        ]
        if entries:
            self.report(entries)

    def _bad_fragment(self, man: ObjectManifest, part: PartRecord, fid: FragmentId, exc: BaseException) -> None:
        # Heal on read: a fragment found missing or corrupt is rebuilt. An unreachable node is not
        # reported here; it is repaired once it stays away longer than the node grace.
        if self.report is not None and isinstance(exc, FragmentNotFound | CorruptFragment):
            entry = RepairEntry(
                part.k + part.m - 1,
                part.data_id,
                part.number,
                fid.index,
                man.bucket,
                man.key,
                "read",
                part.placement[fid.index],
                time.time(),
            )
            self.report([entry])

    def discard(self, parts: Sequence[PartRecord]) -> None:
        """Delete the data of parts no longer referenced, once nobody streams them."""
        for part in parts:
            if self._readers[part.data_id] > 0:
                self._doomed.setdefault(part.data_id, []).append(part)
            else:
                self._spawn(self._delete([part]))

    async def _delete(self, parts: list[PartRecord]) -> None:
        for part in parts:
            await delete_fragments([self.drives.drive(d) for d in part.placement], part.data_id, part.number)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background deletions (on shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
