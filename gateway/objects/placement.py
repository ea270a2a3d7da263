"""Where an object version's fragments go: distinct nodes, zones spread evenly, live nodes with free space first.

Rendezvous (highest random weight) hashing on the data version: every gateway computes the same
placement from the same membership with no shared state, versions spread evenly, and few
fragments move when nodes come or go.

Capacity: a drive whose free space is below the reserve (`--min-free`, docs/operations.md) is full and
takes no new fragments. A node whose every drive is full is placed like a dead one, after all the others,
and its fragment is not written (it misses its write): a PUT goes on while k+1 fragments find room and is
refused (503) when they do not.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeSlot:
    """A node as placement sees it: its drives and whether it is believed alive."""

    node_id: str
    zone: str
    drive_ids: tuple[str, ...]
    live: bool = True
    full: bool = False  # every drive below the free-space reserve: takes no new fragments


def is_full(capacity: int, free: int, reserve: int) -> bool:
    """A drive with less than `reserve` bytes free is full (capacity 0: a node that does not say; never full)."""
    return capacity > 0 and free < reserve


def full_drives(nodes: Sequence[NodeSlot]) -> frozenset[str]:
    """The drives placement may name but nothing may be written to (their node is full)."""
    return frozenset(d for n in nodes if n.full for d in n.drive_ids)


def _weight(data_id: str, name: str) -> bytes:
    return hashlib.blake2b(f"{data_id}/{name}".encode(), digest_size=8).digest()


def place(data_id: str, nodes: Sequence[NodeSlot], width: int, zones_taken: Sequence[str] = ()) -> list[str]:
    """Drive ids for fragments 0..width-1, each on a different node.

    Live nodes with room are taken before dead or full ones (a fragment sent to those just misses
    its write); among them, each pick goes to the zone holding the fewest fragments so far, and
    within that to the node with the highest weight. Within a node the drive is chosen by weight.
    `zones_taken` are the zones of fragments already placed elsewhere (a repair adds to those).
    """
    usable = [n for n in nodes if n.drive_ids]
    if len(usable) < width:
        raise ValueError(f"need {width} nodes with drives, have {len(usable)}")
    ranked = sorted(usable, key=lambda n: _weight(data_id, n.node_id), reverse=True)
    live_pool = [n for n in ranked if n.live and not n.full]
    dead_pool = [n for n in ranked if not n.live or n.full]
    chosen: list[NodeSlot] = []
    per_zone: Counter[str] = Counter(zones_taken)
    for pool in (live_pool, dead_pool):
        while pool and len(chosen) < width:
            fewest = min(per_zone[n.zone] for n in pool)
            pick = next(n for n in pool if per_zone[n.zone] == fewest)
            pool.remove(pick)
            chosen.append(pick)
            per_zone[pick.zone] += 1
    return [max(n.drive_ids, key=lambda d: _weight(data_id, d)) for n in chosen]
