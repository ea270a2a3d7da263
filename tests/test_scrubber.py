from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage_node.drive import FragmentId
from storage_node.local_drive import LocalDrive
from storage_node.protocol import ScrubStatus
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


# -- progress and control --------------------------------------------------------------------------------


async def wait_for(cond: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def flip(drive: LocalDrive, f: FragmentId, chunk: int = 0) -> None:
    path = drive.fragment_path(f)
    raw = bytearray(path.read_bytes())
    raw[22 + chunk * (64 * KiB + 4) + 100] ^= 1
    path.write_bytes(bytes(raw))


async def one_drive(tmp_path: Path, n: int) -> LocalDrive:
    drive = await LocalDrive.open(tmp_path / "d")
    for i in range(n):
        await drive.put(fid(i), chunks(4, 64 * KiB))  # 256 KiB each
    return drive


async def test_start_reports_progress_against_the_total(tmp_path: Path) -> None:
    drive = await one_drive(tmp_path, 4)
    scrubber = Scrubber([drive], lambda *a: asyncio.sleep(0), rate=2 * 1024 * 1024)  # 1 MiB: about 0.5 s
    before = scrubber.status()
    assert before == ScrubStatus()  # nothing yet, all zero
    try:
        status = scrubber.start()
        assert status.running and status.passes == 0 and status.started is not None and status.finished is None
        await wait_for(lambda: scrubber.status().bytes > 0)
        mid = scrubber.status()
        assert mid.running and mid.total_bytes == 4 * 256 * KiB and 0 < mid.bytes < mid.total_bytes
        await wait_for(lambda: not scrubber.running)
        done = scrubber.status()
        assert not done.running and done.passes == 1 and done.error == ""
        assert done.fragments == 4 and done.bytes == done.total_bytes == 4 * 256 * KiB and done.corrupt == 0
        assert done.started is not None and done.finished is not None and done.finished >= done.started
        assert 0 < done.mb_per_s < 2 * 1.05 * 1024 * 1024 / 1e6  # kept to its rate
        assert ScrubStatus.from_json(json.loads(json.dumps(done.to_json()))) == done
    finally:
        await scrubber.close()


async def test_never_two_passes_at_once(tmp_path: Path) -> None:
    drive = await one_drive(tmp_path, 4)
    flip(drive, fid(2))
    reports: list[FragmentId] = []

    async def report(drive_id: str, f: FragmentId, bad: list[int]) -> None:
        reports.append(f)

    scrubber = Scrubber([drive], report, rate=4 * 1024 * 1024)
    try:
        first = scrubber.start()
        again = [scrubber.start() for _ in range(3)]
        assert all(s.running and s.started == first.started for s in again)  # the same pass, not a new one
        joined = await asyncio.gather(scrubber.scrub_pass(), scrubber.scrub_pass())
        assert joined[0] is joined[1] and joined[0].started == first.started
        assert scrubber.status().passes == 1 and reports == [fid(2)]  # one pass, one report
        # Once it is over, start() begins a new pass.
        second = scrubber.start()
        assert second.running and second.passes == 1 and second.started != first.started
        await wait_for(lambda: not scrubber.running)
        assert scrubber.status().passes == 2 and scrubber.status().corrupt == 1 and reports == [fid(2)] * 2
    finally:
        await scrubber.close()


async def test_periodic_passes_start_after_one_interval(tmp_path: Path) -> None:
    drive = await one_drive(tmp_path, 2)
    # Margins of most of a second: a busy machine's event loop wakes late, never early.
    scrubber = Scrubber([drive], lambda *a: asyncio.sleep(0), rate=1e12, interval=1.2)
    scrubber.open()
    try:
        await asyncio.sleep(0.3)
        assert scrubber.status().passes == 0 and not scrubber.running  # not at startup
        await wait_for(lambda: scrubber.status().passes == 1, within=5)
        first_end = time.monotonic()
        await wait_for(lambda: scrubber.status().passes == 2, within=5)
        assert time.monotonic() - first_end >= 1.1  # and again an interval later
        assert scrubber.status().fragments == 2
    finally:
        await scrubber.close()


async def test_on_demand_pass_postpones_the_periodic_one(tmp_path: Path) -> None:
    drive = await one_drive(tmp_path, 2)
    scrubber = Scrubber([drive], lambda *a: asyncio.sleep(0), rate=1e12, interval=2.0)
    scrubber.open()
    try:
        await asyncio.sleep(1.2)
        await scrubber.scrub_pass()  # on demand, while the periodic one is 0.8 s away
        assert scrubber.status().passes == 1
        await asyncio.sleep(1.2)  # past the first schedule's time (2.0 s), before the new one's (3.2 s)
        assert scrubber.status().passes == 1  # the schedule restarted from the on-demand pass
        await wait_for(lambda: scrubber.status().passes == 2, within=5)
    finally:
        await scrubber.close()


async def test_close_cancels_a_running_pass(tmp_path: Path) -> None:
    drive = await one_drive(tmp_path, 4)
    scrubber = Scrubber([drive], lambda *a: asyncio.sleep(0), rate=256 * 1024, interval=3600)  # 4 s for 1 MiB
    scrubber.open()
    scrubber.start()
    await wait_for(lambda: scrubber.status().bytes > 0)
    started = time.monotonic()
    await scrubber.close()
    assert time.monotonic() - started < 1
    status = scrubber.status()
    assert not status.running and status.passes == 0 and status.error == "cancelled"
    with pytest.raises(RuntimeError):
        scrubber.start()


async def test_a_failing_report_does_not_stop_the_pass(tmp_path: Path) -> None:
    drive = await one_drive(tmp_path, 4)
    flip(drive, fid(0))
    flip(drive, fid(3))
    calls: list[FragmentId] = []

    async def report(drive_id: str, f: FragmentId, bad: list[int]) -> None:
        calls.append(f)
        raise ConnectionError("index down")

    stats = await Scrubber([drive], report, rate=1e12).scrub_pass()
    assert stats.fragments == 4 and stats.corrupt == 2 and sorted(c.name for c in calls) == [fid(0).name, fid(3).name]


def test_status_json_is_checked() -> None:
    good = ScrubStatus(True, 3, 10, 100, 200, 1, 0, 1.5, None, 2.0, "").to_json()
    assert ScrubStatus.from_json(good).passes == 3
    for field, bad in [("running", 1), ("passes", -1), ("bytes", "7"), ("started", "x"), ("mb_per_s", None)]:
        with pytest.raises(ValueError):
            ScrubStatus.from_json({**good, field: bad})
    with pytest.raises(ValueError):
        ScrubStatus.from_json([good])
