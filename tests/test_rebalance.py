"""A cluster that grows: nodes added to a running cluster take new writes, `tessera admin rebalance` spreads
the old data onto them (objects readable throughout, and after two original nodes die), placement refuses
full drives, and `tessera admin node list|remove`.

Every service is its own `tessera` process on loopback, started by `tessera dev`'s DevCluster: six storage
nodes, EC 4+2, one metadata service, one gateway. `tessera admin` runs as a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from cli.launch import tessera_command
from gateway.care.rebalance import plan
from gateway.care.scanner import Listing
from gateway.objects.placement import NodeSlot, full_drives, is_full, place
from metadata.records import ObjectManifest, PartRecord
from storage_node.drive import FragmentId
from tests.s3_helpers import dev_client
from tests.server_process import ACCESS_KEY, SECRET_KEY, start_server
from tests.test_self_healing import admin_call, admin_cli, admin_ok, fragment_files, node_id, read_all, wait_until

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DevCluster]:
    # Moves paced at 2 MB/s, so a rebalance lasts long enough to be interrupted.
    c = DevCluster(tmp_path / "cluster", nodes=6, metas=1, gateways=1, ec="4+2", gateway_args=["--repair-rate", "2"])
    c.start()
    yield c
    c.stop()


def node_bytes(c: DevCluster) -> dict[str, int]:
    """Fragment bytes on each node's drive, by service name."""
    out: dict[str, int] = {}
    for p in fragment_files(c):
        name = p.relative_to(c.data).parts[0]
        out[name] = out.get(name, 0) + p.stat().st_size
    return out


def nodes_doc(c: DevCluster) -> list[dict[str, Any]]:
    return list(admin_call(c, lambda a: a.list_nodes())["nodes"])


def wait_live(c: DevCluster, want: int) -> None:
    wait_until(lambda: sum(n["live"] for n in nodes_doc(c)) == want, 30, f"{want} live nodes")


def test_added_nodes_take_writes_and_rebalance_spreads_data_onto_them(cluster: DevCluster) -> None:
    s3 = dev_client(cluster)
    s3.create_bucket(Bucket="grow")
    s3.put_bucket_versioning(Bucket="grow", VersioningConfiguration={"Status": "Enabled"})
    objects = {f"k{i:02}": os.urandom(512 * KiB + 4099 * i) for i in range(36)}
    old: dict[str, tuple[str, bytes]] = {}  # key -> (version id, bytes) of versions overwritten since
    for key, data in objects.items():
        vid = s3.put_object(Bucket="grow", Key=key, Body=data)["VersionId"]
        if key < "k04":  # noncurrent versions move too
            old[key] = (vid, data)
            objects[key] = os.urandom(400 * KiB + len(key))
            s3.put_object(Bucket="grow", Key=key, Body=objects[key])
    before = node_bytes(cluster)
    assert sorted(before) == [f"node{i}" for i in range(1, 7)], before

    new = [cluster.add_node(), cluster.add_node()]
    wait_live(cluster, 8)
    new_ids = {node_id(cluster, s.name) for s in new}
    # New PUTs use them (rendezvous placement over eight nodes).
    fresh = {f"new{i}": os.urandom(300 * KiB + i) for i in range(8)}
    for key, data in fresh.items():
        s3.put_object(Bucket="grow", Key=key, Body=data)
    assert set(node_bytes(cluster)) >= {s.name for s in new}, "no new PUT placed a fragment on the new nodes"
    objects |= fresh
    total = sum(node_bytes(cluster).values())

    # A rebalance cut short by a gateway restart: the restarted gateway finds it unfinished and resumes it.
    job = admin_call(cluster, lambda a: a.rebalance())["job"]
    cut = wait_until(
        lambda: (j := admin_call(cluster, lambda a: a.job(job["id"]))["job"])["completed"] > 0 and j, 30, "a move"
    )
    cluster.restart("gateway1")
    assert cut["finished"] is None and cut["completed"] < cut["total"], cut

    # A reader checks every object while the rebalance moves fragments under it.
    stop, failures, reads = threading.Event(), [], [0]

    def reader() -> None:
        s3r = dev_client(cluster)
        while not stop.is_set():
            for key, data in objects.items():
                try:
                    got = s3r.get_object(Bucket="grow", Key=key)["Body"].read()
                    if got != data:
                        failures.append(f"{key}: wrong bytes")
                except ClientError as exc:
                    failures.append(f"{key}: {exc}")
                reads[0] += 1

    def resumed_job() -> dict[str, Any] | None:
        jobs = admin_call(cluster, lambda a: a.status())["jobs"]
        return next((j for j in jobs if j["kind"] == "rebalance" and j["finished"] is not None), None)

    t = threading.Thread(target=reader)
    t.start()
    try:
        done = wait_until(resumed_job, 180, "the resumed rebalance to finish")
    finally:
        stop.set()
        t.join()
    assert done["phase"] == "done" and "resumed after a gateway restart" in done["message"], done
    assert done["unit"] == "bytes" and done["completed"] == done["bytes"] > 0, done
    assert not failures and reads[0], (failures[:5], reads[0])

    after = node_bytes(cluster)
    # Each moved fragment's old copy is gone; only a move cut by the restart may have left one behind.
    copies = Counter(fragment_files(cluster).values())
    assert sum(n > 1 for n in copies.values()) <= 2, [f for f, n in copies.items() if n > 1]
    assert sum(after.values()) <= total + 2 * 256 * KiB, (total, after)
    old_zone12 = [after[n] for n in ("node1", "node2", "node4", "node5")]
    for s in new:  # the new nodes share zones 1 and 2 with nodes 1, 2, 4, 5 (zone 3 must keep its own)
        assert after[s.name] >= 0.7 * min(old_zone12), after
    assert max(old_zone12) < max(before[n] for n in ("node1", "node2", "node4", "node5")), (before, after)
    # Run again (as an operator, with the progress bar), it finds nothing left to move.
    again = admin_ok(cluster, "rebalance", "--wait", timeout=120)
    assert "rebalance done" in again.stdout and "0.0 MiB moved" in again.stdout, again.stdout
    assert node_bytes(cluster) == after

    # Two of the original nodes die: every object still reads back byte for byte.
    cluster.kill("node1")
    cluster.kill("node2")
    s3 = dev_client(cluster)
    read_all(s3, "grow", objects)
    for key, (vid, data) in old.items():
        assert s3.get_object(Bucket="grow", Key=key, VersionId=vid)["Body"].read() == data, key
    assert all(n["id"] not in new_ids or n["live"] for n in nodes_doc(cluster))


