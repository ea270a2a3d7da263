"""A real cluster with three metadata replicas (6 storage nodes, 2 gateways) under replica kills and a wipe.

Every service is its own `tessera` process on loopback, started by `tessera dev`'s DevCluster. Writers
go through both gateways while replicas are SIGKILLed, restarted and wiped; every acknowledged object
must read back, and be listed, through either gateway.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from tests.s3_helpers import dev_client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path_factory.mktemp("replicated"), nodes=6, metas=3, gateways=2, anti_entropy_interval=1.0)
    c.start()
    yield c
    c.stop()


def client(c: DevCluster, gateway: int) -> Any:
    return dev_client(c, gateway, retries={"max_attempts": 1})  # no retries: a failed write is a failure


def metric(c: DevCluster, name: str, metric_name: str) -> float:
    with urllib.request.urlopen(c.services[name].endpoint + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{metric_name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


def wait_in_sync(c: DevCluster, name: str, timeout: float = 120) -> None:
    """Until the replica is initialized (a wiped one has pulled all from both peers) and has completed
    two anti-entropy rounds since this call (so it has pulled all its peers held when the first began)."""
    deadline = time.monotonic() + timeout
    start = metric(c, name, "tessera_meta_antientropy_rounds_total")
    while time.monotonic() < deadline:
        rounds = metric(c, name, "tessera_meta_antientropy_rounds_total")
        if metric(c, name, "tessera_meta_replica_initialized") == 1 and rounds >= start + 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not catch up with its peers")


class Writers:
    """Threads writing new objects through both gateways until stopped; they record what was acknowledged."""

    def __init__(self, c: DevCluster, bucket: str, tag: str, per_gateway: int = 2) -> None:
        self.acked: dict[str, bytes] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(c, g, bucket, f"{tag}-g{g}-w{w}"))
            for g in (1, 2)
            for w in range(per_gateway)
        ]
        for t in self._threads:
            t.start()

    def _run(self, c: DevCluster, gateway: int, bucket: str, prefix: str) -> None:
        s3 = client(c, gateway)
        i = 0
        while not self._stop.is_set():
            key, data = f"{prefix}-{i:05}", os.urandom(1000 + i)
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=data)
                with self._lock:
                    self.acked[key] = data
            except Exception as exc:  # any failure, not only S3 errors: the thread must keep its record
                self.errors.append(f"{key}: {exc!r}")
            i += 1

    def halt(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def stop(self) -> dict[str, bytes]:
        self.halt()
        assert not self.errors, self.errors[:5]
        assert self.acked
        return self.acked


def check_all(c: DevCluster, bucket: str, objects: dict[str, bytes]) -> None:
    for g in (1, 2):
        s3 = client(c, g)
        listed: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            listed |= {o["Key"] for o in page.get("Contents", [])}
        missing = set(objects) - listed
        assert not missing, f"gateway{g} does not list {sorted(missing)[:5]}"

        def read(item: tuple[str, bytes], s3: Any = s3, g: int = g) -> None:
            got = s3.get_object(Bucket=bucket, Key=item[0])["Body"].read()
            assert hashlib.sha256(got).digest() == hashlib.sha256(item[1]).digest(), (g, item[0])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(read, objects.items()))


def test_racing_bucket_creation_through_two_gateways(cluster: DevCluster) -> None:
    for n in range(3):
        name = f"race-{n}"
        outcomes: list[str] = []

        def create(g: int, name: str = name, outcomes: list[str] = outcomes) -> None:
            try:
                client(cluster, g).create_bucket(Bucket=name)
                outcomes.append("created")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])

        threads = [threading.Thread(target=create, args=(g,)) for g in (1, 2, 1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # In us-east-1 the owner's repeated creation succeeds (as in S3); the index keeps one bucket.
        assert outcomes == ["created"] * 4, outcomes
        assert [b["Name"] for b in client(cluster, 1).list_buckets()["Buckets"]].count(name) == 1


def test_read_after_write_across_gateways(cluster: DevCluster) -> None:
    a, b = client(cluster, 1), client(cluster, 2)
    a.create_bucket(Bucket="raw")
    b.head_bucket(Bucket="raw")
    for i in range(20):
        key, data = f"k{i}", os.urandom(100 + i)
        a.put_object(Bucket="raw", Key=key, Body=data)
        assert b.get_object(Bucket="raw", Key=key)["Body"].read() == data
        assert key in {o["Key"] for o in b.list_objects_v2(Bucket="raw", Prefix=key)["Contents"]}
        b.delete_object(Bucket="raw", Key=key)
        with pytest.raises(ClientError):
            a.head_object(Bucket="raw", Key=key)


def test_acknowledged_writes_survive_replica_kills_and_a_wipe(cluster: DevCluster) -> None:
    client(cluster, 1).create_bucket(Bucket="survive")
    kept: dict[str, bytes] = {}

    # 1. one replica SIGKILLed while both gateways write
    w = Writers(cluster, "survive", "kill1")
    time.sleep(1.0)
    cluster.kill("meta1")
    time.sleep(3.0)
    kept |= w.stop()
    check_all(cluster, "survive", kept)

    # 2. it comes back and catches up; another one is killed
    cluster.restart("meta1")
    wait_in_sync(cluster, "meta1")
    w = Writers(cluster, "survive", "kill2")
    time.sleep(0.5)
    cluster.kill("meta2")
    time.sleep(2.0)
    kept |= w.stop()
    check_all(cluster, "survive", kept)
    cluster.restart("meta2")
    wait_in_sync(cluster, "meta2")

    # 3. one is wiped and restarted: it rebuilds from its peers; then another is killed
    cluster.kill("meta3")
    shutil.rmtree(cluster.data / "meta3" / "replica")
    cluster.restart("meta3")
    w = Writers(cluster, "survive", "wipe")
    try:
        wait_in_sync(cluster, "meta3")
    finally:
        w.halt()
    kept |= w.stop()
    cluster.kill("meta1")
    check_all(cluster, "survive", kept)
    w = Writers(cluster, "survive", "after")
    time.sleep(1.0)
    kept |= w.stop()
    check_all(cluster, "survive", kept)
    cluster.restart("meta1")
