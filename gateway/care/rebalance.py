"""Rebalance: move fragments from the fullest drives to the emptiest until drive usage evens out.

A drive's share is its capacity's share of every fragment byte on the drives of active, live nodes
(drives sharing a filesystem report the same capacity, so they get equal shares); its usage is what it
holds scaled to an average drive's capacity. Rebalance moves a fragment from a fuller drive to an emptier
one while their usages differ by more than TOLERANCE of the mean (or SLACK bytes, whichever is larger)
and the move leaves the target no fuller than the source, fullest drives first, until no such move is
left: drives that can exchange fragments end within that tolerance of each other.

Moves keep the placement rules: a part's fragments stay on distinct nodes, and a move never makes a
zone hold more of a part's fragments than the fullest zone held before (zones stay spread). A zone
with fewer nodes may so keep more than its share: the job says how many drives it left above theirs.

A move is safe at every step, so the job can stop anywhere (a gateway restart) and go on again: the
fragment is copied to its new drive and verified there, the part's placement is committed with
Index.update_part (only if that version still exists), and only then is the old copy deleted.
A copy whose commit lost to an overwrite is deleted again; one left by a crash is an orphan for GC.
A part being moved holds the repairer's part lease, so the repairer and a rebalance never race on it.
A rebalance marks itself unfinished in the index until it ends well; a gateway that starts while the mark
is held resumes it (plans again from what the drives hold, and moves what is still uneven).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from cluster.workers import RateLimit, yield_to
from gateway.care.jobs import Job
from gateway.care.scanner import Listing, list_drives, stored_parts
from gateway.objects.drive_set import DriveSet
from gateway.objects.placement import NodeSlot
from metadata.index import Index, MetadataError
from metadata.records import NodeRecord, ObjectManifest, PartRecord
from storage_node.drive import DriveError, FragmentId

log = logging.getLogger(__name__)

TOLERANCE = 0.10  # drives whose usages differ by at most 10% of the mean are even
SLACK = 1 << 20  # ... or by at most 1 MiB, however little is stored
ROUNDS = 3  # plan-and-move rounds at most: writes during a round change what is even
MAX_PASSES = 20  # passes of one plan over the drives (each moves fragments or ends the plan)
BUSY_PAUSE = 2.0  # seconds at most a move waits for client traffic to calm down
PART_LEASE = 120.0  # the repairer's part lease (gateway/care/repairer.py), held while a part moves
JOB_LEASE = 60.0  # one rebalance in the cluster at a time; renewed while it runs
# A lease as a mark that outlives gateways: held from a rebalance's start until it ends well.
UNFINISHED, UNFINISHED_HOLDER, UNFINISHED_TTL = "rebalance-unfinished", "unfinished", 7 * 86400.0
PROBE_HOLDER, PROBE_TTL = "probe", 1.0  # how a starting gateway looks at that mark


@dataclass(frozen=True, slots=True)
class Move:
    bucket: str
    key: str
    version: str  # the S3 version id of the version holding the part ("" the null version)
    data_id: str
    part: int
    index: int  # the fragment
    source: str  # drive ids
    target: str
    size: int  # bytes of the fragment file


@dataclass(slots=True)
class Plan:
    moves: list[Move] = field(default_factory=list)
    uneven: int = 0  # drives still above the mean after the moves (the placement rules allow no better)
    share: dict[str, float] = field(default_factory=dict)  # drive -> fair bytes
    used: dict[str, int] = field(default_factory=dict)  # drive -> bytes now

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moves)


def shares(nodes: Iterable[NodeRecord], live: set[str], listing: Listing) -> tuple[dict[str, int], dict[str, float]]:
    """(bytes used, fair bytes) of each drive that takes part: on an active live node, online, listed."""
    drives = [
        d
        for n in nodes
        if n.state == "active" and n.node_id in live
        for d in n.drives
        if not d.state and d.drive_id in listing.listed
    ]
    used = dict.fromkeys((d.drive_id for d in drives), 0)
    for (drive_id, _), (size, _) in listing.present.items():
        if drive_id in used:
            used[drive_id] += size
    # A node that does not say its capacity counts as the average, not as nothing.
    known = [d.capacity for d in drives if d.capacity > 0]
    default = sum(known) / len(known) if known else 1.0
    cap = {d.drive_id: float(d.capacity or default) for d in drives}
    total, total_cap = sum(used.values()), sum(cap.values()) or 1.0
    return used, {d: total * c / total_cap for d, c in cap.items()}


class _Fill:
    """Drive usage scaled to an average drive's capacity, so drives of any size compare: x = used / share * mean."""

    def __init__(self, used: dict[str, int], share: dict[str, float]) -> None:
        self.used = dict(used)
        self.mean = sum(share.values()) / len(share) if share else 0.0
        self.scale = {d: (self.mean / s if s else float("inf")) for d, s in share.items()}
        self.gap = max(self.mean * TOLERANCE, SLACK)  # usages closer than this are even

    def x(self, d: str, delta: int = 0) -> float:
        return (self.used[d] + delta) * self.scale[d]

    def worth(self, source: str, target: str, size: int) -> bool:
        """Moving `size` bytes narrows an uneven pair and leaves the target no fuller than the source."""
        return self.x(source) - self.x(target) > self.gap and self.x(target, size) <= self.x(source, -size)

    def uneven(self) -> int:
        return sum(self.x(d) > self.mean + self.gap for d in self.used)


