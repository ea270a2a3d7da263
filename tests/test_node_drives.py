"""A cluster node with two --data directories, restarted with them in the other order, then with one
replaced by an empty directory: it keeps working, and repair fills the empty one.

A real cluster on loopback: `tessera dev`'s DevCluster (1 metadata service, 5 one-drive nodes, one
gateway, EC 4+2) and a sixth `tessera node` started here with two drives, so every object has a fragment
on it. Reads with two other nodes stopped need that node's fragment: they show it serves the right bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from cli.launch import launch, stop
from tests.s3_helpers import dev_client
from tests.test_paused_node import repair_to_full_redundancy
from tests.test_self_healing import wait_until

KiB = 1 << 10
OBJECTS = 24  # parts on each of the node's two drives: enough that repair puts some on the new one


class TwoDriveNode:
    """`tessera node` with two drive directories, started and stopped by PID, on one address."""

    def __init__(self, cluster: DevCluster, base: Path) -> None:
        self.cluster = cluster
        self.base = base
        self.drives = [base / "a", base / "b"]
        self.listen = "127.0.0.1:0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, order: list[Path]) -> None:
        meta = self.cluster.services["meta1"].endpoint
        args = ["node", *[a for d in order for a in ("--data", str(d))], "--listen", self.listen, "--meta", meta]
        self.starts += 1
        self.base.mkdir(parents=True, exist_ok=True)
        run = launch(
            [*args, "--zone", "zone3"], self.cluster.env, self.base / f"log{self.starts}", banner_end="Endpoint:"
        )
        self.proc = run.proc
        self.listen = run.endpoint.partition("://")[2]  # a restart comes back on the same address

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def fragments(self, drive: Path) -> list[Path]:
        return [p for p in (drive / "fragments").glob("*/*") if p.is_file()]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[DevCluster, TwoDriveNode]]:
    cluster = DevCluster(tmp_path / "cluster", nodes=5, metas=1, gateways=1, gateway_args=["--scan-interval", "3600"])
    cluster.start()
    node = TwoDriveNode(cluster, tmp_path / "two")
    try:
        node.start(node.drives)
        yield cluster, node
    finally:
        node.stop()
        cluster.stop()


def _put_works(s3: Any) -> bool:
    try:
        s3.put_object(Bucket="drives", Key="probe", Body=os.urandom(200 * KiB))
    except ClientError:
        return False
    return True


def _read_all(s3: Any, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = s3.get_object(Bucket="drives", Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key


def _read_all_without(cluster: DevCluster, s3: Any, objects: dict[str, bytes], names: list[str]) -> None:
    """Read everything with `names` stopped (so the two-drive node's fragments are needed), then restart them."""
    for name in names:
        cluster.kill(name)
    try:
        _read_all(s3, objects)
    finally:
        for name in names:
            cluster.restart(name)


def test_a_node_survives_reordered_and_replaced_data_directories(setup: tuple[DevCluster, TwoDriveNode]) -> None:
    cluster, node = setup
    s3 = dev_client(cluster)
    s3.create_bucket(Bucket="drives")
    wait_until(lambda: _put_works(s3), 60, "six nodes to take writes")
    objects = {f"obj-{i}": os.urandom(200 * KiB + i) for i in range(OBJECTS)}
    for key, data in objects.items():
        s3.put_object(Bucket="drives", Key=key, Body=data)
    a, b = node.drives
    assert node.fragments(a) and node.fragments(b), "both drives must hold fragments for the test to mean anything"
    ids = {d: json.loads((d / "drive.json").read_text())["id"] for d in node.drives}

    # The same directories in the other order: the same node, the same drives, every object readable.
    node.stop()
    node.start([b, a])
    assert {d: json.loads((d / "drive.json").read_text())["id"] for d in node.drives} == ids
    wait_until(lambda: _put_works(s3), 60, "the node to take writes again")
    _read_all_without(cluster, s3, objects, ["node1", "node2"])

    # The first directory replaced by an empty one: still readable (around it), and repair fills it.
    node.stop()
    lost = len(node.fragments(a))
    shutil.rmtree(a)
    a.mkdir()
    node.start([a, b])
    wait_until(lambda: _put_works(s3), 60, "the node to take writes with its new drive")
    _read_all(s3, objects)
    repair_to_full_redundancy(cluster, "drives", objects)
    assert node.fragments(a), f"repair rebuilt none of the {lost} lost fragments on the new drive"
    _read_all_without(cluster, s3, objects, ["node1", "node2"])