def test_node_list_and_remove(cluster: DevCluster) -> None:
    s3 = dev_client(cluster)
    s3.create_bucket(Bucket="members")
    s3.put_object(Bucket="members", Key="k", Body=os.urandom(600 * KiB))
    cluster.add_node()
    wait_live(cluster, 7)
    listed = admin_ok(cluster, "node", "list", "--json")
    nodes = json.loads(listed.stdout)["nodes"]
    assert len(nodes) == 7, nodes
    for n in nodes:
        assert {"id", "address", "zone", "state", "drives", "used", "capacity"} <= set(n), n
        assert n["state"] == "active" and n["capacity"] > 0 and 0 < n["used"] <= n["capacity"], n
    table = admin_ok(cluster, "node", "list").stdout
    assert all(n["id"] in table for n in nodes) and "Used / Capacity" in table, table

    new_id, holder = node_id(cluster, "node7"), node_id(cluster, "node1")
    missing = admin_cli(cluster, "node", "remove", "nosuchnode")
    assert missing.returncode == 1 and "NoSuchNode" in missing.stderr, missing
    running = admin_cli(cluster, "node", "remove", new_id)
    assert running.returncode == 1 and "running" in running.stderr and "drain" in running.stderr, running

    cluster.kill("node7")
    cluster.kill("node1")
    wait_live(cluster, 5)
    holding = admin_cli(cluster, "node", "remove", holder)
    assert holding.returncode == 1 and "still holds" in holding.stderr, holding
    assert "removed" in admin_ok(cluster, "node", "remove", new_id).stdout
    ids = {n["id"] for n in nodes_doc(cluster)}
    assert new_id not in ids and holder in ids and len(ids) == 6, ids
    assert s3.get_object(Bucket="members", Key="k")["Body"].read()


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True)
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return run.returncode == 0


def test_placement_skips_full_drives_and_refuses_what_cannot_be_placed(cluster: DevCluster) -> None:
    s3 = dev_client(cluster, retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket="cap")
    tiny = cluster.data / "node7" / "drive1"
    mounted = _mount_tmpfs(tiny, "8m")
    try:
        if mounted:
            # An 8 MiB drive is below the default reserve (--min-free 1000 MB): it takes no fragments.
            cluster.add_node()
            wait_live(cluster, 7)
            for i in range(12):
                s3.put_object(Bucket="cap", Key=f"k{i}", Body=os.urandom(300 * KiB + i))
            assert "node7" not in node_bytes(cluster), node_bytes(cluster)
            cluster.kill("node7")
        # A reserve no drive can keep: nothing can be placed, a PUT answers 503 and stores nothing.
        files = set(fragment_files(cluster))
        gw = cluster.services["gateway1"]
        gw.args += ["--min-free", "1e12"]
        cluster.restart("gateway1")
        s3 = dev_client(cluster, retries={"total_max_attempts": 1})
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket="cap", Key="refused", Body=os.urandom(1 * MiB))
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
        assert "free space" in err.value.response["Error"]["Message"], err.value.response
        assert set(fragment_files(cluster)) == files
        with pytest.raises(ClientError):
            s3.head_object(Bucket="cap", Key="refused")
        # Small objects live in the index, not on drives: they are still taken.
        s3.put_object(Bucket="cap", Key="small", Body=b"x" * 1000)
    finally:
        if mounted:
            cluster.stop()
            subprocess.run(["umount", str(tiny)], check=False)
    if not mounted:
        pytest.skip("the full-drive half needs root to mount a tmpfs; the 503 half ran")


