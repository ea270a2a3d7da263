"""How healthy each fragment of a part is: asked of the drives that hold them (stat, and verify)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.objects.drive_set import DriveSet
from metadata.records import PartRecord
from storage_node.drive import DriveError, FragmentId, FragmentNotFound

OK, MISSING, CORRUPT, UNREACHABLE = "ok", "missing", "corrupt", "unreachable"
CHECK_TIMEOUT = 30.0  # seconds for one fragment's stat or verify


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
