"""The lifecycle worker (gateway/care/lifecycle.py) in process, over a real LocalIndex and local drives, with tiny
batches: a key whose versions span several pages is handled whole, and the background pass keeps its cursor."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.care.jobs import JobBoard
from gateway.care.lifecycle import Lifecycle
from gateway.objects.drive_set import LocalDrives
from gateway.objects.erasure import Scheme
from gateway.objects.layer import ObjectLayer, new_id
from gateway.s3 import lifecycle as lc
from metadata.local.store import LocalIndex
from metadata.records import BucketRecord, ObjectManifest, PartRecord, new_version_id
from storage_node.local_drive import LocalDrive


def _version(bucket: str, key: str, when: float) -> ObjectManifest:
    part = PartRecord(0, new_id(), 1, "e", [], 4, 2, 1 << 20, inline=b"x")
    man = ObjectManifest(bucket, key, new_id(), 1, "e", when, "AKIA", [part])
    man.s3_version_id = new_version_id(when)
    return man


async def _setup(tmp_path: Path) -> tuple[LocalIndex, ObjectLayer]:
    LocalIndex.prepare(tmp_path / "index")
    index = LocalIndex.open(tmp_path / "index")
    drives = [await LocalDrive.open(tmp_path / f"d{i}") for i in range(6)]
    await index.create_bucket(BucketRecord("b", "AKIA", time.time()))
    await index.set_versioning("b", "Enabled")
    rule = lc.Rule("nc", True, noncurrent_days=1, newer_noncurrent=2)
    await index.set_bucket_lifecycle("b", lc.dumps([rule]))
    old = time.time() - 100
    for i in range(12):
        await index.put_object(_version("b", "a", old + i))
    for key in ("c", "d", "e"):
        for i in range(2):
            await index.put_object(_version("b", key, old + i))
    return index, ObjectLayer(LocalDrives(drives), Scheme(4, 2))


async def test_a_key_across_pages_is_handled_whole_and_the_cursor_kept(tmp_path: Path) -> None:
    index, layer = await _setup(tmp_path)
    try:
        worker = Lifecycle(index, layer, "gw-a", JobBoard(), day=1.0, batch=3)
        await worker._tick()  # the first batch: key "a", all 12 of its versions though the batch is 3
        rec = await index.get_bucket("b")
        assert rec is not None and rec.lifecycle_cursor == "a"
        page = await index.list_versions("b")
        assert [e.manifest.key for e in page.versions] == ["a"] * 3 + ["c", "c", "d", "d", "e", "e"]
        assert worker.stats.noncurrent == 9
        # Another gateway cannot take the lease while this one holds it.
        other = Lifecycle(index, layer, "gw-b", JobBoard(), day=1.0, batch=3)
        await other._tick()
        assert other.stats.scanned == 0
        for _ in range(10):
            await worker._tick()
        rec = await index.get_bucket("b")
        assert rec is not None and rec.lifecycle_cursor == "" and worker.stats.passes == 1
        assert await index.acquire_lease("lifecycle", "gw-b", 1.0) is False  # the pass over, it keeps the lease
        await worker.close()  # gives it up: another gateway may go on at once
        assert await index.acquire_lease("lifecycle", "gw-b", 1.0) is True
        gone = BucketRecord("gone", "AKIA", time.time())  # a bucket deleted during its pass: done, not an error
        assert await worker._batch(gone, [lc.Rule("x", True, days=1)], "k", worker.stats) == ("", True)
        assert worker.stats.noncurrent == 9  # the one noncurrent version of c, d and e is among the newest two: kept
    finally:
        await asyncio.sleep(0)
        await index.close()


async def test_a_job_reports_its_own_work_not_the_background_pass(tmp_path: Path) -> None:
    index, layer = await _setup(tmp_path)
    try:
        # A second bucket the background pass works on while the job waits for its turn.
        await index.create_bucket(BucketRecord("other", "AKIA", time.time()))
        await index.set_versioning("other", "Enabled")
        old = time.time() - 100
        for i in range(5):
            await index.put_object(_version("other", "x", old + i))
        worker = Lifecycle(index, layer, "gw-a", JobBoard(), day=1.0)
        other = await index.get_bucket("other")
        assert other is not None
        async with worker._lock:  # the background pass holds the lock when the job starts
            job = worker.run_job(["b"])
            await asyncio.sleep(0)
            await worker._batch(other, [lc.Rule("nc", True, noncurrent_days=1)], "", worker.stats)
        deadline = time.monotonic() + 10
        while job.finished is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert job.phase == "done", job.message
        assert job.message.startswith("18 version(s) looked at: 0 expired, 9 noncurrent removed"), job.message
        assert worker.stats.noncurrent == 9 + 4  # the worker's counters hold both
    finally:
        await asyncio.sleep(0)
        await index.close()
