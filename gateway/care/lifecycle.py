"""Applying buckets' lifecycle rules (docs/lifecycle.md): a worker that walks each bucket's versions a batch per
tick from a cursor kept in the index, and the admin job that runs a pass now.

Only the holder of the index lease "lifecycle" walks in the background, so in a cluster one gateway applies the
rules at a time. A version under object lock or legal hold is never removed: the index judges it with the same
LockGuard a DELETE without bypass gets, and refuses (ObjectLocked).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cluster.workers import Periodic, RateLimit, yield_to
from gateway.care.jobs import Job, JobBoard
from gateway.objects.layer import ObjectLayer, new_id
from gateway.s3 import lifecycle as lc
from gateway.s3.notification_rules import events_for
from metadata.index import Index, NoSuchBucket, NoSuchUpload, ObjectLocked, PreconditionFailed, VersionEntry
from metadata.records import BucketRecord, Condition, LockGuard, ObjectManifest, new_version_id, s3_version

log = logging.getLogger(__name__)

LEASE = "lifecycle"
LEASE_TTL = 30.0  # seconds; renewed every tick, so a gateway that stops loses it this long after
BATCH = 500  # versions looked at per tick
RATE = 5000.0  # versions removed per second at most
YIELD_MOST = 1.0  # seconds a batch waits for busy clients at most
CONCURRENCY = 16  # keys worked on at once
BUSY_CONCURRENCY = 2  # ... while clients are still busy after the wait
TICK = 0.01  # seconds between batches while a pass is under way
PRINCIPAL = "tessera:lifecycle"  # who its events say did it (S3 names itself: s3.amazonaws.com)


@dataclass(slots=True)
class LifecycleStats:
    scanned: int = 0  # versions and delete markers looked at
    expired: int = 0  # current versions expired (removed, or given a delete marker)
    noncurrent: int = 0  # noncurrent versions removed
    delete_markers: int = 0  # expired delete markers removed
    uploads: int = 0  # incomplete multipart uploads aborted
    locked: int = 0  # removals object lock refused
    passes: int = 0
    last_pass: float = 0.0  # when the last pass ended


class Lifecycle:
    def __init__(
        self,
        index: Index,
        layer: ObjectLayer,
        holder: str,
        jobs: JobBoard,
        day: float = lc.DAY,
        busy: Callable[[], bool] = lambda: False,
        batch: int = BATCH,
    ) -> None:
        self.index, self.layer, self.holder, self.jobs = index, layer, holder, jobs
        self.day, self.busy, self.batch = day, busy, batch
        self.stats = LifecycleStats()
        self._rate = RateLimit(RATE)
        self._lock = asyncio.Lock()  # the background pass and a job never work at once in this gateway
        self._pending: list[str] | None = None  # buckets left in this pass; None between passes
        self._next_pass = 0.0  # monotonic
        self.worker = Periodic(
            "lifecycle",
            self._tick,
            self._every,
            at_once=True,
            what="lifecycle batch",
            counters=lambda: asdict(self.stats),
        )

    async def close(self) -> None:
        """Stop, and give the lease up so that another gateway (or this one restarted) takes over at once."""
        await self.worker.stop()
        with contextlib.suppress(Exception):  # an index gone already: the lease runs out by itself
            await self.index.release_lease(LEASE, self.holder)

    def _every(self) -> float:
        """Batches back to back during a pass; then the next pass a day later (at most an hour)."""
        return TICK if self._pending else max(TICK, self._next_pass - time.monotonic())

    async def _tick(self) -> None:
        if not await self.index.acquire_lease(LEASE, self.holder, LEASE_TTL):
            self._pending, self._next_pass = None, time.monotonic() + LEASE_TTL / 3
            return
        async with self._lock:
            if self._pending is None:
                if time.monotonic() < self._next_pass:
                    return
                buckets = [b for b in await self.index.list_buckets() if b.lifecycle]
                # A pass a restart interrupted first: its cursor says where it stood.
                self._pending = [b.name for b in sorted(buckets, key=lambda b: not b.lifecycle_cursor)]
            if self._pending and await self._step(self._pending[0]):
                self._pending.pop(0)
            if not self._pending:
                between = min(self.day, 3600.0)
                self._pending, self._next_pass = None, time.monotonic() + between
                self.stats.passes += 1
                self.stats.last_pass = time.time()
                # Held until the next pass is due, so that no other gateway starts one in between (one that
                # stops gives it up; one that dies leaves the next pass to the others on time).
                await self.index.acquire_lease(LEASE, self.holder, between + LEASE_TTL)

    async def _step(self, name: str) -> bool:
        """One batch of bucket `name` from its stored cursor; True when the bucket's pass is over."""
        rec = await self.index.get_bucket(name)
        if rec is None or not rec.lifecycle:
            return True
        cursor, done = await self._batch(rec, lc.loads(rec.lifecycle), rec.lifecycle_cursor, self.stats)
        with contextlib.suppress(NoSuchBucket):
            await self.index.set_lifecycle_cursor(name, cursor)
        return done

    def run_job(self, buckets: list[str]) -> Job:
        """A pass now over `buckets` (all with rules when empty), from their start, beside the background one."""

        async def work(job: Job) -> None:
            names = buckets or [b.name for b in await self.index.list_buckets() if b.lifecycle]
            job.phase, job.unit, job.total = "applying", "buckets", len(names)
            # The job's own counts: the background pass may work (on other buckets) while it waits for the lock.
            mine = LifecycleStats()
            job.message = _summary(mine)
            for name in names:
                async with self._lock:
                    rec = await self.index.get_bucket(name)
                    rules = lc.loads(rec.lifecycle) if rec is not None else []
                    cursor, done = "", not rules
                    while not done and rec is not None:
                        part = LifecycleStats()
                        cursor, done = await self._batch(rec, rules, cursor, part)
                        _add(mine, part)
                        _add(self.stats, part)  # the worker's counters count what jobs did too
                        job.message = _summary(mine)
                job.completed += 1

        return self.jobs.start(Job("lifecycle", target=",".join(buckets)), work)

    # -- one batch ---------------------------------------------------------------------------------------

    async def _batch(
        self, rec: BucketRecord, rules: list[lc.Rule], cursor: str, stats: LifecycleStats
    ) -> tuple[str, bool]:
        """Apply the rules to the keys after `cursor` (whole keys, a batch of versions); (new cursor, done).
        What it did is counted in `stats`."""
        calm = await yield_to(self.busy, YIELD_MOST)
        try:
            page = await self.index.list_versions(rec.name, key_marker=cursor, max_keys=self.batch)
        except NoSuchBucket:  # deleted meanwhile: nothing left to do there
            return "", True
        entries = page.versions
        marker = page.next_version_id_marker if page.truncated else ""
        while marker:  # the page ended inside a key: the rest of its versions too
            key = entries[-1].manifest.key
            more = await self.index.list_versions(rec.name, key, key, marker, max_keys=self.batch)
            same = [e for e in more.versions if e.manifest.key == key]
            entries += same
            whole = more.truncated and len(same) == len(more.versions)
            marker = more.next_version_id_marker if whole else ""
        # Keys side by side: each removal is an index commit, and concurrent ones share a group commit.
        room = asyncio.Semaphore(CONCURRENCY if calm else BUSY_CONCURRENCY)

        async def apply(group: list[VersionEntry]) -> None:
            async with room:
                await self._apply(rec, rules, group, stats)

        groups = [list(g) for _, g in itertools.groupby(entries, key=lambda e: e.manifest.key)]
        await asyncio.gather(*(apply(g) for g in groups))
        if not page.truncated:
            await self._abort_uploads(rec.name, rules, stats)
            return "", True
        return entries[-1].manifest.key if entries else page.next_key_marker, False

    async def _apply(
        self, rec: BucketRecord, rules: list[lc.Rule], versions: list[VersionEntry], stats: LifecycleStats
    ) -> None:
        """The rules for one key's versions (newest first)."""
        now, day = time.time(), self.day
        stats.scanned += len(versions)
        kept = [versions[0]]
        for rank, (newer, entry) in enumerate(itertools.pairwise(versions)):
            m = entry.manifest  # noncurrent since `newer` was written; `rank` noncurrent versions are newer
            due = any(
                r.noncurrent_days is not None
                and rank >= (r.newer_noncurrent or 0)
                and r.matches(m.key, m.size, m.tags, sized=not m.delete_marker)
                and now >= lc.after_days(newer.manifest.last_modified, r.noncurrent_days, day)
                for r in rules
            )
            if due and await self._remove(rec, m, now, stats):
                stats.noncurrent += 1
            else:
                kept.append(entry)
        head = versions[0].manifest
        if not versions[0].latest:
            return
        if not head.delete_marker:
            found = lc.expiry(rules, head.key, head.size, head.tags, head.last_modified, day)
            if found is not None and now >= found[0]:
                await self._expire_current(rec, head, now, stats)
        elif len(kept) == 1 and any(r.expired_marker and r.matches(head.key, sized=False) for r in rules):
            if await self._remove(rec, head, now, stats):  # a delete marker with nothing left behind it
                stats.delete_markers += 1

    async def _remove(self, rec: BucketRecord, man: ObjectManifest, now: float, stats: LifecycleStats) -> bool:
        """Remove a version for good, unless its object lock keeps it."""
        events = events_for(rec, "LifecycleExpiration:Delete", man.key, man, PRINCIPAL)
        try:
            old = await self.index.delete_version(rec.name, man.key, s3_version(man), LockGuard(now), events)
        except ObjectLocked:
            stats.locked += 1
            return False
        except NoSuchBucket:
            return False
        await self._rate.pace(1)
        if old is None:
            return False
        self.layer.discard(old.parts)
        return True

    async def _expire_current(self, rec: BucketRecord, head: ObjectManifest, now: float, stats: LifecycleStats) -> None:
        """Expire the current version: removed without versioning, hidden behind a delete marker with it (as S3)."""
        try:
            if not rec.versioning:  # only the version read: an overwrite since then is not expired
                events = events_for(rec, "LifecycleExpiration:Delete", head.key, head, PRINCIPAL)
                old = await self.index.delete_object(rec.name, head.key, Condition(if_match=head.etag), events)
            else:
                marker = ObjectManifest(rec.name, head.key, new_id(), 0, "", now, head.owner, [], delete_marker=True)
                marker.s3_version_id = new_version_id(now) if rec.versioning == "Enabled" else ""
                events = events_for(rec, "LifecycleExpiration:DeleteMarkerCreated", head.key, marker, PRINCIPAL)
                old = await self.index.put_object(marker, events=events)  # Suspended: the null version it replaces
        except (PreconditionFailed, NoSuchBucket):
            return
        await self._rate.pace(1)
        stats.expired += 1
        if old is not None:
            self.layer.discard(old.parts)

    async def _abort_uploads(self, bucket: str, rules: list[lc.Rule], stats: LifecycleStats) -> None:
        if not any(r.abort_days is not None and r.enabled for r in rules):
            return
        now, key_marker, id_marker = time.time(), "", ""
        while True:
            try:
                page = await self.index.list_uploads(bucket, key_marker=key_marker, upload_id_marker=id_marker)
            except NoSuchBucket:
                return
            for u in page.uploads:
                if any(
                    r.abort_days is not None
                    and r.matches(u.key, sized=False)
                    and now >= lc.after_days(u.initiated, r.abort_days, self.day)
                    for r in rules
                ):
                    with contextlib.suppress(NoSuchUpload):
                        self.layer.discard(await self.index.abort_upload(u.upload_id))
                        stats.uploads += 1
            if not page.truncated:
                return
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker


def _add(into: LifecycleStats, part: LifecycleStats) -> None:
    for k in ("scanned", "expired", "noncurrent", "delete_markers", "uploads", "locked"):
        setattr(into, k, getattr(into, k) + getattr(part, k))


def _summary(s: LifecycleStats) -> str:
    return (
        f"{s.scanned} version(s) looked at: {s.expired} expired, {s.noncurrent} noncurrent removed, "
        f"{s.delete_markers} delete marker(s) removed, {s.uploads} upload(s) aborted, "
        f"{s.locked} kept by object lock"
    )
