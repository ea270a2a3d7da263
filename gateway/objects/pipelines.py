"""The streaming erasure-coded pipelines: a body into fragments on drives, and back.

Memory per request stays at a few segments: the writer holds one segment being cut, its
k+m fragments, and at most feeds.QUEUE_DEPTH fragments queued per drive; the reader holds a
few chunks per fragment it reads (_Cursor.AHEAD).

A write is acknowledged once write_quorum (k+1) fragments are durable and the other drives have had
a bounded grace; the rule, and what it means for a slow or paused drive, is in gateway/objects/feeds.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from gateway.objects.erasure import Scheme
from gateway.objects.feeds import FragmentFeed as FragmentFeed
from gateway.objects.feeds import Stripe, unwinding
from metadata.records import PartRecord
from storage_node.drive import Drive, DriveError, FragmentId

log = logging.getLogger(__name__)

ENCODE_DEPTH = 2  # segments being encoded while the event loop reads the body and feeds the drives
# Encoding releases the GIL (rs_isal); order is kept by awaiting the results in turn.
_ENCODERS = ThreadPoolExecutor(2, thread_name_prefix="encode")
CHUNK_TIMEOUT = 30.0  # seconds a drive may take to deliver one chunk before it counts as failed
HEDGE_AFTER = 1.0  # seconds without a chunk before a spare fragment is asked for beside it


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
    missed: list[int]  # fragment indexes that did not become durable (to repair)


def write_quorum(scheme: Scheme) -> int:
    return min(scheme.k + 1, scheme.width)


async def _segments(source: BodySource, size: int) -> AsyncIterator[bytes]:
    """Cut the body into segments of exactly `size` bytes (the last may be shorter or empty).

    Each byte is copied once, by the join; a piece that is exactly one segment is passed on as it is.
    """
    pieces: list[bytes | memoryview] = []
    have = 0
    sent = False
    while True:
        piece = await source.read()
        if not piece:
            break
        view = memoryview(piece)
        while have + len(view) >= size:
            take = size - have
            pieces.append(view[:take])
            yield piece if take == len(piece) and len(pieces) == 1 else b"".join(pieces)
            pieces, have, sent = [], 0, True
            view = view[take:]
        if view:
            pieces.append(view)
            have += len(view)
    if pieces or not sent:
        yield b"".join(pieces)


class _OrderedHashing:
    """Feeds segments to hashers in order, on a thread of its own, up to DEPTH segments behind.

    hashlib releases the GIL, so this overlaps the encoding and the writes; a shared pool would
    not keep the order, and waiting for each segment before the next leaves the thread idle
    while the event loop holds the GIL.
    """

    DEPTH = 2

    def __init__(self, hashers: Sequence[Hasher]) -> None:
        self._hashers = hashers
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hash")
        self._pending: deque[asyncio.Future[None]] = deque()

    def _update(self, seg: bytes) -> None:
        for h in self._hashers:
            h.update(seg)

    async def add(self, seg: bytes) -> None:
        if len(self._pending) >= self.DEPTH:
            await self._pending.popleft()
        # run_in_executor submits now; a to_thread task would only submit at the next await.
        self._pending.append(asyncio.get_running_loop().run_in_executor(self._pool, self._update, seg))

    async def finish(self) -> None:
        """Wait for every segment to be hashed (also on failure, so no thread outlives the request)."""
        try:
            results = await asyncio.gather(*self._pending, return_exceptions=True)
        finally:
            self._pool.shutdown(wait=False)
        for r in results:
            if isinstance(r, BaseException):
                raise r


class _Abort(Exception):
    """Makes a drive drop its temporary file when the body fails mid-stream."""


async def write_part(
    source: BodySource,
    targets: Sequence[Drive | None],
    scheme: Scheme,
    data_id: str,
    part_number: int,
    hashers: Sequence[Hasher] = (),
) -> WrittenPart:
    """Stream a body into k+m fragments, fragment i onto targets[i], concurrently.

    A None target (a node known to be down) misses its fragment from the start. MD5 and the
    given hashers see every byte (on a thread of their own: see _OrderedHashing). A drive still
    behind once k+1 have done a step, after the grace, misses its fragment (feeds.py). Raises
    WriteQuorumError if fewer than k+1 fragments became durable, after removing the ones that
    did; re-raises the source's error after aborting every write.
    """
    md5 = hashlib.md5()
    hashing = _OrderedHashing([md5, *hashers])
    stripe = Stripe(
        [
            FragmentFeed(d, FragmentId(data_id, part_number, i))
            if d is not None and not unwinding(d.drive_id)
            else None
            for i, d in enumerate(targets)
        ],
        write_quorum(scheme),
    )
    size = 0
    loop = asyncio.get_running_loop()
    encoding: deque[asyncio.Future[list[bytes] | list[bytearray]]] = deque()
    try:
        try:
            async for seg in _segments(source, scheme.segment_size):
                size += len(seg)
                await hashing.add(seg)
                encoding.append(loop.run_in_executor(_ENCODERS, scheme.encode, seg))
                if len(encoding) >= ENCODE_DEPTH:
                    await stripe.feed(await encoding.popleft())
            while encoding:
                await stripe.feed(await encoding.popleft())
        finally:
            await asyncio.gather(*encoding, return_exceptions=True)  # none left running on failure
            await hashing.finish()
    except BaseException as exc:
        await stripe.abort(_Abort())
        raise exc
    missed = await stripe.finish()
    for i, why in missed.items():
        log.warning("fragment %s.%d.%d missed its write: %r", data_id, part_number, i, why)
    if len(targets) - len(missed) < write_quorum(scheme):
        await delete_fragments(targets, data_id, part_number)
        raise WriteQuorumError(f"only {len(targets) - len(missed)} of {len(targets)} fragments written")
    return WrittenPart(size, md5.digest(), list(missed))


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
    """Reads one fragment's chunks in order, on a task of its own that keeps up to AHEAD read.

    A chunk already read is taken with ready(), without a task or a wait per segment.
    """

    AHEAD = 2

    def __init__(self, drive: Drive, fid: FragmentId, first: int, end: int) -> None:
        self.fid = fid
        self._it = drive.get(fid, first, end).__aiter__()
        self._read: asyncio.Queue[bytes | BaseException] = asyncio.Queue(self.AHEAD)
        self._failed: BaseException | None = None
        self._pump = asyncio.ensure_future(self._read_ahead())

    async def _read_ahead(self) -> None:
        try:
            while True:
                await self._read.put(await self._it.__anext__())
        except StopAsyncIteration:
            await self._read.put(DriveError(f"fragment {self.fid.name} ended early"))
        except Exception as exc:  # handed to the reader in order, after the chunks before it
            await self._read.put(exc)

    def ready(self) -> bytes | None:
        """The next chunk if it has been read, else None (next() then waits, or raises the error)."""
        if self._failed is not None or self._read.empty():
            return None
        item = self._read.get_nowait()
        if isinstance(item, BaseException):
            self._failed = item
            return None
        return item

    async def next(self) -> bytes:
        if self._failed is not None:
            raise self._failed
        item = await asyncio.wait_for(self._read.get(), CHUNK_TIMEOUT)
        if isinstance(item, BaseException):
            self._failed = item
            raise item
        return item

    async def close(self) -> None:
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)
        aclose = getattr(self._it, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a broken stream must not hide the read's own outcome
                log.debug("closing %s failed", self.fid.name, exc_info=True)


async def read_part(
    part: PartRecord,
    lookup: Callable[[str], Drive | None],
    first: int,
    end: int,
    on_bad_fragment: Callable[[FragmentId, BaseException], None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the plaintext of segments [first, end) of a part, each verified (see read_fragments)."""
    scheme = Scheme(part.k, part.m, part.segment_size)
    async for chunks in read_fragments(part, lookup, first, end, on_bad_fragment):
        yield scheme.decode([chunks[i] for i in sorted(chunks)])


