"""Self-healing on a real cluster: repair, automatic repair after the node grace, scrub, GC, drain.

Every service is its own `tessera` process on loopback, started by `tessera dev`'s DevCluster: 7 storage
nodes, EC 4+2, one gateway with short maintenance settings. `tessera admin` runs as a real subprocess
wherever the test is about the command; polls go through gateway.admin.client (a CLI start costs ~1 s).
Every test has a cluster of its own, so one test's damage never reaches another's assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from cli.launch import tessera_command
from gateway.admin.client import AdminClient
from tests.s3_helpers import dev_client

KiB, MiB = 1 << 10, 1 << 20
NODES, WIDTH = 7, 6
NODE_GRACE, GC_GRACE, SCAN_INTERVAL = 3, 2, 3
GATEWAY_ARGS = ["--node-grace", str(NODE_GRACE), "--gc-grace", str(GC_GRACE), "--scan-interval", str(SCAN_INTERVAL)]
NODE_ARGS = ["--scrub-interval", "0"]  # scrub only on demand

# A mixed set: inline (kept in the manifest), single-PUT EC of several sizes, and a multipart object.
INLINE_SIZES = [10 * KiB, 100 * KiB]
EC_SIZES = [200 * KiB, 700 * KiB + 3, 1 * MiB, 1536 * KiB + 1, 2 * MiB + 77, 3 * MiB]
MULTIPART_SIZE, PART_SIZE = 12 * MiB, 5 * MiB


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DevCluster]:
    """A cluster of the test's own; parametrize indirectly with {"metas": 3} or {"gateway_args": [...]} to vary."""
    options = getattr(request, "param", {})
    c = DevCluster(
        tmp_path / "cluster",
        nodes=NODES,
        metas=options.get("metas", 1),
        gateways=1,
        anti_entropy_interval=1.0,
        node_args=list(NODE_ARGS),
        gateway_args=GATEWAY_ARGS + options.get("gateway_args", []),
    )
    c.start()
    yield c
    c.stop()


# -- helpers ------------------------------------------------------------------------------------------


def s3_client(c: DevCluster) -> Any:
    return dev_client(c)


