"""Faults an operator meets, on a real `tessera server`: rot that only repair is asked to fix, scrub's
figures, capacity of shared filesystems, a full index filesystem."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from cli.admin.formatting import human_bytes
from cli.dev import DevCluster, Service
from cli.launch import launch
from cli.node import HEARTBEAT_EVERY
from gateway.objects.membership import LIVENESS_GRACE, REFRESH_EVERY
from tests.s3_helpers import dev_client
from tests.server_process import ServerProcess, start_server
from tests.test_admin_embedded import admin, fill, fragment_files, inspect, read_back
from tests.test_fault_answers import fill_up, put_until_refused

MiB = 1 << 20


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # No background scan or scrub: what gets repaired is what the test's admin command finds.
    s = start_server(tmp_path / "server", extra=("--scan-interval", "3600", "--scrub-interval", "0"))
    yield s
    s.stop()


def test_repair_finds_and_rebuilds_a_corrupt_fragment(srv: ServerProcess) -> None:
    objects = fill(srv, "rot", [2 * MiB, 300_000])
    victim = fragment_files(srv)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x5A
    victim.write_bytes(data)
    states = [f["state"] for key in objects for p in inspect(srv, "rot", key)["parts"] for f in p["fragments"]]
    assert states.count("corrupt") == 1, states
    res = admin(srv, "repair", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 of 1" in res.stdout, res.stdout
    assert victim.read_bytes() != bytes(data)  # rewritten in place, verified
    for key in objects:
        doc = inspect(srv, "rot", key)
        assert doc["health"] == "healthy", doc
        assert all(f["state"] == "ok" for p in doc["parts"] for f in p["fragments"]), doc
    read_back(srv, "rot", objects)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_scrub_counts_bytes_while_verifying_and_parts_while_repairing(srv: ServerProcess) -> None:
    objects = fill(srv, "units", [4 * MiB] * 6)
    victim = fragment_files(srv)[0]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x5A
    victim.write_bytes(data)
    # TTY_COMPATIBLE: rich draws its progress bar into the pipe, as it would on a terminal.
    res = admin(srv, "scrub", "--wait", env={"TTY_COMPATIBLE": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    frames = [ANSI.sub("", f).replace("━", "").strip() for f in re.split(r"[\r\n]", res.stdout)]
    frames = [f for f in frames if f.startswith("scrub ")]
    verifying = [f for f in frames if f.startswith("scrub scrubbing")]
    repairing = [f for f in frames if f.startswith(("scrub repairing", "scrub done "))]
    assert verifying and repairing, frames
    assert not any(re.search(r"\d{4,} parts", f) for f in frames), frames  # bytes never counted as parts
    assert all(re.search(r"\d+(\.\d)? (B|KiB|MiB) / ", f) for f in verifying), verifying
    assert all(re.search(r"\d+ parts / \d+ parts", f) for f in repairing), repairing
    summary = res.stdout.strip().splitlines()[-1]
    assert "1 corrupt" in summary and "1 part(s) repaired" in summary, summary
    assert "0 B verified" not in summary and re.search(r"\d+\.\d MiB verified", summary), summary
    job_id = re.search(r"scrub job ([0-9a-f]+) started", res.stdout)
    assert job_id, res.stdout
    doc = json.loads(admin(srv, "job", job_id.group(1), "--json").stdout)["job"]
    assert doc["unit"] == "parts" and doc["completed"] == doc["total"] == 1, doc
    assert doc["bytes"] >= 6 * 4 * MiB * 6 // 4, doc  # every fragment of every object was verified
    read_back(srv, "units", objects)


def test_status_counts_a_shared_filesystem_once_and_shows_drive_paths(srv: ServerProcess) -> None:
    fs = os.statvfs(srv.drives[0])  # the six drives are directories of one filesystem
    res = admin(srv, "status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    paths = sorted(d["path"] for n in doc["nodes"] for d in n["drives"])
    assert paths == sorted(str(p) for p in srv.drives)
    capacity = fs.f_blocks * fs.f_frsize
    assert doc["capacity"] == capacity, doc  # once, not six times
    assert all(n["capacity"] == capacity for n in doc["nodes"])
    assert 0 < doc["free"] <= capacity
    text = admin(srv, "status")
    assert text.returncode == 0, text.stderr
    assert all(str(p) in text.stdout for p in srv.drives), text.stdout
    human = f"capacity {human_bytes(capacity)}"
    assert human in text.stdout, text.stdout


@pytest.fixture
def small_index(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the index needs root")
    where = tmp_path / "index"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_index_answers_slowdown_and_recovers_when_space_is_freed(tmp_path: Path, small_index: Path) -> None:
    srv = start_server(tmp_path / "server", extra=("--index", str(small_index), "--scrub-interval", "0"))
    try:
        s3 = srv.client(retries={"total_max_attempts": 1})  # each SlowDown seen, not retried away
        s3.create_bucket(Bucket="full")
        filler = fill_up(small_index)
        stored, _ = put_until_refused(s3, "full")
        log = srv.log_text()
        assert "Traceback" not in log and "InternalError" not in log, log[-3000:]
        assert log.count("index full") == 1, log[-3000:]  # one line for the one refused PUT
        for key, body in stored.items():
            assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body, key
        assert s3.list_objects_v2(Bucket="full")["KeyCount"] == len(stored)  # nothing half-written
        filler.unlink()
        s3.put_object(Bucket="full", Key="after", Body=b"room again")
        assert s3.get_object(Bucket="full", Key="after")["Body"].read() == b"room again"
    finally:
        srv.stop()


def _faketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(
        glob.glob("/usr/lib/faketime/libfaketime.so.1")
    )
    return found[0] if found else None


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/health/ready", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _node_live(env: dict[str, str], endpoint: str, node_address: str) -> bool:
    env = {**env, "AWS_ACCESS_KEY_ID": env["TESSERA_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": env["TESSERA_SECRET_KEY"]}
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "admin", "--endpoint", endpoint, "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return next(n["live"] for n in json.loads(res.stdout)["nodes"] if n["address"] == node_address)


# Skews within the 60 s an internal signature is valid for (cluster/auth.py MAX_SKEW): beyond it the services
# refuse the gateway outright, as they should. 45 s behind, the old clock comparison kept a killed node live ~51 s.
@pytest.mark.parametrize("offset", [10, -45])
def test_a_gateway_with_a_skewed_clock_judges_liveness_right(tmp_path: Path, offset: int) -> None:
    lib = _faketime()
    if lib is None:
        pytest.skip("libfaketime is not installed (Debian: apt-get install libfaketime)")
    c = DevCluster(tmp_path / "cluster", nodes=6, metas=1, gateways=0)
    c.start()
    try:
        env = {**c.env, "LD_PRELOAD": lib, "FAKETIME": f"{offset:+d}s"}
        args = ["gateway", "--listen", "127.0.0.1:0", "--meta", c.services["meta1"].hostport, "--ec", "4+2"]
        gateway = launch(args, env, tmp_path / "gateway.log")
        c.services["gateway1"] = Service(
            "gateway1", args, tmp_path / "gateway.log", gateway.endpoint, proc=gateway.proc
        )
        # The gateway's clock really is off: its Date header says so.
        with urllib.request.urlopen(gateway.endpoint + "/health/live", timeout=10) as resp:
            skew = parsedate_to_datetime(resp.headers["Date"]).timestamp() - time.time()
        assert abs(skew - offset) < 3, skew
        deadline = time.monotonic() + 20
        while not _ready(gateway.endpoint):
            assert time.monotonic() < deadline, "a gateway with a skewed clock never became ready"
            time.sleep(0.2)
        s3 = dev_client(c, retries={"max_attempts": 1})
        s3.create_bucket(Bucket="skew")
        s3.put_object(Bucket="skew", Key="k", Body=os.urandom(MiB))
        victim = c.services["node1"]
        assert _node_live(c.env, gateway.endpoint, victim.endpoint)
        c.kill("node1")
        killed = time.monotonic()
        window = LIVENESS_GRACE + HEARTBEAT_EVERY + 2 * REFRESH_EVERY + 3  # the grace, and a beat and look late
        while _node_live(c.env, gateway.endpoint, victim.endpoint):
            assert time.monotonic() - killed < window, f"a killed node still counted live after {window} s"
            time.sleep(0.2)
        assert s3.get_object(Bucket="skew", Key="k")["Body"].read()  # served from the other five
    finally:
        c.stop()  # the gateway too