async def read_fragments(
    part: PartRecord,
    lookup: Callable[[str], Drive | None],
    first: int,
    end: int,
    on_bad_fragment: Callable[[FragmentId, BaseException], None] | None = None,
    avoid: frozenset[int] = frozenset(),
) -> AsyncIterator[dict[int, bytes]]:
    """Yield, for each segment in [first, end), k verified fragment chunks by fragment index.

    Reads the k data fragments first (the code is systematic: decoding them is a copy). A
    fragment that is missing, corrupt or unreachable is replaced by a parity fragment from that
    segment on; one that is slow gets a parity fragment asked for beside it (a hedge), and
    whichever k arrive first are used. Fragments in `avoid` are read only as a last resort.
    Raises ReadError when fewer than k fragments of a segment are good.
    """
    scheme = Scheme(part.k, part.m, part.segment_size)
    last_resort = set(part.missed) | avoid
    spare = [i for i in range(scheme.width) if i not in last_resort] + sorted(last_resort)
    active: dict[int, _Cursor] = {}

    def bad(i: int, exc: BaseException) -> None:
        log.warning("fragment %s.%d.%d unreadable: %r", part.data_id, part.number, i, exc)
        if on_bad_fragment:
            on_bad_fragment(FragmentId(part.data_id, part.number, i), exc)

    def open_next(seg: int) -> int | None:
        while spare:
            i = spare.pop(0)
            drive = lookup(part.placement[i])
            if drive is not None:
                active[i] = _Cursor(drive, FragmentId(part.data_id, part.number, i), seg, end)
                return i
            bad(i, DriveError(f"drive {part.placement[i]} is not reachable"))
        return None

    try:
        for seg in range(first, end):
            while len(active) < scheme.k and open_next(seg) is not None:
                pass
            chunks: dict[int, bytes] = {}
            for i, c in active.items():
                chunk = c.ready()
                if chunk is not None:
                    chunks[i] = chunk
            if len(chunks) == scheme.k:
                yield chunks
                continue
            waiting = {asyncio.ensure_future(c.next()): i for i, c in active.items() if i not in chunks}
            while len(chunks) < scheme.k:
                if not waiting:
                    raise ReadError(
                        f"{part.data_id} part {part.number} segment {seg}: "
                        f"only {len(chunks)} of the {scheme.k} fragments needed are readable"
                    )
                done, _ = await asyncio.wait(waiting, timeout=HEDGE_AFTER, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # slow: ask one more fragment beside the ones we wait for
                    j = open_next(seg)
                    if j is not None:
                        waiting[asyncio.ensure_future(active[j].next())] = j
                    else:
                        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    i = waiting.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        chunks[i] = fut.result()
                        continue
                    if not isinstance(exc, DriveError | TimeoutError | OSError):
                        raise exc
                    bad(i, exc)
                    await active.pop(i).close()
                    j = open_next(seg)
                    if j is not None:
                        waiting[asyncio.ensure_future(active[j].next())] = j
            for fut, i in waiting.items():  # the slow ones lost the race and are now out of step
                fut.cancel()
                await active.pop(i).close()
            yield chunks
    finally:
        await asyncio.gather(*(c.close() for c in active.values()))