def admin_cli(
    c: DevCluster, *args: str, creds: tuple[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`tessera admin ARGS` as an operator runs it: credentials from the environment, --endpoint the gateway."""
    cmd = [*tessera_command(), "admin", "--endpoint", c.endpoint(), *args]
    return subprocess.run(cmd, env=admin_env(c, creds), capture_output=True, text=True, timeout=timeout)


def admin_env(c: DevCluster, creds: tuple[str, str] | None = None) -> dict[str, str]:
    ak, sk = creds or (c.env["TESSERA_ACCESS_KEY"], c.env["TESSERA_SECRET_KEY"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TESSERA_"))}
    return env | {"AWS_ACCESS_KEY_ID": ak, "AWS_SECRET_ACCESS_KEY": sk}


def admin_ok(c: DevCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    run = admin_cli(c, *args, timeout=timeout)
    assert run.returncode == 0, f"tessera admin {' '.join(args)} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return run


def admin_call(c: DevCluster, call: Callable[[AdminClient], Any]) -> dict[str, Any]:
    """One admin API call in-process (for polls)."""

    async def go() -> dict[str, Any]:
        async with AdminClient(c.endpoint(), c.env["TESSERA_ACCESS_KEY"], c.env["TESSERA_SECRET_KEY"]) as client:
            return await call(client)

    return asyncio.run(go())


def inspect(c: DevCluster, bucket: str, key: str) -> dict[str, Any]:
    return admin_call(c, lambda a: a.inspect(bucket, key))


def wait_until(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def node_id(c: DevCluster, name: str) -> str:
    return str(json.loads((c.data / name / "drive1" / "node.json").read_text())["id"])


def fragment_files(c: DevCluster, name: str = "node*") -> dict[Path, tuple[str, int, int]]:
    """Complete fragment files under the nodes' drives: path -> (data id, part, index)."""
    out = {}
    for p in c.data.glob(f"{name}/drive*/fragments/*/*"):
        data_id, part, index = p.name.split(".")
        out[p] = (data_id, int(part), int(index))
    return out


def write_objects(s3: Any, bucket: str, tag: str = "") -> dict[str, bytes]:
    """The mixed set of objects, written with boto3's defaults; key -> bytes."""
    s3.create_bucket(Bucket=bucket)
    objects: dict[str, bytes] = {}
    for i, size in enumerate(INLINE_SIZES):
        objects[f"{tag}inline-{i}"] = os.urandom(size)
    for i, size in enumerate(EC_SIZES):
        objects[f"{tag}ec-{i}"] = os.urandom(size)
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    key, data = f"{tag}multipart", os.urandom(MULTIPART_SIZE)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for n, off in enumerate(range(0, len(data), PART_SIZE), start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=data[off : off + PART_SIZE])
        parts.append({"PartNumber": n, "ETag": etag["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    objects[key] = data
    return objects


def read_all(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), key


def full_redundancy_problems(doc: dict[str, Any], avoid: set[str] = frozenset()) -> list[str]:
    """Why an INSPECT document is not at full redundancy (6 ok fragments on 6 distinct nodes, none in avoid)."""
    where = f"{doc['bucket']}/{doc['key']}"
    problems = [] if doc["health"] == "healthy" else [f"{where}: health {doc['health']}"]
    for p in doc["parts"]:
        if p["inline"]:
            continue
        frags = p["fragments"]
        nodes = [f["node"] for f in frags]
        if p["healthy"] != WIDTH or any(f["state"] != "ok" for f in frags):
            problems.append(f"{where} part {p['number']}: {[(f['index'], f['state']) for f in frags]}")
        if len(set(nodes)) != WIDTH or "" in nodes:
            problems.append(f"{where} part {p['number']}: fragments on nodes {nodes}")
        if avoid & set(nodes):
            problems.append(f"{where} part {p['number']}: fragments still on {sorted(avoid & set(nodes))}")
    return problems


def all_full(c: DevCluster, bucket: str, keys: Any, avoid: set[str] = frozenset()) -> list[str]:
    problems: list[str] = []
    for key in keys:
        problems += full_redundancy_problems(inspect(c, bucket, key), avoid)
    return problems


def wait_full(c: DevCluster, bucket: str, keys: Any, timeout: float, avoid: set[str] = frozenset()) -> None:
    last: list[str] = []

    def done() -> bool:
        nonlocal last
        last = all_full(c, bucket, keys, avoid)
        return not last

    try:
        wait_until(done, timeout, "full redundancy", every=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still: {last[:6]}") from None


def live_parts(c: DevCluster, bucket: str, keys: Any) -> set[tuple[str, int]]:
    """(data id, part number) of every part of these objects that lives on drives."""
    out = set()
    for key in keys:
        out |= {(p["data_id"], p["number"]) for p in inspect(c, bucket, key)["parts"] if not p["inline"]}
    return out


def parts_on_disk(c: DevCluster) -> set[tuple[str, int]]:
    return {(v[0], v[1]) for v in fragment_files(c).values()}


def old_node_past_grace(c: DevCluster, nid: str) -> bool:
    doc = admin_call(c, lambda a: a.status())
    node = next(n for n in doc["nodes"] if n["id"] == nid)
    return not node["live"] and time.time() - node["last_seen"] > doc["node_grace"] + 1


# -- tests ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_node_id", [True, False], ids=["new-drives", "new-node"])
def test_wiped_node_is_repaired_by_admin_repair(cluster: DevCluster, keep_node_id: bool) -> None:
    s3 = s3_client(cluster)
    objects = write_objects(s3, "wiped")
    victim = "node3"
    assert fragment_files(cluster, victim), "the victim must hold fragments for the test to mean anything"

    old_id = node_id(cluster, victim)
    cluster.kill(victim)
    drive = cluster.data / victim / "drive1"
    for entry in drive.iterdir():
        if keep_node_id and entry.name == "node.json":
            continue  # the node keeps its identity; its drive is new
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    cluster.restart(victim)
    assert not fragment_files(cluster, victim)
    if not keep_node_id:
        # A new node took the address; the old one is just silent, and may come back until its grace is up.
        assert node_id(cluster, victim) != old_id
        wait_until(lambda: old_node_past_grace(cluster, old_id), 30, "the old node to be silent past its grace")

    run = admin_ok(cluster, "repair", "--wait", timeout=120)
    assert "repair done" in run.stdout, run.stdout

    for key in objects:
        doc = json.loads(admin_ok(cluster, "inspect", f"wiped/{key}", "--json").stdout)
        assert not full_redundancy_problems(doc), full_redundancy_problems(doc)
        if key.startswith("inline"):
            assert all(p["inline"] and not p["fragments"] for p in doc["parts"])
        elif key == "multipart":
            assert len(doc["parts"]) == 3

    others = [f"node{i}" for i in range(1, NODES + 1) if f"node{i}" != victim]
    for name in random.sample(others, 2):
        cluster.kill(name)
    read_all(s3, "wiped", objects)


@pytest.mark.parametrize("cluster", [{"metas": 1}, {"metas": 3}], indirect=True, ids=["1-meta", "3-meta"])
def test_lost_node_is_repaired_automatically_after_the_grace(cluster: DevCluster) -> None:
    s3 = s3_client(cluster)
    objects = write_objects(s3, "auto")
    victim = "node5"
    gone = node_id(cluster, victim)
    assert fragment_files(cluster, victim)
    cluster.kill(victim)
    # No admin command: the gateway sees the node silent past its grace and rebuilds elsewhere.
    wait_full(cluster, "auto", objects, timeout=60, avoid={gone})
    status = admin_call(cluster, lambda a: a.status())
    assert status["repair"]["repaired_parts"] > 0
    assert not [j for j in status["jobs"]], "no admin job was started"
    read_all(s3, "auto", objects)


def test_bit_rot_is_found_by_scrub_and_repaired(cluster: DevCluster) -> None:
    s3 = s3_client(cluster)
    objects = write_objects(s3, "rot")
    rng = random.Random(7)
    # One fragment of three EC objects, two of the multipart object's first part (m = 2: still readable).
    targets: list[tuple[str, int, int]] = []
    for key in ("ec-0", "ec-3", "ec-5"):
        part = inspect(cluster, "rot", key)["parts"][0]
        targets.append((part["data_id"], part["number"], rng.randrange(WIDTH)))
    part = inspect(cluster, "rot", "multipart")["parts"][0]
    targets += [(part["data_id"], part["number"], i) for i in rng.sample(range(WIDTH), 2)]

    by_id = {v: p for p, v in fragment_files(cluster).items()}
    flipped: dict[Path, bytes] = {}
    for t in targets:
        path = by_id[t]
        raw = bytearray(path.read_bytes())
        for off in (len(raw) // 2, len(raw) - 10):  # payload bytes, away from the header
            raw[off] ^= 0xFF
        path.write_bytes(bytes(raw))
        flipped[path] = bytes(raw)

    run = admin_ok(cluster, "scrub", "--wait", timeout=120)
    found = re.search(r"(\d+) corrupt fragment\(s\) found", run.stdout)
    assert found, run.stdout
    assert int(found.group(1)) == len(targets), run.stdout
    jobs = [j for j in admin_call(cluster, lambda a: a.status())["jobs"] if j["kind"] == "scrub"]
    assert jobs and jobs[0]["phase"] == "done" and jobs[0]["failed"] == 0, jobs

    for key in objects:
        doc = inspect(cluster, "rot", key)  # inspect verifies every chunk of every fragment
        assert not full_redundancy_problems(doc), full_redundancy_problems(doc)
    for path, bad in flipped.items():
        assert not path.exists() or path.read_bytes() != bad, f"{path} still holds the flipped bytes"
    read_all(s3, "rot", objects)


def test_garbage_is_collected(cluster: DevCluster) -> None:
    s3 = s3_client(cluster)
    objects = write_objects(s3, "gcb")
    objects |= {f"more-{i}": os.urandom(400 * KiB + i) for i in range(6)}
    for key in [k for k in objects if k.startswith("more-")]:
        s3.put_object(Bucket="gcb", Key=key, Body=objects[key])
    before = fragment_files(cluster)
    total_before = sum(p.stat().st_size for p in before)

    keys = sorted(objects)
    deleted = keys[::2]
    kept = {k: v for k, v in objects.items() if k not in deleted}
    for key in deleted:
        s3.delete_object(Bucket="gcb", Key=key)
    overwritten = next(k for k in kept if k.startswith("ec-"))
    kept[overwritten] = os.urandom(300 * KiB)
    s3.put_object(Bucket="gcb", Key=overwritten, Body=kept[overwritten])

    # An orphan: a copy of a fragment under a fresh data id, old enough to be collected.
    src = next(p for p, v in fragment_files(cluster).items() if v[:2] in live_parts(cluster, "gcb", kept))
    orphan_id = uuid.uuid4().hex
    orphan = src.parent.parent / orphan_id[:2] / f"{orphan_id}.0.0"
    orphan.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, orphan)
    old = time.time() - 3600
    os.utime(orphan, (old, old))

    # An aborted multipart upload.
    upload = s3.create_multipart_upload(Bucket="gcb", Key="aborted")["UploadId"]
    for n in (1, 2):
        s3.upload_part(Bucket="gcb", Key="aborted", UploadId=upload, PartNumber=n, Body=os.urandom(PART_SIZE))
    s3.abort_multipart_upload(Bucket="gcb", Key="aborted", UploadId=upload)

    live = live_parts(cluster, "gcb", kept)
    wait_until(lambda: parts_on_disk(cluster) == live, GC_GRACE + SCAN_INTERVAL + 20, "garbage to be collected")
    assert not orphan.exists()
    after = fragment_files(cluster)
    assert len(after) == WIDTH * len(live)
    # What is left is the kept objects' share of what was there (plus the overwrite's new fragments).
    new = {p: v for p, v in after.items() if p not in before}
    assert {v[:2] for v in new.values()} == live_parts(cluster, "gcb", [overwritten])
    kept_share = sum(p.stat().st_size for p, v in before.items() if p in after)
    assert sum(p.stat().st_size for p in after) == kept_share + sum(p.stat().st_size for p in new)
    assert kept_share < total_before * 0.75
    read_all(s3, "gcb", kept)
    for key in deleted:
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket="gcb", Key=key)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_drain_moves_everything_off_and_retires_the_node(cluster: DevCluster) -> None:
    s3 = s3_client(cluster)
    objects = write_objects(s3, "drain")
    victim = "node2"
    nid = node_id(cluster, victim)
    assert fragment_files(cluster, victim)

    run = admin_ok(cluster, "node", "drain", nid, timeout=120)
    assert "drain done" in run.stdout, run.stdout

    assert not fragment_files(cluster, victim), "the drained node still holds fragments"
    doc = json.loads(admin_ok(cluster, "status", "--json").stdout)
    states = {n["id"]: n["state"] for n in doc["nodes"]}
    assert states[nid] == "retired", states
    assert list(states.values()).count("active") == NODES - 1, states
    assert not all_full(cluster, "drain", objects, avoid={nid})
    read_all(s3, "drain", objects)


# A slow repairer (1 MB/s, one part at a time), so the overwrites and deletes land while the job runs.
SLOW_REPAIR = {"gateway_args": ["--repair-rate", "1", "--repair-concurrency", "1"]}


@pytest.mark.parametrize("cluster", [SLOW_REPAIR], indirect=True, ids=["slow-repair"])
def test_repair_never_resurrects_overwritten_or_deleted_objects(cluster: DevCluster) -> None:
    s3 = s3_client(cluster)
    s3.create_bucket(Bucket="race")
    objects = {f"k{i:02}": os.urandom(256 * KiB + 4099 * i) for i in range(36)}
    for key, data in objects.items():
        s3.put_object(Bucket="race", Key=key, Body=data)
    # Damage a live node (no grace to wait for): most objects are now degraded.
    for p in fragment_files(cluster, "node6"):
        p.unlink()

    keys = sorted(objects)
    overwrite, delete = keys[0::3], keys[1::3]
    expected = dict(objects)
    mutated = threading.Event()
    when: list[float] = []  # wall-clock times of the mutations, to compare with the job's

    def mutate() -> None:
        s3m = s3_client(cluster)
        for a, b in zip(overwrite, delete, strict=True):
            data = os.urandom(200 * KiB + len(a))
            s3m.put_object(Bucket="race", Key=a, Body=data)
            expected[a] = data
            s3m.delete_object(Bucket="race", Key=b)
            expected.pop(b)
            when.append(time.time())
            time.sleep(0.1)
        mutated.set()

    # The job first (the command returns once it has started), then the writes, while the slow job runs.
    started = subprocess.run(
        [*tessera_command(), "admin", "--endpoint", cluster.endpoint(), "repair"],
        env=admin_env(cluster),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    job_id = re.search(r"repair job (\S+) started", started.stdout)
    assert job_id, started.stdout
    writer = threading.Thread(target=mutate)
    writer.start()
    writer.join(timeout=60)
    assert mutated.is_set()

    def finished() -> dict[str, Any] | None:
        job = admin_call(cluster, lambda a: a.job(job_id.group(1)))["job"]
        return job if job["finished"] is not None else None

    job = wait_until(finished, 60, "the repair job")
    assert job["phase"] == "done", job
    assert any(job["started"] < t < job["finished"] for t in when), (job, when)  # they did overlap

    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="race").get("Contents", [])}
    assert listed == set(expected)
    read_all(s3, "race", expected)
    for key in delete:
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="race", Key=key)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # Everything current comes back to full redundancy, and nothing of the old versions stays on disk.
    wait_full(cluster, "race", expected, timeout=60)
    live = live_parts(cluster, "race", expected)
    wait_until(
        lambda: parts_on_disk(cluster) == live,
        GC_GRACE + SCAN_INTERVAL + 20,
        "old versions' fragments to be collected",
    )


def test_admin_cli_errors_against_a_real_gateway(cluster: DevCluster) -> None:
    s3 = s3_client(cluster)
    s3.create_bucket(Bucket="neg")
    run = admin_ok(cluster, "user", "add", "alice")
    ak = re.search(r"Access key: (\S+)", run.stdout)
    sk = re.search(r"Secret key: (\S+)", run.stdout)
    assert ak and sk, run.stdout

    denied = admin_cli(cluster, "status", creds=(ak.group(1), sk.group(1)))
    assert denied.returncode == 1, denied
    assert "AccessDenied" in denied.stderr and "root credentials" in denied.stderr, denied.stderr

    missing = admin_cli(cluster, "inspect", "neg/missing")
    assert missing.returncode == 1, missing
    assert "NoSuchKey" in missing.stderr, missing.stderr

    nonode = admin_cli(cluster, "node", "drain", "nosuchnode")
    assert nonode.returncode == 1, nonode
    assert "NoSuchNode" in nonode.stderr, nonode.stderr
