"""Repair, scrub, heal on read and GC on the embedded server, driven as an operator would: `tessera admin`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server

MiB = 1 << 20
DEADLINE = 30.0  # seconds for anything the background work should have done


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # No background scan during a test: what is repaired is what the test asks for (or a read heals).
    s = start_server(tmp_path / "server", extra=("--scan-interval", "3600", "--scrub-interval", "0"))
    yield s
    s.stop()


@pytest.fixture
def gc_srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # A scan every 2 s, collecting what has been unreferenced for 10 s.
    s = start_server(tmp_path / "server", extra=("--gc-grace", "10", "--scan-interval", "2", "--scrub-interval", "0"))
    yield s
    s.stop()


def admin(
    srv: ServerProcess, *args: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY, env: dict[str, str] | None = None
) -> Any:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "admin", "--endpoint", srv.endpoint, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def inspect(srv: ServerProcess, bucket: str, key: str) -> dict[str, Any]:
    res = admin(srv, "inspect", f"{bucket}/{key}", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def fragment_files(srv: ServerProcess) -> list[Path]:
    return [p for d in srv.drives for p in (d / "fragments").rglob("*.*.*") if p.is_file()]


def fill(srv: ServerProcess, bucket: str, sizes: list[int]) -> dict[str, bytes]:
    s3 = srv.client()
    s3.create_bucket(Bucket=bucket)
    objects = {f"obj-{i}": os.urandom(size) for i, size in enumerate(sizes)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def read_back(srv: ServerProcess, bucket: str, objects: dict[str, bytes]) -> None:
    s3 = srv.client()
    for key, data in objects.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.2)


def test_repair_brings_a_wiped_drive_back(srv: ServerProcess) -> None:
    objects = fill(srv, "wiped", [300_000, 2 * MiB + 5, 3 * MiB, 100])  # the last is inline: no fragments
    for f in (srv.drives[2] / "fragments").rglob("*.*.*"):
        f.unlink()
    assert inspect(srv, "wiped", "obj-1")["health"] == "degraded"
    res = admin(srv, "repair", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 of 3" in res.stdout  # three EC objects lost a fragment; the inline one has none to lose
    for key in objects:
        doc = inspect(srv, "wiped", key)
        assert doc["health"] == "healthy", doc
        assert all(p["healthy"] == 6 for p in doc["parts"])
    # Full redundancy again: any two drives can now go.
    for d in srv.drives[:2]:
        for f in (d / "fragments").rglob("*.*.*"):
            f.unlink()
    read_back(srv, "wiped", objects)


def test_scrub_finds_rot_and_repair_fixes_it(srv: ServerProcess) -> None:
    objects = fill(srv, "rot", [1 * MiB, 2 * MiB])
    flipped = {}
    for f in fragment_files(srv)[:3]:
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x5A
        f.write_bytes(data)
        flipped[f] = bytes(data)
    res = admin(srv, "scrub", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 corrupt" in res.stdout
    for f, bad in flipped.items():
        assert f.read_bytes() != bad, f  # rewritten in place, verified
    for key in objects:
        assert inspect(srv, "rot", key)["health"] == "healthy"
    read_back(srv, "rot", objects)


def test_a_read_that_meets_a_missing_fragment_heals_it(srv: ServerProcess) -> None:
    objects = fill(srv, "heal", [2 * MiB])
    victim = next(f for f in fragment_files(srv) if f.name.endswith(".0.1"))  # a data fragment: reads use those
    victim.unlink()
    read_back(srv, "heal", objects)  # served with parity, and the fragment queued
    wait_for("the fragment rebuilt by the background repairer", victim.exists)
    assert inspect(srv, "heal", "obj-0")["health"] == "healthy"


def test_gc_collects_orphans_and_deleted_objects(gc_srv: ServerProcess) -> None:
    srv = gc_srv
    objects = fill(srv, "gcbucket", [1 * MiB] * 4)
    s3 = srv.client()
    before = sum(f.stat().st_size for f in fragment_files(srv))

    def planted(index: int) -> Path:  # a fragment file no manifest knows, where the drive keeps its files
        data_id = uuid.uuid4().hex
        path = srv.drives[1] / "fragments" / data_id[:2] / f"{data_id}.0.{index}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fragment_files(srv)[0].read_bytes())
        return path

    orphan = planted(3)
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    young = planted(2)  # a write in flight, as far as anyone can tell
    for key in list(objects)[:2]:
        s3.delete_object(Bucket="gcbucket", Key=key)
    wait_for("the orphan collected", lambda: not orphan.exists())
    after = sum(f.stat().st_size for f in fragment_files(srv) if f != young)
    assert after <= before // 2 + 4096
    assert young.exists()  # younger than the grace: it may still get its manifest
    read_back(srv, "gcbucket", {k: v for k, v in list(objects.items())[2:]})


def test_admin_refuses_other_users_and_explains_errors(srv: ServerProcess) -> None:
    res = admin(srv, "user", "add", "carol")
    assert res.returncode == 0, res.stderr
    creds = dict(kv.split("=", 1) for kv in res.stdout.split("export ", 1)[1].split())
    denied = admin(srv, "status", key=creds["AWS_ACCESS_KEY_ID"], secret=creds["AWS_SECRET_ACCESS_KEY"])
    assert denied.returncode == 1 and "AccessDenied" in denied.stderr and "Traceback" not in denied.stderr
    missing = admin(srv, "inspect", "nobucket/nokey")
    assert missing.returncode == 1 and "NoSuchBucket" in missing.stderr
    drain = admin(srv, "node", "drain", "whatever")
    assert drain.returncode == 1 and "cluster" in drain.stderr
    status = json.loads(admin(srv, "status", "--json").stdout)
    assert status["ec"] == "4+2" and len(status["nodes"]) == 6 and status["repair"]["backlog"] == 0


def test_status_lists_the_servers_workers(srv: ServerProcess) -> None:
    fill(srv, "workers", [300_000])

    def workers() -> dict[str, Any]:
        res = admin(srv, "status", "--json")
        assert res.returncode == 0, res.stderr
        return {w["name"]: w for w in json.loads(res.stdout)["workers"]}

    first = workers()
    assert set(first) == {
        "repair",
        "scan",
        "node-watch",
        "notify",
        "lifecycle",
        "users",
        "scrub",
        "drive-watch",
        "index-copies",
    }
    assert first["scan"]["state"] == "idle" and first["scan"]["runs"] == 0  # --scan-interval 3600: not yet
    assert first["scrub"]["state"] == "idle" and first["scrub"]["runs"] == 0  # --scrub-interval 0: when asked
    wait_for("the repairer's first look at its queue", lambda: workers()["repair"]["runs"] >= 1)
    res = admin(srv, "scrub", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    now = workers()
    scrub = now["scrub"]
    assert scrub["runs"] == 1 and scrub["last_error"] == "" and scrub["counters"]["passes"] == 1
    assert scrub["progress"]["unit"] == "bytes" and scrub["progress"]["done"] == scrub["progress"]["total"] > 0
    assert all(w["state"] in ("idle", "running") and w["failures"] == 0 for w in now.values()), now

    text = admin(srv, "status")
    assert text.returncode == 0, text.stderr
    rows = {line.split("│")[1].strip(): line for line in text.stdout.splitlines() if line.count("│") > 2}
    assert "Workers" in text.stdout and {"repair", "scan", "node-watch", "users", "scrub"} <= set(rows)
    assert "never" in rows["scan"] and "idle" in rows["scan"]
