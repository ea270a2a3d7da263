"""How healthy each fragment of a part is: asked of the drives that hold them (stat, and verify)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.care.scanner import stored_parts
from gateway.objects.drive_set import DriveSet
from metadata.index import Index
from metadata.records import ObjectManifest, PartRecord, RepairEntry
from storage_node.drive import DriveError, FragmentId, FragmentNotFound

OK, MISSING, CORRUPT, UNREACHABLE = "ok", "missing", "corrupt", "unreachable"
CHECK_TIMEOUT = 30.0  # seconds for one fragment's stat or verify
VERIFY_AT_ONCE = 4  # parts verified concurrently by find_corrupt


@dataclass(slots=True)
class FragmentState:
    index: int
    drive_id: str
    node_id: str  # "" when no node has the drive any more (wiped, replaced, removed)
    zone: str
    state: str  # OK | MISSING | CORRUPT | UNREACHABLE
    size: int = 0


async def check_part(part: PartRecord, drives: DriveSet, verify: frozenset[int] | bool = False) -> list[FragmentState]:
    """Every fragment's state. Fragments in `verify` (all when True) have every chunk checked on their
    node, which reads them whole there but sends nothing back; the others are only looked up."""
    node_of = {d: s for s in drives.slots() for d in s.drive_ids}
    node_of.update({d: s for s in drives.all_slots() for d in s.drive_ids if d not in node_of})

    async def one(i: int, drive_id: str) -> FragmentState:
        slot = node_of.get(drive_id)
        st = FragmentState(i, drive_id, slot.node_id if slot else "", slot.zone if slot else "", MISSING)
        drive = drives.drive(drive_id)
        if slot is None:
            return st
        if drive is None or not slot.live:
            st.state = UNREACHABLE
            return st
        fid = FragmentId(part.data_id, part.number, i)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                info = await drive.stat(fid)
                st.size = info.size
                bad = await drive.verify(fid) if verify is True or (verify and i in verify) else []
        except FragmentNotFound:
            return st
        except (DriveError, TimeoutError, OSError):
            st.state = UNREACHABLE
            return st
        st.state = CORRUPT if bad else OK
        return st

    return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(part.placement))))


async def find_corrupt(
    index: Index,
    drives: DriveSet,
    skip: Collection[tuple[str, int]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[RepairEntry]:
    """A repair entry (reason "scrub") for each corrupt fragment of the stored parts (every version's) not in `skip`
    ((data id, part) already queued). Every fragment is verified on its own drive: each is read whole
    there but nothing crosses the network, so this costs a scrub's disk reads, bounded to a few parts
    at a time. progress(parts, bytes) is called as parts are done."""
    out: list[RepairEntry] = []
    parts = size = 0
    slots = asyncio.Semaphore(VERIFY_AT_ONCE)

    async def one(man: ObjectManifest, part: PartRecord) -> None:
        nonlocal parts, size
        async with slots:
            states = await check_part(part, drives, verify=True)
        healthy, now = sum(s.state == OK for s in states), time.time()
        for st in states:
            if st.state == CORRUPT:
                out.append(
                    RepairEntry(
                        healthy, part.data_id, part.number, st.index, man.bucket, man.key, "scrub", st.drive_id, now
                    )
                )
        parts, size = parts + 1, size + part.size
        if progress:
            progress(parts, size)

    pending: set[asyncio.Task[None]] = set()
    try:
        async for man, part in stored_parts(index):
            if (part.data_id, part.number) in skip:
                continue
            pending.add(asyncio.ensure_future(one(man, part)))
            if len(pending) >= VERIFY_AT_ONCE * 2:  # keep the walk from running far ahead of the checks
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
        await asyncio.gather(*pending)
    finally:
        for t in pending:
            t.cancel()
    return out
