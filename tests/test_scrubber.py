from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

from storage_node.drive import FragmentId
from storage_node.local_drive import LocalDrive
from storage_node.scrubber import Scrubber

KiB = 1 << 10


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i % 251]) * size


def fid(i: int) -> FragmentId:
    return FragmentId(f"{i:032x}", 0, i % 6)


async def test_scrub_finds_every_corrupt_fragment_and_nothing_else(tmp_path: Path) -> None:
    drives = [await LocalDrive.open(tmp_path / f"d{j}") for j in range(2)]
    for i in range(12):
        await drives[i % 2].put(fid(i), chunks(4, 64 * KiB))
    rotten = {3: 2, 8: 0}  # fragment -> chunk with a flipped byte
    for i, chunk in rotten.items():
        path = drives[i % 2].fragment_path(fid(i))
        raw = bytearray(path.read_bytes())
        raw[22 + chunk * (64 * KiB + 4) + 100] ^= 1  # header is 22 bytes; each chunk carries a 4-byte crc
        path.write_bytes(bytes(raw))
    reports: list[tuple[str, FragmentId, list[int]]] = []

    async def report(drive_id: str, f: FragmentId, bad: list[int]) -> None:
        reports.append((drive_id, f, bad))

    stats = await Scrubber(drives, report, rate=1e12).scrub_pass()
    assert stats.fragments == 12 and stats.corrupt == 2 and stats.bytes == 12 * 4 * 64 * KiB
    assert sorted((f.name, bad) for _, f, bad in reports) == sorted((fid(i).name, [c]) for i, c in rotten.items())
    assert all(d == drives[f.index % 2].drive_id for d, f, _ in reports)


async def test_scrub_keeps_to_its_rate(tmp_path: Path) -> None:
    drive = await LocalDrive.open(tmp_path / "d")
    for i in range(4):
        await drive.put(fid(i), chunks(4, 64 * KiB))  # 1 MiB in all

    async def report(drive_id: str, f: FragmentId, bad: list[int]) -> None:
        raise AssertionError("nothing is corrupt")

    started = time.monotonic()
    stats = await Scrubber([drive], report, rate=2 * 1024 * 1024).scrub_pass()
    assert stats.fragments == 4
    assert time.monotonic() - started >= 0.45  # 1 MiB at 2 MiB/s: half a second at least
