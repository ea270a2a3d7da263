"""Versioning through a `tessera dev` cluster whose index is three metadata replicas (ReplicatedIndex behind
the gateways): the boto3 cases of tests/versioning_cases.py through one gateway, and versions written through
one gateway read, listed and deleted through the other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cli.dev import DevCluster
from tests.s3_helpers import dev_client
from tests.versioning_cases import (  # noqa: F401  (collected here)
    all_versions,
    enable,
    test_bucket_with_versions_is_not_empty_until_purged,
    test_copy_and_multipart_versions,
    test_delete_markers,
    test_delete_objects_with_versions,
    test_list_object_versions_pages_prefixes_and_encoding,
    test_null_version,
    test_tags_and_attributes_of_each_version,
    test_versioning_configuration,
    test_versions_put_get_head_delete,
)


@pytest.fixture
def cluster(replicated_cluster: DevCluster) -> DevCluster:
    return replicated_cluster  # tests/shared_clusters.py: one cluster for the modules that leave it alone


@pytest.fixture
def s3(replicated_s3: Any) -> Any:
    return replicated_s3


@pytest.fixture
def bucket(replicated_bucket: str) -> str:
    return replicated_bucket


def test_racing_writes_through_two_gateways_all_become_versions(cluster: DevCluster, s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    other = dev_client(cluster, 2)
    clients = [s3, other]

    def put(i: int) -> str:
        return str(clients[i % 2].put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode())["VersionId"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(put, range(16)))
    listed = other.list_object_versions(Bucket=bucket)["Versions"]  # in S3's order: newest first
    assert sorted(v["VersionId"] for v in listed) == sorted(ids)  # none lost to the race
    assert [v["IsLatest"] for v in listed] == [True] + [False] * 15
    assert listed[0]["VersionId"] == max(ids)  # the latest stamp wins (an id starts with its time)
    assert other.get_object(Bucket=bucket, Key="k")["VersionId"] == max(ids)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == f"v{ids.index(max(ids))}".encode()
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    assert all_versions(other, bucket)[0] == ("k", marker, True, True)
