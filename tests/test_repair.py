"""Rebuilding lost fragments (gateway/care/rebuild.py) over real local drives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.care.rebuild import RepairError, rebuild
from gateway.objects.drive_set import LocalDrives
from gateway.objects.erasure import Scheme
from gateway.objects.layer import ObjectLayer
from gateway.objects.pipelines import ReadError, read_fragments, read_part
from metadata.records import PartRecord
from storage_node.drive import FragmentId
from storage_node.local_drive import LocalDrive

MiB = 1 << 20


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        out, self.data = self.data[: 256 * 1024], self.data[256 * 1024 :]
        return out


async def setup(
    tmp_path: Path, n: int, size: int = 3 * MiB + 17
) -> tuple[LocalDrives, list[LocalDrive], PartRecord, bytes]:
    drives = [await LocalDrive.open(tmp_path / f"d{i}") for i in range(n)]
    dset = LocalDrives(drives)
    layer = ObjectLayer(dset, Scheme(4, 2))
    data = os.urandom(size)
    part, _ = await layer.write(Body(data), 0)
    return dset, drives, part, data


async def read_back(part: PartRecord, dset: LocalDrives, only: set[int] | None = None) -> bytes:
    """Read the part; with `only`, from exactly those fragments (the others made unreachable)."""
    lookup = dset.drive if only is None else (lambda d: dset.drive(d) if part.placement.index(d) in only else None)
    end = Scheme(4, 2).segment_count(part.size)
    return b"".join([seg async for seg in read_part(part, lookup, 0, end)])


def by_id(drives: list[LocalDrive]) -> dict[str, LocalDrive]:
    return {d.drive_id: d for d in drives}


async def test_lost_fragments_are_rebuilt_in_place_and_read_alone(tmp_path: Path) -> None:
    dset, drives, part, data = await setup(tmp_path, 6)
    lost = {1, 4}
    for i in lost:
        await by_id(drives)[part.placement[i]].delete(FragmentId(part.data_id, 0, i))
    repaired = await rebuild(part, dset, lost)
    assert repaired.placement == part.placement  # their drives were up: rewritten where they were
    # The rebuilt fragments plus two others are enough on their own, and give the same bytes.
    assert await read_back(repaired, dset, only={1, 4, 0, 2}) == data


async def test_corrupt_fragment_is_rebuilt_and_verifies(tmp_path: Path) -> None:
    dset, drives, part, data = await setup(tmp_path, 6)
    fid = FragmentId(part.data_id, 0, 2)
    path = by_id(drives)[part.placement[2]].fragment_path(fid)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert await by_id(drives)[part.placement[2]].verify(fid)
    await rebuild(part, dset, {2})
    assert await by_id(drives)[part.placement[2]].verify(fid) == []
    assert await read_back(part, dset, only={2, 3, 4, 5}) == data


async def test_drained_node_fragment_moves_to_a_node_without_one(tmp_path: Path) -> None:
    dset, _, part, data = await setup(tmp_path, 7)
    leaving = part.placement[3]
    repaired = await rebuild(part, dset, {3}, leaving={leaving})
    assert repaired.placement[3] != leaving
    assert len(set(repaired.placement)) == 6  # still six distinct nodes
    assert await read_back(repaired, dset, only={3, 0, 1, 2}) == data


async def test_no_target_left(tmp_path: Path) -> None:
    dset, _, part, _ = await setup(tmp_path, 6)
    with pytest.raises(RepairError):
        await rebuild(part, dset, {0}, leaving={part.placement[0]})


async def test_more_lost_than_parity_cannot_be_rebuilt(tmp_path: Path) -> None:
    dset, drives, part, _ = await setup(tmp_path, 6)
    for i in (0, 1, 2):
        await by_id(drives)[part.placement[i]].delete(FragmentId(part.data_id, 0, i))
    with pytest.raises(ReadError):  # too few sources: nothing is written
        await rebuild(part, dset, {0, 1, 2})
    for i in (0, 1, 2):
        assert not by_id(drives)[part.placement[i]].fragment_path(FragmentId(part.data_id, 0, i)).exists()


async def test_read_fragments_prefers_to_avoid(tmp_path: Path) -> None:
    dset, _, part, _ = await setup(tmp_path, 6, size=MiB)
    async for chunks in read_fragments(part, dset.drive, 0, 1, avoid=frozenset({0, 1})):
        assert set(chunks) == {2, 3, 4, 5}