def _listing(placements: dict[str, list[str]], zones: dict[str, str], size: int) -> tuple[list[Any], Listing]:
    """Parts placed so (data id -> drive per fragment; node n has drive dn) and the listing of their fragments."""
    listing = Listing(node_of={f"d{n}": NodeSlot(n, z, (f"d{n}",)) for n, z in zones.items()})
    listing.listed = set(listing.node_of)
    parts = []
    for data_id, placement in placements.items():
        part = PartRecord(0, data_id, size * 2, "", placement, k=1, m=1, segment_size=1 << 20)
        parts.append((ObjectManifest("b", data_id, "v", size * 2, "", 0.0, "", [part]), part))
        for i, d in enumerate(placement):
            listing.present[(d, FragmentId(data_id, 0, i).name)] = (size, 0.0)
    return parts, listing


def test_plan_evens_drives_by_capacity_and_keeps_parts_on_distinct_nodes() -> None:
    size = 1 << 20
    zones = {"a": "z1", "b": "z2", "c": "z3", "d": "z4"}
    placements = {f"{i:032x}": ["da", "db"] for i in range(60)}  # every part on a and b; c and d empty
    parts, listing = _listing(placements, zones, size)
    used = {d: 60 * size if d in ("da", "db") else 0 for d in listing.node_of}
    capacity = {"da": 1.0, "db": 1.0, "dc": 1.0, "dd": 2.0}  # d is twice the size: twice the share
    share = {d: 120 * size * c / 5 for d, c in capacity.items()}
    p = plan(parts, listing, used, share, targets=set(listing.node_of))
    after = dict(used)
    where = {data_id: list(pl) for data_id, pl in placements.items()}
    for m in p.moves:
        assert where[m.data_id][m.index] == m.source, m
        where[m.data_id][m.index] = m.target
        after[m.source] -= m.size
        after[m.target] += m.size
    assert all(len(set(pl)) == 2 for pl in where.values()), "two fragments of a part on one node"
    for d in after:  # each within the tolerance (10% of the mean usage) of its share, a fragment's rounding aside
        assert abs(after[d] / share[d] - 1) <= 0.15, (after, share)
    assert p.uneven == 0 and p.bytes == sum(m.size for m in p.moves) > 0
    empty = plan([], Listing(), dict.fromkeys(used, 0), dict.fromkeys(used, 0.0), set(used))
    assert not empty.moves and empty.uneven == 0


def test_plan_keeps_zones_spread() -> None:
    size = 1 << 20
    # Three zones; parts spread a, b, c. New node d shares zone z1 with a: only a's fragments may go to d.
    zones = {"a": "z1", "b": "z2", "c": "z3", "d": "z1"}
    placements = {f"{i:032x}": ["da", "db", "dc"] for i in range(30)}
    parts, listing = _listing(placements, zones, size)
    used = {d: 30 * size if d != "dd" else 0 for d in listing.node_of}
    share = dict.fromkeys(used, 90 * size / 4)
    p = plan(parts, listing, used, share, targets=set(listing.node_of))
    assert p.moves and all(m.source == "da" and m.target == "dd" for m in p.moves), p.moves
    assert abs(len(p.moves) - 15) <= 1, len(p.moves)  # a and d end even
    assert p.uneven == 2  # b and c keep their fragments: zone z1 may not hold two of a part


def test_place_puts_full_nodes_last_and_names_their_drives() -> None:
    nodes = [NodeSlot(f"n{i}", f"z{i % 3}", (f"d{i}",), full=i in (0, 1)) for i in range(6)]
    for data_id in (f"{i:032x}" for i in range(20)):
        placement = place(data_id, nodes, 5)
        assert {"d0", "d1"} - set(placement), placement  # four nodes with room, then one full one
        assert set(placement[:4]) == {"d2", "d3", "d4", "d5"}, placement
    assert full_drives(nodes) == {"d0", "d1"}
    assert is_full(100, 9, 10) and not is_full(100, 10, 10) and not is_full(0, 0, 10)


def test_embedded_server_refuses_what_it_cannot_place_and_rebalance(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "server", extra=("--min-free", "1e12", "--scrub-interval", "0"))
    try:
        s3 = srv.client(retries={"total_max_attempts": 1})
        s3.create_bucket(Bucket="full")
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket="full", Key="big", Body=os.urandom(1 * MiB))
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
        assert not list(tmp_path.glob("server/d*/fragments/*/*"))
        assert s3.list_objects_v2(Bucket="full")["KeyCount"] == 0
        env = {k: v for k, v in srv.env.items() if not k.startswith(("AWS_", "TESSERA_"))}
        env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        cmd = [*tessera_command(), "admin", "--endpoint", srv.endpoint, "rebalance"]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and "needs a cluster" in run.stderr, run
    finally:
        srv.stop()
