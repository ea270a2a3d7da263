"""Faults between hosts, put on the wire by a TCP proxy (tests/netfault.py): a metadata replica cut off
from everyone while clients write, and what it holds once the partition heals. Nothing acknowledged is
lost and no request hangs past its timeout."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from cli.launch import Launched, launch, stop
from metadata import keys
from metadata.replica.client import ReplicaClient
from metadata.replica.merge import Entry
from tests.netfault import FaultNet, Link

MiB = 1 << 20
ACCESS, SECRET = "PARTITIONROOTKEY01", "partition-root-secret-0123"
REQUEST_BOUND = 20.0  # seconds: a request must end within this, partition or not


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Cluster:
    metas: list[Launched] = field(default_factory=list)
    nodes: list[Launched] = field(default_factory=list)
    gateway: Launched | None = None
    links: dict[str, Link] = field(default_factory=dict)  # everything to and from meta3
    node_link: Link | None = None  # everything to node6
    secret: bytes = b""

    def all(self) -> list[Launched]:
        return [*self.metas, *self.nodes, *([self.gateway] if self.gateway else [])]

    def s3(self) -> Any:
        assert self.gateway is not None
        cfg = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=REQUEST_BOUND)
        return boto3.client(
            "s3",
            endpoint_url=self.gateway.endpoint,
            aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            config=cfg,
        )


def _node(data: Path, i: int, port6: int, proxy6: str, meta: str) -> list[str]:
    """Node i's arguments; node6 (i == 5) listens on port6 and everyone reaches it through proxy6."""
    args = ["node", "--data", str(data), "--meta", meta, "--zone", f"z{i % 3}"]
    if i == 5:
        return [*args, "--listen", f"127.0.0.1:{port6}", "--advertise", proxy6]
    return [*args, "--listen", "127.0.0.1:0"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three metadata replicas, six nodes, a gateway. Everyone reaches meta3 only through a proxy, and meta3
    reaches its peers only through proxies: partitioning those links cuts meta3 off from everyone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    secret = secrets.token_urlsafe(32)
    env |= {"TESSERA_CLUSTER_SECRET": secret, "TESSERA_ACCESS_KEY": ACCESS}
    env |= {"TESSERA_SECRET_KEY": SECRET, "PYTHONUNBUFFERED": "1"}
    ports = _free_ports(4)  # three metadata replicas and node6
    c = Cluster(secret=secret.encode())
    with FaultNet() as net:
        to_node6 = c.node_link = net.link("127.0.0.1", ports[3])
        to3 = c.links["to meta3"] = net.link("127.0.0.1", ports[2])
        from3 = [net.link("127.0.0.1", p) for p in ports[:2]]
        c.links["meta3 to meta1"], c.links["meta3 to meta2"] = from3
        seen_by_others = f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]},{to3.address}"
        seen_by_3 = f"{from3[0].address},{from3[1].address},127.0.0.1:{ports[2]}"
        try:
            for i, port in enumerate(ports[:3]):
                peers = seen_by_3 if i == 2 else seen_by_others
                args = ["meta", "--data", str(tmp_path / f"meta{i}"), "--listen", f"127.0.0.1:{port}"]
                args += ["--peers", peers, "--anti-entropy-interval", "1"]
                c.metas.append(launch(args, env, tmp_path / f"meta{i}.log", banner_end="Endpoint:"))
            with ThreadPoolExecutor(6) as pool:
                futures = [
                    pool.submit(
                        launch,
                        _node(tmp_path / f"node{i}", i, ports[3], to_node6.address, seen_by_others),
                        env,
                        tmp_path / f"node{i}.log",
                        None,
                        "Endpoint:",
                    )
                    for i in range(6)
                ]
            c.nodes = [f.result() for f in futures]
            args = ["gateway", "--listen", "127.0.0.1:0", "--meta", seen_by_others, "--ec", "4+2"]
            c.gateway = launch(args, env, tmp_path / "gateway.log")
            yield c
        finally:
            for run in reversed(c.all()):
                stop(run.proc)


