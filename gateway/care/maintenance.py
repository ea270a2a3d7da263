"""The gateway's background care of the data: the repairer, periodic scans, garbage collection, and the
admin jobs (repair, scrub, drain, rebalance) that drive them on demand; beside them, event notification delivery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from cluster.workers import Periodic, Worker
from gateway.care.adoptions import Adoptions
from gateway.care.jobs import Job, JobBoard
from gateway.care.lifecycle import Lifecycle
from gateway.care.notify import Notifier
from gateway.care.part_health import find_corrupt
from gateway.care.rebalance import Rebalancer
from gateway.care.repairer import BUSY, FAILED, REPAIRED, Outcome, Repairer, group_entries
from gateway.care.scanner import ScanResult, scan
from gateway.objects.drive_set import DriveSet
from gateway.objects.layer import ObjectLayer
from metadata.index import Index, NoSuchUpload
from metadata.records import RepairEntry
from storage_node.drive import FragmentId

log = logging.getLogger(__name__)

WATCH_EVERY = 2.0  # seconds between looks at node liveness
UPLOAD_EXPIRY = 7 * 86400.0  # seconds: multipart uploads left unfinished this long are aborted


class ScrubProgress(Protocol):
    @property
    def running(self) -> bool: ...
    @property
    def finished(self) -> float | None: ...
    @property
    def bytes(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def corrupt(self) -> int: ...


class ScrubControl(Protocol):
    """The scrubbers of the storage (one per node, or the embedded server's own)."""

    async def start(self) -> Sequence[ScrubProgress]: ...

    async def status(self) -> Sequence[ScrubProgress]: ...


@dataclass(slots=True)
class Settings:
    node_grace: float = 600.0  # seconds a node may be unreachable before its fragments are rebuilt elsewhere
    gc_grace: float = 3600.0  # seconds before unreferenced fragments are collected
    gc_not_before: float = 0.0  # the index's birth: older fragments are never collected (docs/repair.md)
    scan_interval: float = 3600.0  # seconds between background scans (redundancy and garbage)
    upload_expiry: float = UPLOAD_EXPIRY
    repair_concurrency: int = 2
    repair_rate: float = 200e6  # bytes/s
    auto_repair: bool = True  # off: damage is queued, but only admin jobs repair it
    min_free: int = 0  # bytes a drive keeps free; below it placement counts it full (gateway/objects/placement.py)
    lifecycle_day: float = 86400.0  # seconds in a lifecycle rule's day (docs/lifecycle.md)


@dataclass(slots=True)
class GcStats:
    removed_fragments: int = 0
    freed_bytes: int = 0
    aborted_uploads: int = 0
    last_run: float = 0.0


@dataclass
class Maintenance:
    index: Index
    layer: ObjectLayer
    settings: Settings
    scrub: ScrubControl | None = None
    busy: Callable[[], bool] = lambda: False
    holder: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    gc: GcStats = field(default_factory=GcStats)
    jobs: JobBoard = field(default_factory=JobBoard)
    # The gateway's other workers (users and membership refresh, a local scrubber): shown in status with these.
    others: list[Worker] = field(default_factory=list)
    repairer: Repairer = field(init=False)
    scanner: Periodic = field(init=False)  # scans (redundancy, garbage) every scan_interval
    watcher: Periodic = field(init=False)  # rebuilds what nodes gone past the grace held
    lifecycle: Lifecycle = field(init=False)  # applies buckets' lifecycle rules
    notifier: Notifier = field(init=False)  # delivers the event queue to webhooks (one gateway at a time)
    _gone: set[str] = field(default_factory=set)  # nodes already handled as gone for good
    adoptions: Adoptions = field(default_factory=Adoptions)  # drives adopted while running, until refilled

    def __post_init__(self) -> None:
        s = self.settings
        self.repairer = Repairer(
            self.index,
            self.drives,
            self.holder,
            node_grace=s.node_grace,
            concurrency=s.repair_concurrency,
            rate=s.repair_rate,
            busy=self.busy,
        )
        self.layer.report = self.repairer.report
        self.scanner = Periodic(
            "scan", self._scan, s.scan_interval, what="background scan", counters=lambda: asdict(self.gc)
        )
        self.watcher = Periodic("node-watch", self._watch_nodes, WATCH_EVERY, what="scan for gone nodes")
        self.notifier = Notifier(self.index, self.holder, busy=self.busy)
        self.lifecycle = Lifecycle(self.index, self.layer, self.holder, self.jobs, s.lifecycle_day, self.busy)

    @property
    def workers(self) -> list[Worker]:
        return [
            self.repairer.worker,
            self.scanner,
            self.watcher,
            self.notifier.worker,
            self.lifecycle.worker,
            *self.others,
        ]

    @property
    def drives(self) -> DriveSet:
        return self.layer.drives

    async def start(self) -> None:
        self.scanner.start()
        self.lifecycle.worker.start()
        self.notifier.worker.start()
        if self.settings.auto_repair:
            self.repairer.worker.start()
            self.watcher.start()
        await self._resume_rebalance()

    async def _resume_rebalance(self) -> None:
        """A rebalance that a stopped gateway left unfinished goes on here (one gateway takes it)."""
        if getattr(self.drives, "nodes", None) is None:
            return  # the embedded server: nothing to rebalance
        try:
            if await self._rebalancer().unfinished():
                log.info("a rebalance was left unfinished: resuming it")
                self.rebalance_job(resumed=True)
        except Exception as exc:  # the index unreachable at start: the operator can run it again
            log.warning("could not look for an unfinished rebalance: %r", exc)

    async def close(self) -> None:
        await asyncio.gather(
            self.scanner.stop(), self.repairer.worker.stop(), self.watcher.stop(), self.lifecycle.close()
        )
        await self.jobs.close()
        await self.repairer.close()
        await self.notifier.close()

    # -- background --------------------------------------------------------------------------------

    async def _scan(self) -> None:
        # One gateway scans per interval; the others skip.
        if await self.index.acquire_lease("scan", self.holder, self.settings.scan_interval * 0.9):
            await self.scan_and_collect("scan")

    async def _watch_nodes(self) -> None:
        """A drive adopted since the last look is scanned for (repair fills it). A node silent for longer
        than the grace: its fragments are rebuilt on the others."""
        if self.adoptions.notice(self.drives.adopted()):
            log.info("drive(s) adopted: scanning for the fragments that belong on them")
            await self.scan_and_collect("adopted")
        silent = self.drives.silent_for()
        self._gone &= set(silent)  # a node that came back may go away again later
        newly = {n for n, t in silent.items() if t > self.settings.node_grace} - self._gone
        if not newly:
            return
        log.warning(
            "node(s) %s unreachable for over %.0f s: rebuilding their fragments elsewhere",
            ", ".join(sorted(newly)),
            self.settings.node_grace,
        )
        await self.scan_and_collect("node-down")
        self._gone |= newly

    async def scan_and_collect(self, reason: str, only_node: str | None = None, job: Job | None = None) -> ScanResult:
        """Scan; queue what is below full redundancy; collect garbage; abort expired uploads."""
        s = self.settings

        def progress(parts: int) -> None:
            if job is not None:
                job.message = f"scanned {parts} parts"

        self.adoptions.notice(self.drives.adopted())  # this scan looks for what they lack
        started = time.time()
        result = await scan(
            self.index,
            self.drives,
            node_grace=s.node_grace,
            gc_grace=s.gc_grace,
            gc_not_before=s.gc_not_before,
            upload_expiry=s.upload_expiry,
            reason=reason,
            only_node=only_node,
            progress=progress,
        )
        if result.degraded:
            await self.index.queue_repairs(result.degraded)
            self.repairer.wake()
        self.adoptions.scanned(started)
        await self._collect(result)
        log.info(
            "scan (%s): %d parts in %.1f s, %d fragments to rebuild, %d orphans collected",
            reason,
            result.parts,
            result.seconds,
            len(result.degraded),
            len(result.orphans),
        )
        return result

    async def rebuilding(self) -> set[str]:
        """Drives adopted while running that repair has not refilled yet (for status)."""
        adopted = self.adoptions.unsettled(self.drives.adopted())
        if not adopted:
            return set()
        queued = {e.drive_id for e in await self._queued(lambda e: e.drive_id in adopted)}
        return self.adoptions.rebuilding(adopted, queued)

    async def _collect(self, result: ScanResult) -> None:
        await self._remove(result.orphans)
        for upload_id in result.expired_uploads:
            with contextlib.suppress(NoSuchUpload):
                self.layer.discard(await self.index.abort_upload(upload_id))
                self.gc.aborted_uploads += 1
        self.gc.last_run = time.time()

    # -- admin jobs ----------------------------------------------------------------------------------

    def repair_job(self) -> Job:
        async def work(job: Job) -> None:
            job.phase = "scanning"
            result = await self.scan_and_collect("scan", job=job)
            # What the scan found below full redundancy first, here and now: the background repairer
            # would otherwise take it from the queue while this job verifies.
            repaired = await self._repair_all(job, result.degraded)
            counts = job.total, job.completed, job.failed
            # The scan sees only what drives list; rot is found by verifying the fragments of every
            # part it did not already find degraded, as a scrub would.
            job.phase, job.unit = "verifying", "parts"

            def progress(parts: int, size: int) -> None:
                job.completed = parts  # job.bytes is what gets rebuilt
                job.message = f"verified {parts} part(s), {size} bytes"

            job.total, job.completed = result.parts - len(group_entries(result.degraded)), 0
            corrupt = await find_corrupt(
                self.index, self.drives, {(e.data_id, e.part) for e in result.degraded}, progress
            )
            if corrupt:
                await self.index.queue_repairs(corrupt)
            # Then everything queued, not just what verifying found: damage reads and scrubs reported too.
            job.total, job.completed, job.failed = counts
            repaired += await self._repair_all(job, await self._queued(lambda e: True), keep_counts=True)
            job.message = f"{repaired} of {job.total} degraded part(s) repaired here{_others(job, repaired)}"

        return self.jobs.start(Job("repair"), work)

    def scrub_job(self) -> Job:
        async def work(job: Job) -> None:
            if self.scrub is None:
                raise RuntimeError("this gateway has no scrubbers to drive")
            job.phase, job.unit = "scrubbing", "bytes"
            await self.scrub.start()
            while True:
                now = list(await self.scrub.status())
                job.total = sum(s.total_bytes for s in now)
                job.completed = job.bytes = sum(s.bytes for s in now)
                corrupt = sum(s.corrupt for s in now)
                job.message = f"{corrupt} corrupt fragment(s) found so far"
                # Done when every scrubber that answers has finished a pass since this job began.
                if all(not s.running and (s.finished or 0) >= job.started for s in now):
                    break
                await asyncio.sleep(0.5)
            entries = await self._queued(lambda e: e.reason == "scrub")
            # From bytes verified to parts repaired; job.bytes keeps saying how much was verified.
            job.unit = "parts"
            repaired = await self._repair_all(job, entries, count_bytes=False)
            job.message = f"{corrupt} corrupt fragment(s) found, {repaired} part(s) repaired{_others(job, repaired)}"

        return self.jobs.start(Job("scrub"), work)

    def drain_job(self, node_id: str) -> Job:
        async def work(job: Job) -> None:
            await self.index.set_node_state(node_id, "draining")
            await self._refresh_membership()
            job.phase = "moving"
            for attempt in range(5):
                result = await self.scan_and_collect("drain", only_node=node_id, job=job)
                if result.on_node == 0:
                    break
                await self._repair_all(job, result.degraded, keep_counts=attempt > 0)
            if result.on_node:
                raise RuntimeError(f"{result.on_node} fragment(s) are still on {node_id}; run the drain again")
            await self._remove(result.node_leftovers)  # what moved, and orphans
            await self.index.set_node_state(node_id, "retired")
            # Status reads this gateway's membership: let it show what the job just wrote, not the state
            # of the last periodic refresh (it said "draining" right after "drain done").
            await self._refresh_membership()
            job.message = f"node {node_id} drained and retired: {job.completed} part(s) moved"

        return self.jobs.start(Job("drain", target=node_id), work)

    def _rebalancer(self, resumed: bool = False) -> Rebalancer:
        s = self.settings
        return Rebalancer(
            self.index, self.drives, self.holder, s.repair_rate, s.repair_concurrency, busy=self.busy, resumed=resumed
        )

    def rebalance_job(self, resumed: bool = False) -> Job:
        """Start a rebalance, or return the one this gateway runs already."""
        running = next((j for j in self.jobs.recent() if j.kind == "rebalance" and j.finished is None), None)
        if running is not None:
            return running
        return self.jobs.start(Job("rebalance"), self._rebalancer(resumed).run)

    async def _refresh_membership(self) -> None:
        refresh = getattr(self.drives, "refresh", None)  # a cluster's drives; the embedded server has no nodes
        if refresh is not None:
            await refresh()

    async def _remove(self, fragments: list[tuple[str, FragmentId, int]]) -> None:
        for drive_id, fid, size in fragments:
            drive = self.drives.drive(drive_id)
            if drive is None:
                continue  # unreachable now: the next scan tries again
            try:
                if await drive.delete(fid):
                    self.gc.removed_fragments += 1
                    self.gc.freed_bytes += size
            except Exception as exc:
                log.warning("gc: could not delete %s on %s: %r", fid.name, drive_id, exc)

    async def _queued(self, want: Callable[[RepairEntry], bool]) -> list[RepairEntry]:
        out, after = [], None
        while True:
            page = await self.index.list_repairs(after=after, limit=1000)
            if not page:
                return out
            out += [e for e in page if want(e)]
            after = page[-1]

    async def _repair_all(
        self, job: Job, entries: list[RepairEntry], keep_counts: bool = False, count_bytes: bool = True
    ) -> int:
        """Repair every part named in entries, here and now, counting each into the job (and its bytes
        into job.bytes unless count_bytes is off); returns how many this job rebuilt (others were
        healthy by then, gone, or failed)."""
        repaired = 0
        job.phase = "repairing" if job.kind != "drain" else "moving"
        groups = group_entries(entries)
        if not keep_counts:
            job.total, job.completed, job.failed = len(groups), 0, 0
            if count_bytes:
                job.bytes = 0
        else:
            job.total += len(groups)
        await self.repairer.locate(groups)
        pending = groups
        while pending:
            outcomes: list[Outcome] = await asyncio.gather(*(self.repairer.repair_group(g) for g in pending))
            retry = []
            for g, o in zip(pending, outcomes, strict=True):
                if o.result == BUSY:  # another repairer has it right now: ask again shortly
                    retry.append(g)
                    continue
                job.completed += 1
                job.bytes += o.size if count_bytes else 0
                job.failed += o.result == FAILED
                repaired += o.result == REPAIRED
            pending = retry
            if pending:
                await asyncio.sleep(0.5)
        return repaired


def _others(job: Job, repaired: int) -> str:
    rest = job.completed - job.failed - repaired
    failed = f", {job.failed} failed" if job.failed else ""
    return (f"; {rest} already healthy or gone" if rest else "") + failed
