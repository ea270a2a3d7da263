"""Object lock through a `tessera dev` cluster whose index is three metadata replicas (ReplicatedIndex behind the
gateways): the boto3 cases of tests/object_lock_cases.py through one gateway, and a lock set through one gateway
enforced by the other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cli.dev import DevCluster
from tests.object_lock_cases import (  # noqa: F401  (collected here)
    DENIED,
    ahead,
    locked_bucket,
    test_governance_bypass,
    test_legal_hold_on_and_off,
    test_lock_configuration,
    test_lock_requests_to_a_bucket_without_lock,
    test_multipart_and_copy_carry_the_lock,
    test_retention_and_legal_hold_per_version,
    test_retention_ends,
    test_veeam_like_flow,
    version_ids,
)
from tests.s3_helpers import dev_client, expect_error, unique


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path_factory.mktemp("objlock"), nodes=6, metas=3, gateways=2)
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


def test_a_lock_set_through_one_gateway_holds_at_the_other(cluster: DevCluster, s3: Any) -> None:
    other = dev_client(cluster, 2)
    name = locked_bucket(s3)
    old = s3.put_object(Bucket=name, Key="k", Body=b"old")["VersionId"]
    new = other.put_object(Bucket=name, Key="k", Body=b"new")["VersionId"]
    s3.put_object_legal_hold(Bucket=name, Key="k", VersionId=old, LegalHold={"Status": "ON"})
    other.put_object_retention(
        Bucket=name, Key="k", VersionId=new, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ahead(3600)}
    )
    expect_error(other.delete_object, *DENIED, Bucket=name, Key="k", VersionId=old)
    expect_error(s3.delete_object, *DENIED, Bucket=name, Key="k", VersionId=new, BypassGovernanceRetention=True)
    assert other.get_object_legal_hold(Bucket=name, Key="k", VersionId=old)["LegalHold"] == {"Status": "ON"}
    assert s3.head_object(Bucket=name, Key="k")["ObjectLockMode"] == "COMPLIANCE"
    assert version_ids(other, name) == [new, old]
    suspend = {"Status": "Suspended"}
    expect_error(other.put_bucket_versioning, "InvalidBucketState", 409, Bucket=name, VersioningConfiguration=suspend)
