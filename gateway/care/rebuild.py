"""Rebuilding lost fragments of a part from k healthy ones, onto drives that keep the placement rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import replace

from gateway.objects.drive_set import DriveSet
from gateway.objects.erasure import Scheme
from gateway.objects.pipelines import FragmentFeed, delete_fragments, read_fragments
from gateway.objects.placement import NodeSlot, place
from metadata.records import PartRecord
from storage_node.drive import DriveError, FragmentId

log = logging.getLogger(__name__)


class RepairError(Exception):
    """The part could not be brought back to full redundancy now (too few sources or targets)."""


def repair_targets(
    part: PartRecord, drives: DriveSet, lost: Collection[int], leaving: Collection[str] = ()
) -> dict[int, str]:
    """A drive for each lost fragment: its own drive when that is up and not leaving (a corrupt
    fragment is rewritten in place), else a live node holding no other fragment of the part,
    zones spread as at write time. `leaving` are nodes being drained."""
    slots = drives.slots()
    node_of = {d: s for s in slots for d in s.drive_ids}
    keep = {i for i in range(part.k + part.m) if i not in lost}
    holding = {node_of[part.placement[i]].node_id for i in keep if part.placement[i] in node_of}
    targets: dict[int, str] = {}
    moving = []
    for i in sorted(lost):
        slot = node_of.get(part.placement[i])
        if (
            slot is not None
            and slot.live
            and not slot.full
            and slot.node_id not in leaving
            and slot.node_id not in holding
        ):
            targets[i] = part.placement[i]
            holding.add(slot.node_id)
        else:
            moving.append(i)
    if moving:
        free = [s for s in slots if s.live and not s.full and s.node_id not in holding and s.node_id not in leaving]
        zones = [node_of[part.placement[i]].zone for i in keep if part.placement[i] in node_of]
        zones += [node_of[d].zone for d in targets.values()]
        try:
            chosen = place(
                f"{part.data_id}/repair", [NodeSlot(s.node_id, s.zone, s.drive_ids) for s in free], len(moving), zones
            )
        except ValueError:
            raise RepairError(
                f"{part.data_id}.{part.number}: no live node free for {len(moving)} fragment(s)"
            ) from None
        targets.update(zip(moving, chosen, strict=True))
    return targets


async def rebuild(
    part: PartRecord, drives: DriveSet, lost: Collection[int], leaving: Collection[str] = ()
) -> PartRecord:
    """Rebuild fragments `lost` of a part, verify them, and return the part with its new placement.

    The caller commits the new placement (only if the object is still this version) and deletes
    fragments left on drives that no longer hold them.
    """
    scheme = Scheme(part.k, part.m, part.segment_size)
    targets = repair_targets(part, drives, lost, leaving)
    feeds: dict[int, FragmentFeed] = {}
    for i, drive_id in targets.items():
        drive = drives.drive(drive_id)
        if drive is None:
            raise RepairError(f"drive {drive_id} went away")
        feeds[i] = FragmentFeed(drive, FragmentId(part.data_id, part.number, i))
    wanted = sorted(targets)
    end = scheme.segment_count(part.size)
    try:
        async for chunks in read_fragments(part, drives.drive, 0, end, avoid=frozenset(lost)):
            rebuilt = scheme.reconstruct(chunks, wanted) if any(i not in chunks for i in wanted) else []
            by_index = dict(zip([i for i in wanted if i not in chunks], rebuilt, strict=False))
            by_index.update({i: chunks[i] for i in wanted if i in chunks})
            fed = await asyncio.gather(*(feeds[i].feed(by_index[i]) for i in wanted))
            if not all(fed):
                raise RepairError(f"{part.data_id}.{part.number}: a target drive failed mid-repair")
    except BaseException:
        for f in feeds.values():
            await f.feed(DriveError("repair aborted"))
        await asyncio.gather(*(f.task for f in feeds.values()), return_exceptions=True)
        raise
    await asyncio.gather(*(f.feed(None) for f in feeds.values()))
    results = await asyncio.gather(*(f.task for f in feeds.values()), return_exceptions=True)
    failed = [i for i, r in zip(wanted, results, strict=True) if isinstance(r, BaseException)]
    if not failed:
        checks = await asyncio.gather(
            *(drives.drive(targets[i]).verify(FragmentId(part.data_id, part.number, i)) for i in wanted),  # type: ignore[union-attr]
            return_exceptions=True,
        )
        failed = [i for i, c in zip(wanted, checks, strict=True) if isinstance(c, BaseException) or c]
    if failed:
        await delete_fragments(
            [
                drives.drive(targets[i]) if i in failed and targets[i] != part.placement[i] else None
                for i in range(scheme.width)
            ],
            part.data_id,
            part.number,
        )
        raise RepairError(f"{part.data_id}.{part.number}: fragments {failed} did not verify after the rebuild")
    placement = list(part.placement)
    for i, drive_id in targets.items():
        placement[i] = drive_id
    return replace(part, placement=placement, missed=[i for i in part.missed if i not in targets])
