"""Fragment feeds to drives, and the write quorum with a bounded grace for the drives that lag.

The rule (a PUT is acknowledged once k+1 fragments are durable and the rest have had a grace):

- Every step of a write (a segment's fragments taken into the drives' queues, the end of the stream
  taken, the fragments made durable) waits for every drive still in the write until write_quorum of
  them have done the step. From that moment the others get a grace: WRITE_GRACE seconds, or as long
  as the quorum took for that step if that was longer (a machine that is slow for everyone is not a
  reason to drop anyone), never more than MAX_GRACE. A drive still behind at the end of its grace
  is abandoned for this write: its put is cancelled and its fragment recorded as missed, for repair.
- So a drive that is slow on one chunk is waited for while it stays within the grace, and one that is
  slow all the time slows the write to its pace rather than being dropped (each of its waits is
  short); only a drive that holds the write still for a whole grace is left behind. CHUNK_TIMEOUT
  (pipelines.py) and the remote client's TIMEOUT say when a drive counts as failed, which ends its
  put with an error, also before a quorum; the grace never waits that long once a quorum is there.
- Below a quorum there is no grace: the write waits for the drives, which answer or time out, and the
  write fails with WriteQuorumError if fewer than write_quorum fragments became durable.
- An abandoned put is cancelled, not left running: a LocalDrive drops its temp file, and a storage
  node drops its temp file when the connection is cut before the end of the stream (the end frame
  and the body's MAC are checked before anything is committed). A node that was paused may still
  find a whole stream, end frame included, in its socket buffers when it resumes and commit that
  fragment: it is whole and verified, and the repair of the missed fragment writes the same bytes.
- Memory stays bounded: a feed queues at most QUEUE_DEPTH fragments, an abandoned feed's queue is
  emptied at once, and a drive with MAX_UNWINDING abandoned puts still unwinding (a hung disk whose
  threads do not come back) is left out of new writes, which record its fragments as missed from the
  start, until they finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from storage_node.drive import Drive, DriveError, FragmentId, FragmentInfo

log = logging.getLogger(__name__)

QUEUE_DEPTH = 2  # fragments buffered per drive: enough to keep every drive busy
# 2 s: far above a healthy drive's time to take a 1 MiB segment or fsync a fragment (milliseconds),
# and short enough that a PUT caught by a paused node still answers within a few seconds.
WRITE_GRACE = 2.0
MAX_GRACE = 10.0  # even when the quorum itself was slow, a PUT waits no longer than this for the rest
MAX_UNWINDING = 8  # abandoned puts per drive still unwinding before new writes leave the drive out

Item = bytes | bytearray | BaseException | None

_unwinding: dict[str, set[asyncio.Future[FragmentInfo]]] = {}


def unwinding(drive_id: str) -> bool:
    """Whether the drive has too many abandoned puts still unwinding to take new ones."""
    return len(_unwinding.get(drive_id, ())) >= MAX_UNWINDING


def _unwound(drive_id: str, task: asyncio.Future[FragmentInfo]) -> None:
    tasks = _unwinding.get(drive_id)
    if tasks is not None:
        tasks.discard(task)
        if not tasks:
            del _unwinding[drive_id]
    if not task.cancelled() and task.exception() is not None:
        log.debug("an abandoned put on %s ended with %r", drive_id, task.exception())


class FragmentFeed:
    """Queue of fragments for one drive, and the task that streams them into drive.put."""

    def __init__(self, drive: Drive, fid: FragmentId) -> None:
        self.drive_id = drive.drive_id
        self.queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_DEPTH)
        self.task = asyncio.ensure_future(drive.put(fid, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def feed_nowait(self, item: Item) -> bool:
        """Queue an item if there is room now (or drop it, the drive having failed); False if full."""
        if self.task.done():
            return True
        if self.queue.full():
            return False
        self.queue.put_nowait(item)
        return True

    async def feed(self, item: Item) -> bool:
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

    def abort(self, exc: BaseException) -> None:
        """Make the drive drop what it has (queued fragments no longer matter: the error goes in at once)."""
        if not self.task.done():
            self._empty()
            self.queue.put_nowait(exc)

    def abandon(self) -> None:
        """Stop waiting for this drive: cancel its put (nothing of it becomes visible) and let it unwind."""
        self._empty()
        if self.task.done():
            return
        self.task.cancel()
        _unwinding.setdefault(self.drive_id, set()).add(self.task)
        self.task.add_done_callback(lambda t: _unwound(self.drive_id, t))

    def _empty(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


def _grace(quorum_took: float) -> float:
    return min(MAX_GRACE, max(WRITE_GRACE, quorum_took))


class Stripe:
    """The feeds of one part's k+m fragments (None: a drive out of the write from the start).

    Keeps the write quorum rule above; `gone` holds the fragment indexes abandoned or failed.
    """

    def __init__(self, feeds: Sequence[FragmentFeed | None], quorum: int) -> None:
        self.feeds = list(feeds)
        self.quorum = quorum
        self.gone: dict[int, BaseException] = {}

    def live(self) -> list[FragmentFeed]:
        return [f for i, f in enumerate(self.feeds) if f is not None and i not in self.gone]

    async def feed(self, items: Sequence[Item]) -> None:
        """Item i to feed i: wait only for the feeds that are full, and for those only as the rule says."""
        pending: dict[asyncio.Future[bool], int] = {}
        taken = 0
        for i, (f, item) in enumerate(zip(self.feeds, items, strict=True)):
            if f is None or i in self.gone or f.task.done():
                continue
            if f.feed_nowait(item):
                taken += 1
            else:
                pending[asyncio.ensure_future(f.feed(item))] = i
        try:
            await self._wait(pending, taken, lambda fut: bool(fut.result()))
        finally:
            for fut in pending:  # left only when the write itself fails or is cancelled meanwhile
                fut.cancel()

    async def finish(self) -> dict[int, BaseException]:
        """End every stream and wait for the fragments to become durable, as the rule says.

        Returns the fragment indexes that are not durable (abandoned, failed or out from the start).
        """
        await self.feed([None] * len(self.feeds))
        pending: dict[asyncio.Future[Any], int] = {
            f.task: i for i, f in enumerate(self.feeds) if f is not None and i not in self.gone
        }
        durable = await self._wait(pending, 0, lambda fut: not fut.cancelled() and fut.exception() is None)
        missed = dict(self.gone)
        for i, f in enumerate(self.feeds):
            if f is None:
                missed[i] = DriveError("the drive was out of the write from the start")
            elif i not in missed and i not in durable:
                exc = f.task.exception() if f.task.done() and not f.task.cancelled() else None
                missed[i] = exc or asyncio.CancelledError()
        return dict(sorted(missed.items()))

    async def _wait(
        self, pending: dict[asyncio.Future[Any], int], done_ok: int, ok: Callable[[asyncio.Future[Any]], bool]
    ) -> set[int]:
        """Wait for `pending` (future -> fragment index) as the rule says; the indexes whose future is `ok`.

        done_ok: how many drives did this step without a wait.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline: float | None = None
        good: set[int] = set()
        while pending:
            if deadline is None and done_ok >= self.quorum:
                deadline = loop.time() + _grace(loop.time() - started)
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            finished, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not finished:
                for fut, i in pending.items():
                    fut.cancel()  # a feed's wait; abandon() below cancels a put
                    self._abandon(i, loop.time() - started)
                return good
            for fut in finished:
                i = pending.pop(fut)
                if ok(fut):
                    done_ok += 1
                    good.add(i)
        return good

    async def abort(self, exc: BaseException) -> None:
        """The write failed: every drive drops what it has; one that does not say so within the grace
        (a paused node) is abandoned rather than waited for."""
        live = self.live()
        for f in live:
            f.abort(exc)
        if live:
            done, late = await asyncio.wait([f.task for f in live], timeout=WRITE_GRACE)
            for t in done:
                if not t.cancelled():
                    t.exception()  # retrieved: the write's own error is the news
            for f in live:
                if f.task in late:
                    f.abandon()

    def _abandon(self, i: int, waited: float) -> None:
        feed = self.feeds[i]
        assert feed is not None
        log.warning(
            "drive %s left behind by a write after %.1f s (its fragment %d is missed)", feed.drive_id, waited, i
        )
        feed.abandon()
        self.gone[i] = TimeoutError(f"abandoned after the write grace ({waited:.1f} s)")
