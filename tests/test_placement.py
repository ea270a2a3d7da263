from __future__ import annotations

import uuid
from collections import Counter

import pytest

from gateway.objects.placement import NodeSlot, place


def nodes(n: int, zones: int = 1, drives: int = 2, dead: tuple[int, ...] = ()) -> list[NodeSlot]:
    return [
        NodeSlot(f"node{i}", f"z{i % zones}", tuple(f"n{i}d{j}" for j in range(drives)), live=i not in dead)
        for i in range(n)
    ]


def node_of(drive: str) -> str:
    return drive.split("d")[0]


def test_fragments_land_on_distinct_nodes_deterministically() -> None:
    slots = nodes(9)
    for _ in range(200):
        data_id = uuid.uuid4().hex
        got = place(data_id, slots, 6)
        assert len({node_of(d) for d in got}) == 6
        assert place(data_id, list(reversed(slots)), 6) == got  # any gateway, any listing order


def test_zones_are_spread_evenly() -> None:
    slots = nodes(9, zones=3)
    for _ in range(200):
        zones = Counter(int(node_of(d)[1:]) % 3 for d in place(uuid.uuid4().hex, slots, 6))
        assert sorted(zones.values()) == [2, 2, 2]


def test_live_nodes_come_first_and_dead_ones_only_to_fill() -> None:
    slots = nodes(7, dead=(0, 1))
    for _ in range(100):
        got = {node_of(d) for d in place(uuid.uuid4().hex, slots, 6)}
        assert len(got & {"n0", "n1"}) == 1  # five live nodes, so exactly one dead one fills the sixth slot


def test_load_is_even_and_few_fragments_move_when_a_node_joins() -> None:
    before, after = nodes(8), nodes(9)
    ids = [uuid.uuid4().hex for _ in range(2000)]
    load = Counter(node_of(d) for i in ids for d in place(i, before, 6))
    assert max(load.values()) / min(load.values()) < 1.25
    moved = sum(len(set(place(i, before, 6)) - set(place(i, after, 6))) for i in ids)
    assert moved / (6 * len(ids)) < 0.2  # ~1/9 of the fragments ideally


def test_too_few_nodes() -> None:
    with pytest.raises(ValueError):
        place(uuid.uuid4().hex, nodes(5), 6)