def _held_by(cluster: Cluster, replica: int, names: list[str]) -> dict[str, bool]:
    """Whether one replica, asked directly over the replica protocol, holds a live version of each key."""

    async def ask() -> list[Entry | None]:
        client = ReplicaClient(cluster.metas[replica].endpoint, cluster.secret)
        try:
            return await client.get("objects", [keys.composite("parted", n) for n in names])
        finally:
            await client.close()

    entries = asyncio.run(ask())
    return {n: e is not None and not e.tombstone for n, e in zip(names, entries, strict=True)}


def _timed(fn: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.monotonic()
    out = fn(*args, **kwargs)
    took = time.monotonic() - start
    assert took < REQUEST_BOUND, f"{fn.__name__} took {took:.1f}s"
    return out


def test_a_partitioned_metadata_replica_loses_nothing(cluster: Cluster) -> None:
    s3 = cluster.s3()
    s3.create_bucket(Bucket="parted")
    objects = {f"before/{i}": os.urandom(size) for i, size in enumerate([100, 200 * 1024, 3 * MiB + 1])}
    for key, body in objects.items():
        s3.put_object(Bucket="parted", Key=key, Body=body)

    for link in cluster.links.values():  # meta3 is cut off from the gateway, the nodes and its peers
        link.partition()
    for i, size in enumerate([50, 150 * 1024, 2 * MiB + 3, 10, 70 * 1024]):
        key, body = f"during/{i}", os.urandom(size)
        _timed(s3.put_object, Bucket="parted", Key=key, Body=body)  # two of three replicas are a quorum
        objects[key] = body
    _timed(s3.delete_object, Bucket="parted", Key="before/0")
    del objects["before/0"]
    for key, body in objects.items():
        assert _timed(s3.get_object, Bucket="parted", Key=key)["Body"].read() == body
    listed = _timed(s3.list_objects_v2, Bucket="parted")
    assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(objects)

    for link in cluster.links.values():
        link.heal()
    # meta3 catches up by itself (anti-entropy): asked directly, it holds every acknowledged write and the delete.
    deadline = time.monotonic() + 60
    while (held := _held_by(cluster, 2, ["before/0", *objects])) != {"before/0": False, **dict.fromkeys(objects, True)}:
        assert time.monotonic() < deadline, f"meta3 did not catch up: {held}"
        time.sleep(0.2)
    # With meta1 gone, every read needs meta3 in its quorum.
    stop(cluster.metas[0].proc)
    for key, body in objects.items():
        assert _timed(s3.get_object, Bucket="parted", Key=key)["Body"].read() == body
    listed = _timed(s3.list_objects_v2, Bucket="parted")
    assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(objects)


@pytest.mark.parametrize("fault", ["partition", "slow"])
def test_a_partitioned_or_slow_node_holds_up_no_request(cluster: Cluster, fault: str) -> None:
    """PUTs are acknowledged once k+1 fragments are durable (node6's is left to repair after a grace);
    GETs ask a spare fragment when node6's is late. Every answer is right, and none waits past its bound."""
    s3 = cluster.s3()
    s3.create_bucket(Bucket="slow")
    objects = {f"before/{i}": os.urandom(size) for i, size in enumerate([300 * 1024, 3 * MiB + 1])}
    for key, body in objects.items():
        s3.put_object(Bucket="slow", Key=key, Body=body)
    link = cluster.node_link
    assert link is not None
    if fault == "partition":
        link.partition()
    else:
        link.delay(0.5)  # every chunk to or from node6 half a second late
    for i, size in enumerate([250 * 1024, 2 * MiB + 3, 5 * MiB]):
        key, body = f"during/{i}", os.urandom(size)
        _timed(s3.put_object, Bucket="slow", Key=key, Body=body)
        objects[key] = body
    for key, body in objects.items():
        assert _timed(s3.get_object, Bucket="slow", Key=key)["Body"].read() == body
    link.heal()
    for key, body in objects.items():
        assert _timed(s3.get_object, Bucket="slow", Key=key)["Body"].read() == body
