"""The repairer: brings parts back to full redundancy, from the index's repair queue and on demand.

One part is repaired by one gateway at a time: a per-part lease in the index (plus a set in this
process) keeps two repairers, here or on other gateways, off the same part. A repair only commits
its new placement if the object is still the version it read (Index.update_part): an overwrite or
a delete that happened meanwhile wins, and the fragments just written are removed again.
Repair yields to client traffic: bounded concurrency, a byte-rate cap, and a pause while the
gateway is busy serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster.workers import Periodic, RateLimit, yield_to
from gateway.care.part_health import CORRUPT, MISSING, OK, UNREACHABLE, check_part
from gateway.care.rebuild import RepairError, rebuild
from gateway.care.scanner import key_versions, stored_parts
from gateway.objects.drive_set import DriveSet
from gateway.objects.pipelines import ReadError
from metadata.index import Index, MetadataError
from metadata.records import ObjectManifest, PartRecord, RepairEntry
from storage_node.drive import FragmentId

log = logging.getLogger(__name__)

PART_LEASE = 120.0  # seconds; renewed while a repair runs, so a gateway that dies frees its parts soon
PAGE = 200  # queue entries read at a time
BUSY_PAUSE = 2.0  # seconds at most a repair waits for client traffic to calm down
IDLE = 5.0  # seconds between looks at the queue when nothing wakes the repairer
RATE_BURST = 1.0  # seconds' worth of bytes repair may run ahead of its rate

# What became of a part handed to the repairer.
REPAIRED, HEALTHY, GONE, FAILED, BUSY = "repaired", "healthy", "gone", "failed", "busy"


@dataclass(slots=True)
class RepairStats:
    repaired_parts: int = 0
    repaired_bytes: int = 0  # object bytes of the parts repaired
    failed: int = 0
    busy_seconds: float = 0.0  # time spent repairing, for the rate
    last_error: str = ""

    @property
    def bytes_per_s(self) -> float:
        return self.repaired_bytes / self.busy_seconds if self.busy_seconds else 0.0


@dataclass(slots=True)
class Outcome:
    result: str  # REPAIRED | HEALTHY | GONE | FAILED | BUSY
    size: int = 0
    detail: str = ""


def part_key(e: RepairEntry) -> tuple[str, int]:
    return (e.data_id, e.part)


def group_entries(entries: Sequence[RepairEntry]) -> list[list[RepairEntry]]:
    """Entries of one part side by side (queue order keeps them so) into one group each."""
    groups: dict[tuple[str, int], list[RepairEntry]] = {}
    for e in entries:
        groups.setdefault(part_key(e), []).append(e)
    return list(groups.values())


@dataclass
class Repairer:
    index: Index
    drives: DriveSet
    holder: str  # this gateway's id in part leases
    node_grace: float = 600.0
    concurrency: int = 2
    rate: float = 200e6  # bytes/s of object data at most
    busy: Callable[[], bool] = lambda: False  # True while client traffic should go first
    stats: RepairStats = field(default_factory=RepairStats)
    observers: list[Callable[[tuple[str, int], Outcome], None]] = field(default_factory=list)
    _active: set[tuple[str, int]] = field(default_factory=set)
    _pending: list[RepairEntry] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None
    _slots: asyncio.Semaphore | None = None
    worker: Periodic = field(init=False)  # works through the queue, fewest surviving fragments first
    _pace: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self.worker = Periodic(
            "repair", self.drain_queue, IDLE, at_once=True, what="repair round", counters=self._counters
        )
        self._pace = RateLimit(self.rate, RATE_BURST)

    def _counters(self) -> dict[str, Any]:
        st = self.stats
        return {"repaired_parts": st.repaired_parts, "repaired_bytes": st.repaired_bytes, "failed": st.failed}

    # -- intake --------------------------------------------------------------------------------------

    def report(self, entries: Sequence[RepairEntry]) -> None:
        """Queue damage seen by a read or a write (called from request handlers: never blocks them)."""
        self._pending.extend(entries)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0.05)  # a burst of reports goes to the index as one write
            batch, self._pending = self._pending, []
            try:
                await self.index.queue_repairs(batch)
                self.worker.wake()
            except Exception as exc:  # lost reports are found again by the next read, scrub or scan
                log.warning("could not queue %d repair entries: %r", len(batch), exc)

    async def close(self) -> None:
        await self.worker.stop()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher

    def wake(self) -> None:
        self.worker.wake()

    # -- the queue -------------------------------------------------------------------------------------

    async def drain_queue(self, want: Callable[[RepairEntry], bool] = lambda e: True) -> None:
        """One pass over the queue (entries for which `want` holds)."""
        after: RepairEntry | None = None
        while True:
            page = await self.index.list_repairs(after=after, limit=PAGE)
            if not page:
                return
            after = page[-1]
            groups = [g for g in group_entries(page) if want(g[0])]
            await self.locate(groups)
            await asyncio.gather(*(self.repair_group(g) for g in groups))

    async def locate(self, groups: list[list[RepairEntry]]) -> None:
        """Fill in the object of entries that came without one (a scrubber knows only the fragment)."""
        unknown = {part_key(g[0]): g for g in groups if not g[0].bucket}
        if not unknown:
            return
        async for man, part in stored_parts(self.index):
            g = unknown.pop((part.data_id, part.number), None)
            if g is not None:
                for e in g:
                    e.bucket, e.key = man.bucket, man.key
            if not unknown:
                break

    # -- one part ------------------------------------------------------------------------------------

    async def repair_group(self, entries: list[RepairEntry]) -> Outcome:
        """Repair the part these entries name; drop the entries unless it must be tried again later."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        key = part_key(entries[0])
        async with self._slots:
            outcome = await self._exclusive(entries)
        if outcome.result in (REPAIRED, HEALTHY, GONE):
            try:
                await self.index.remove_repairs(entries)
            except MetadataError as exc:
                log.warning("could not clear repair entries of %s.%d: %r", *key, exc)
        for observe in self.observers:
            observe(key, outcome)
        return outcome

    async def _exclusive(self, entries: list[RepairEntry]) -> Outcome:
        key = part_key(entries[0])
        if key in self._active:
            return Outcome(BUSY)
        lease = f"repair/{key[0]}.{key[1]}"
        if not await self.index.acquire_lease(lease, self.holder, PART_LEASE):
            return Outcome(BUSY)
        self._active.add(key)
        renew = asyncio.ensure_future(self._renew(lease))
        try:
            return await self._repair(entries)
        finally:
            renew.cancel()
            self._active.discard(key)
            with contextlib.suppress(Exception):
                await self.index.release_lease(lease, self.holder)

    async def _renew(self, lease: str) -> None:
        while True:
            await asyncio.sleep(PART_LEASE / 3)
            with contextlib.suppress(Exception):
                await self.index.acquire_lease(lease, self.holder, PART_LEASE)

    async def _repair(self, entries: list[RepairEntry]) -> Outcome:
        first = entries[0]
        man, part = await self._holder(first.bucket, first.key, first.data_id, first.part)
        if man is None or part is None:
            return Outcome(GONE, detail="the object changed or is gone; its old data is garbage now")
        suspects = frozenset(e.index for e in entries if e.index >= 0 and e.reason in ("scrub", "read"))
        states = await check_part(part, self.drives, verify=suspects)
        leaving, silent = self.drives.leaving(), self.drives.silent_for()
        lost, sources = set(), 0
        for st in states:
            if st.state == OK:
                sources += 1
                if st.node_id in leaving:
                    lost.add(st.index)
            elif st.state in (MISSING, CORRUPT):
                lost.add(st.index)
            elif st.state == UNREACHABLE and (st.index in part.missed or silent.get(st.node_id, 0.0) > self.node_grace):
                lost.add(st.index)
        if not lost:
            return Outcome(HEALTHY)
        if sources < part.k:
            self.stats.failed += 1
            return Outcome(FAILED, detail=f"only {sources} of the {part.k} fragments needed are readable now")
        await yield_to(self.busy, BUSY_PAUSE)
        started = time.monotonic()
        try:
            fixed = await rebuild(part, self.drives, lost, leaving)
        except (RepairError, ReadError) as exc:
            # Sources can vanish mid-rebuild: an overwrite or a delete removes the old fragments at once.
            if (await self._holder(man.bucket, man.key, part.data_id, part.number))[1] is None:
                return Outcome(GONE, detail="overwritten or deleted during the repair")
            self.stats.failed += 1
            self.stats.last_error = str(exc)
            log.warning("repair of %s/%s part %d: %s", man.bucket, man.key, part.number, exc)
            return Outcome(FAILED, detail=str(exc))
        moved = [i for i in lost if fixed.placement[i] != part.placement[i]]
        if await self.index.update_part(man.bucket, man.key, man.version_id, fixed):
            await self._delete(part, moved)  # the copies left behind on drives no longer holding them
        else:
            await self._delete(fixed, moved)  # overwritten or deleted meanwhile: our new copies are orphans
            return Outcome(GONE, detail="overwritten or deleted during the repair")
        self.stats.repaired_parts += 1
        self.stats.repaired_bytes += part.size
        self.stats.busy_seconds += time.monotonic() - started
        log.info("repaired %s/%s part %d: fragments %s", man.bucket, man.key, part.number, sorted(lost))
        await self._pace.pace(part.size)
        return Outcome(REPAIRED, size=part.size)

    async def _holder(
        self, bucket: str, key: str, data_id: str, number: int
    ) -> tuple[ObjectManifest | None, PartRecord | None]:
        """The version of bucket/key holding the part (current or not), if one still does."""
        if not bucket:
            return None, None
        man = await self.index.get_object(bucket, key)
        part = _find_part(man, data_id, number)
        if part is not None:
            return man, part
        rec = await self.index.get_bucket(bucket)
        if rec is not None and rec.versioning:
            async for version in key_versions(self.index, bucket, key):
                part = _find_part(version, data_id, number)
                if part is not None:
                    return version, part
        return None, None

    async def _delete(self, part: PartRecord, indexes: list[int]) -> None:
        for i in indexes:
            drive = self.drives.drive(part.placement[i])
            if drive is None:
                continue  # unreachable now: an orphan for the collector
            with contextlib.suppress(Exception):
                await drive.delete(FragmentId(part.data_id, part.number, i))


def _find_part(man: ObjectManifest | None, data_id: str, number: int) -> PartRecord | None:
    if man is None:
        return None
    for p in man.parts:
        if p.data_id == data_id and p.number == number and p.inline is None:
            return p
    return None
