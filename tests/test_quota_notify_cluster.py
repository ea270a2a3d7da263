"""Quotas and event notifications through a `tessera dev` cluster with two gateways over three metadata replicas
(ReplicatedIndex): usage exact under both gateways writing at once, a quota set through one gateway enforced by
the other, and events delivered once a gateway that delivered them is killed (docs/quotas.md,
docs/notifications.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cli.dev import DevCluster
from tests.s3_helpers import data, dev_client, expect_error, unique
from tests.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path_factory.mktemp("quota"), nodes=6, metas=3, gateways=2)
    c.start()
    yield c
    c.stop()


def admin(c: DevCluster, gateway: int, *args: str) -> Any:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": c.env["TESSERA_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": c.env["TESSERA_SECRET_KEY"],
    }
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "admin", "--endpoint", c.endpoint(gateway), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout) if "--json" in args else res.stdout


def listed_usage(s3: Any, bucket: str, versions: bool = False) -> dict[str, int]:
    if versions:
        page = s3.list_object_versions(Bucket=bucket)
        sizes = [v["Size"] for v in page.get("Versions", [])]
    else:
        sizes = [o["Size"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {"bytes": sum(sizes), "objects": len(sizes)}


@pytest.mark.parametrize("versioned", [False, True])
def test_usage_exact_with_two_gateways_writing_at_once(cluster: DevCluster, versioned: bool) -> None:
    clients = [dev_client(cluster, 1), dev_client(cluster, 2)]
    bucket = unique()
    clients[0].create_bucket(Bucket=bucket)
    if versioned:
        clients[0].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def write(i: int) -> None:
        s3, key = clients[i % 2], f"k{i % 6}"  # the same keys from both gateways: overwrites race
        if i % 5 == 4:
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=data(100 + i, seed=i))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(40)))
    want = listed_usage(clients[1], bucket, versions=versioned)
    assert admin(cluster, 1, "bucket", "info", bucket, "--json")["usage"] == want
    assert admin(cluster, 2, "bucket", "info", bucket, "--json")["usage"] == want


def test_quota_set_through_one_gateway_holds_on_the_other(cluster: DevCluster) -> None:
    one, two = dev_client(cluster, 1), dev_client(cluster, 2)
    bucket = unique()
    one.create_bucket(Bucket=bucket)
    admin(cluster, 1, "bucket", "quota", bucket, "--max-size", "1000")
    two.put_object(Bucket=bucket, Key="a", Body=data(700))
    expect_error(one.put_object, "QuotaExceeded", 403, Bucket=bucket, Key="b", Body=data(400))
    one.put_object(Bucket=bucket, Key="b", Body=data(300))
    expect_error(two.put_object, "QuotaExceeded", 403, Bucket=bucket, Key="c", Body=b"x")
    two.delete_object(Bucket=bucket, Key="a")
    two.put_object(Bucket=bucket, Key="c", Body=data(700))
    assert admin(cluster, 2, "bucket", "info", bucket, "--json")["usage"] == {"bytes": 1000, "objects": 2}


def test_events_through_both_gateways_survive_one_being_killed(cluster: DevCluster) -> None:
    receiver = Receiver()
    receiver.up()
    try:
        one, two = dev_client(cluster, 1), dev_client(cluster, 2)
        bucket = unique()
        one.create_bucket(Bucket=bucket)
        admin(cluster, 1, "notify", "add", "hook", "--webhook", receiver.url)
        rule = {"QueueArn": "arn:tessera:sqs::hook", "Events": ["s3:ObjectCreated:*"]}
        one.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [rule]}
        )
        for i in range(10):
            (one if i % 2 else two).put_object(Bucket=bucket, Key=f"first-{i}", Body=b"x")
        first = {("ObjectCreated:Put", f"first-{i}") for i in range(10)}
        receiver.wait_for("the first events", lambda: receiver.keys() >= first)
        receiver.down()
        for i in range(10):
            two.put_object(Bucket=bucket, Key=f"second-{i}", Body=b"y")
        cluster.kill("gateway1")  # whichever gateway delivered, the queue is in the index
        receiver.up()
        second = {("ObjectCreated:Put", f"second-{i}") for i in range(10)}
        receiver.wait_for("the second events", lambda: receiver.keys() >= second)
        assert receiver.keys() == first | second
        # At least once, but one gateway delivers at a time: no event arrives over and over.
        counts = Counter(r["s3"]["object"]["key"] for r in receiver.got())
        assert max(counts.values()) <= 2, counts
    finally:
        receiver.close()
        cluster.restart("gateway1")