def plan(
    parts: list[tuple[ObjectManifest, PartRecord]],
    listing: Listing,
    used: dict[str, int],
    share: dict[str, float],
    targets: set[str],
) -> Plan:
    """Moves from the fullest drives to the emptiest that may take each fragment (`targets`: active, live,
    with room), until no move narrows a pair of drives whose usage differs by more than the tolerance."""
    if not sum(used.values()):
        return Plan(share=share, used=dict(used))  # nothing stored: nothing to even out
    fill = _Fill(used, share)
    node_of = listing.node_of
    on_drive: dict[str, list[tuple[ObjectManifest, PartRecord, int, int]]] = {}
    for man, part in parts:
        for i, d in enumerate(part.placement):
            size = listing.present.get((d, FragmentId(part.data_id, part.number, i).name), (0, 0.0))[0]
            if d in used and size and i not in part.missed:
                on_drive.setdefault(d, []).append((man, part, i, size))
    placement = {(p.data_id, p.number): list(p.placement) for _, p in parts}
    out = Plan(share=share, used=dict(used))
    for _ in range(MAX_PASSES):  # each pass walks the fullest drives first; stop when one moves nothing
        moved = 0
        for source in sorted(fill.used, key=fill.x, reverse=True):
            stay = []
            for man, part, i, size in on_drive.get(source, []):
                now = placement[(part.data_id, part.number)]
                target = _target(now, i, source, size, fill, targets, node_of)
                if target is None:
                    stay.append((man, part, i, size))
                    continue
                now[i] = target
                fill.used[source] -= size
                fill.used[target] += size
                out.moves.append(
                    Move(man.bucket, man.key, man.s3_version_id, part.data_id, part.number, i, source, target, size)
                )
                moved += 1
            on_drive[source] = stay  # a fragment is moved once per plan
        if not moved:
            break
    out.uneven = fill.uneven()
    return out


def _target(
    placement: list[str],
    index: int,
    source: str,
    size: int,
    fill: _Fill,
    targets: set[str],
    node_of: dict[str, NodeSlot],
) -> str | None:
    """The emptiest drive that may take fragment `index` of a part placed so, if the move is worth it."""
    others = [node_of[d] for j, d in enumerate(placement) if j != index and d in node_of]
    holding = {s.node_id for s in others}
    zones = Counter(s.zone for s in others)
    most = max(Counter(s.zone for s in (*others, node_of[source])).values())
    best = None
    for d in targets:
        slot = node_of.get(d)
        if slot is None or d not in fill.used or slot.node_id in holding or zones[slot.zone] + 1 > most:
            continue
        if best is None or fill.x(d) < fill.x(best):
            best = d
    return best if best is not None and fill.worth(source, best, size) else None


