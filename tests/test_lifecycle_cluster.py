"""Lifecycle rules through a `tessera dev` cluster (three metadata replicas, two gateways, `--lifecycle-day 1`): the
cases of tests/lifecycle_cases.py through gateway 1, and one gateway at a time applying the rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli.dev import DevCluster
from tests.lifecycle_cases import (  # noqa: F401  (collected here)
    Settle,
    configure,
    keys,
    rule,
    test_background_worker_applies_rules_by_itself,
    test_bad_configurations_are_refused,
    test_expiration_header_on_put_get_head_copy_and_complete,
    test_expiration_takes_exactly_what_the_filter_names,
    test_incomplete_uploads_are_aborted,
    test_locked_versions_are_never_removed,
    test_versioned_expiration_noncurrent_and_markers,
)
from tests.s3_helpers import dev_client, unique


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(
        tmp_path_factory.mktemp("lifecycle"), nodes=6, metas=3, gateways=2, gateway_args=["--lifecycle-day", "1"]
    )
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(cluster: DevCluster) -> Any:
    return dev_client(cluster, 1)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique()
    s3.create_bucket(Bucket=name)
    return name


def admin(cluster: DevCluster, gateway: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": cluster.env["TESSERA_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": cluster.env["TESSERA_SECRET_KEY"],
        "COLUMNS": "200",
    }
    cmd = [sys.executable, "-m", "cli.main", "admin", "--endpoint", cluster.endpoint(gateway), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def settle(cluster: DevCluster) -> Settle:
    def run(bucket: str) -> str:
        res = admin(cluster, 1, "lifecycle", "run", bucket, "--wait")
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    return run


def _lifecycle_counters(cluster: DevCluster, gateway: int) -> dict[str, Any]:
    res = admin(cluster, gateway, "status", "--json")
    assert res.returncode == 0, res.stderr
    worker = next(w for w in json.loads(res.stdout)["workers"] if w["name"] == "lifecycle")
    return worker["counters"]


def test_one_gateway_at_a_time_applies_the_rules(cluster: DevCluster, s3: Any, bucket: str) -> None:
    for i in range(10):
        s3.put_object(Bucket=bucket, Key=f"one/{i}", Body=b"x")
    configure(s3, bucket, rule("one", Filter={"Prefix": "one/"}, Expiration={"Days": 1}))
    deadline = time.monotonic() + 30
    while keys(s3, bucket):
        assert time.monotonic() < deadline, "the rule was never applied"
        time.sleep(0.25)
    passes = [_lifecycle_counters(cluster, g)["passes"] for g in (1, 2)]
    assert sorted(p > 0 for p in passes) == [False, True], passes  # the lease's holder only
