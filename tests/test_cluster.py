"""A real cluster (1 metadata service, 6 storage nodes, 1 gateway, EC 4+2) under node kills.

Every service is its own `tessera` process on loopback, started by `tessera dev`'s DevCluster.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from tests.s3_helpers import dev_client

MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path_factory.mktemp("cluster"), nodes=6, metas=1, gateways=1)
    c.start()
    yield c
    c.stop()


def client(c: DevCluster, **config: Any) -> Any:
    return dev_client(c, retries={"max_attempts": 1}, **config)


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def put_many(s3: Any, bucket: str, n: int, size: int) -> dict[str, bytes]:
    objects = {f"obj-{i}": os.urandom(size + i) for i in range(n)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def read_all(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key


def node_refuses_unsigned(c: DevCluster, name: str) -> None:
    url = c.services[name].endpoint + "/v1/drives"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 403


def test_cluster_survives_node_kills_and_rejoins(cluster: DevCluster) -> None:
    s3 = client(cluster)
    s3.create_bucket(Bucket="kills")
    healthy = put_many(s3, "kills", 6, 3 * MiB)
    node_refuses_unsigned(cluster, "node1")

    cluster.kill("node1")
    after_one = put_many(s3, "kills", 3, MiB + 5)  # 5 of 6 nodes: still a quorum of k+1
    read_all(s3, "kills", healthy | after_one)

    cluster.kill("node2")
    read_all(s3, "kills", healthy | after_one)  # m = 2 nodes down: every byte still there
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="kills", Key="refused", Body=os.urandom(MiB))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "refused" not in {o["Key"] for o in s3.list_objects_v2(Bucket="kills").get("Contents", [])}

    cluster.restart("node1")
    cluster.restart("node2")

    def put_works() -> bool:
        try:
            s3.put_object(Bucket="kills", Key="after-rejoin", Body=b"back")
            return True
        except ClientError:
            return False

    wait_until(put_works, 30, "the restarted nodes to rejoin")
    read_all(s3, "kills", healthy | after_one | {"after-rejoin": b"back"})


def test_node_killed_during_a_64mib_put(cluster: DevCluster) -> None:
    s3 = client(cluster)
    s3.create_bucket(Bucket="midput")
    data = os.urandom(64 * MiB)
    outcome: dict[str, Any] = {}

    def upload() -> None:
        try:
            s3.put_object(Bucket="midput", Key="big", Body=data)
            outcome["ok"] = True
        except ClientError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=upload)
    t.start()
    wait_until(lambda: _fragments_growing(cluster.data / "node3"), 30, "the PUT to reach node3")
    cluster.kill("node3")
    t.join(timeout=120)
    assert not t.is_alive()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="midput").get("Contents", [])}
    if outcome.get("ok"):
        assert s3.get_object(Bucket="midput", Key="big")["Body"].read() == data
    else:
        assert "big" not in keys
    cluster.restart("node3")


def _fragments_growing(node_dir: Path) -> bool:
    tmp = node_dir / "drive1" / "tmp"
    return any(p.stat().st_size > 0 for p in tmp.glob("*")) if tmp.exists() else False


def test_slow_node_reads_are_hedged(cluster: DevCluster) -> None:
    s3 = client(cluster)
    s3.create_bucket(Bucket="hedge")
    objects = put_many(s3, "hedge", 4, 2 * MiB)
    cluster.kill("node4", signal.SIGSTOP)  # alive to the kernel, silent to everyone else
    try:
        started = time.monotonic()
        read_all(s3, "hedge", objects)
        assert time.monotonic() - started < 60
    finally:
        cluster.kill("node4", signal.SIGCONT)


def test_every_service_reports_health_and_metrics(cluster: DevCluster) -> None:
    for svc in cluster.services.values():
        for path in ("/health/live", "/health/ready"):
            with urllib.request.urlopen(svc.endpoint + path, timeout=10) as resp:
                assert resp.status == 200, (svc.name, path)
        with urllib.request.urlopen(svc.endpoint + "/metrics", timeout=10) as resp:
            text = resp.read()
            assert b"# TYPE" in text, svc.name
            if svc.name.startswith("gateway"):  # repair and GC tallies beside the S3 ones
                assert b"tessera_repaired_bytes_total" in text and b"tessera_gc_bytes_total" in text