@dataclass
class Rebalancer:
    index: Index
    drives: DriveSet
    holder: str  # this gateway's id; part leases are taken as holder + "/rebalance"
    rate: float = 200e6  # bytes/s moved at most
    concurrency: int = 2
    busy: Callable[[], bool] = lambda: False
    resumed: bool = False  # started by a gateway that found a rebalance left unfinished
    _pace: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self._pace = RateLimit(self.rate, 1.0)

    @property
    def _me(self) -> str:
        return f"{self.holder}/rebalance"

    async def run(self, job: Job) -> None:
        nodes: list[NodeRecord] | None = getattr(self.drives, "nodes", None)
        if nodes is None:
            raise RuntimeError("rebalance needs a cluster: the embedded server's drives are fixed")
        if not await self.index.acquire_lease("rebalance", self._me, JOB_LEASE):
            if self.resumed:  # several gateways found it unfinished: one carries on
                job.message = "another gateway carries on the unfinished rebalance"
                return
            raise RuntimeError(
                f"another gateway is rebalancing the cluster now (one that was killed holds it {JOB_LEASE:g} s at most)"
            )
        renew = asyncio.ensure_future(self._renew("rebalance", JOB_LEASE))
        try:
            # Marked unfinished until it ends well: a gateway that starts while it is marked resumes it.
            await self._mark_unfinished()
            await self._rounds(job)
            await self.index.release_lease(UNFINISHED, UNFINISHED_HOLDER)
            if self.resumed:
                job.message = "resumed after a gateway restart: " + job.message
        finally:
            renew.cancel()
            with contextlib.suppress(Exception):
                await self.index.release_lease("rebalance", self._me)

    async def unfinished(self) -> bool:
        """Whether a rebalance was left unfinished (its mark is held). Looking takes the free mark for an
        instant, as one holder shared by every gateway (two looking at once both see it free), and gives it
        back."""
        if await self.index.acquire_lease(UNFINISHED, PROBE_HOLDER, PROBE_TTL):
            await self.index.release_lease(UNFINISHED, PROBE_HOLDER)
            return False
        return True

    async def _mark_unfinished(self) -> None:
        # A gateway looking at the mark holds it for an instant (PROBE_TTL at most): wait that out.
        deadline = time.monotonic() + 2 * PROBE_TTL
        while not await self.index.acquire_lease(UNFINISHED, UNFINISHED_HOLDER, UNFINISHED_TTL):
            if time.monotonic() > deadline:
                raise RuntimeError("could not mark the rebalance as running in the index")
            await asyncio.sleep(0.1)

    async def _renew(self, lease: str, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            with contextlib.suppress(Exception):
                await self.index.acquire_lease(lease, self._me, ttl)

    async def _rounds(self, job: Job) -> None:
        job.unit, job.total, job.completed = "bytes", 0, 0
        p = Plan()
        planning = 0.0
        for _ in range(ROUNDS):
            job.phase = "planning"
            t0 = time.monotonic()
            p = await self._plan()
            planning += time.monotonic() - t0
            if not p.moves:
                break
            job.phase = "moving"
            job.total += p.bytes
            await self._move_all(job, p.moves)
        log.info("rebalance: %d bytes moved, %.1f s of it planning", job.completed, planning)
        job.message = f"{job.completed / (1 << 20):.1f} MiB moved (planning {planning:.1f} s); " + (
            "every drive is within the tolerance of the mean"
            if not p.uneven
            else f"{p.uneven} drive(s) stay above the mean: spreading each part's fragments over nodes and "
            "zones keeps them there"
        )

    async def _plan(self) -> Plan:
        refresh = getattr(self.drives, "refresh", None)
        if refresh is not None:
            await refresh()  # nodes added a moment ago take part
        nodes: list[NodeRecord] = getattr(self.drives, "nodes", [])
        listing = await list_drives(self.drives)
        live = {s.node_id for s in self.drives.all_slots() if s.live}
        used, share = shares(nodes, live, listing)
        targets = {d for s in self.drives.slots() if s.live and not s.full for d in s.drive_ids}
        parts = [(m, p) async for m, p in stored_parts(self.index) if p.last_modified < listing.started]
        return plan(parts, listing, used, share, targets)

    async def _move_all(self, job: Job, moves: list[Move]) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        # A part's moves go one after another (each commits the placement the next one starts from).
        by_part: dict[tuple[str, int], list[Move]] = {}
        for m in moves:
            by_part.setdefault((m.data_id, m.part), []).append(m)

        async def one(part_moves: list[Move]) -> None:
            async with slots:
                for m in part_moves:
                    await yield_to(self.busy, BUSY_PAUSE)
                    if await self.move(m):
                        job.completed += m.size
                        job.bytes += m.size
                        await self._pace.pace(m.size)
                    else:
                        job.total -= m.size  # gone, changed or busy: not to move any more

        await asyncio.gather(*(one(g) for g in by_part.values()))

    async def move(self, m: Move) -> bool:
        """Move one fragment; True if it moved. False (nothing changed) when the object was overwritten or
        deleted, the part is being repaired, or a drive failed: the next round plans again."""
        lease = f"repair/{m.data_id}.{m.part}"
        if not await self.index.acquire_lease(lease, self._me, PART_LEASE):
            return False
        renew = asyncio.ensure_future(self._renew(lease, PART_LEASE))  # a big fragment may take a while
        try:
            return await self._move(m)
        except (DriveError, OSError, TimeoutError, MetadataError) as exc:
            log.warning("rebalance: moving %s.%d.%d to %s: %r", m.data_id, m.part, m.index, m.target, exc)
            return False
        finally:
            renew.cancel()
            with contextlib.suppress(Exception):
                await self.index.release_lease(lease, self._me)

    async def _holder(self, m: Move) -> tuple[ObjectManifest | None, PartRecord | None]:
        """The version holding the part now (the current one, or the noncurrent one planned), if any does."""

        def part_of(man: ObjectManifest | None) -> PartRecord | None:
            found = (p for p in man.parts if p.data_id == m.data_id and p.number == m.part) if man else ()
            return next(found, None)

        man = await self.index.get_object(m.bucket, m.key)
        if part_of(man) is None:
            man = await self.index.get_version(m.bucket, m.key, m.version or "null")
        return man, part_of(man)

    async def _move(self, m: Move) -> bool:
        man, part = await self._holder(m)
        if man is None or part is None or part.placement[m.index] != m.source:
            return False
        node_of = {d: s.node_id for s in self.drives.all_slots() for d in s.drive_ids}
        if node_of.get(m.target) in {node_of.get(d) for j, d in enumerate(part.placement) if j != m.index}:
            return False  # a repair put another fragment of the part there meanwhile
        source, target = self.drives.drive(m.source), self.drives.drive(m.target)
        if source is None or target is None:
            return False
        fid = FragmentId(m.data_id, m.part, m.index)
        try:
            await target.put(fid, source.get(fid))
            if await target.verify(fid):
                raise DriveError(f"{fid.name} did not verify on {m.target} after the copy")
        except BaseException:
            with contextlib.suppress(Exception):
                await target.delete(fid)
            raise
        placement = list(part.placement)
        placement[m.index] = m.target
        if not await self.index.update_part(m.bucket, m.key, man.version_id, replace(part, placement=placement)):
            with contextlib.suppress(Exception):
                await target.delete(fid)  # overwritten or deleted meanwhile: the copy is nobody's
            return False
        with contextlib.suppress(Exception):  # left behind, it is an orphan the collector removes
            await source.delete(fid)
        return True
