"""Object lock through a `tessera dev` cluster whose index is three metadata replicas (ReplicatedIndex behind the
gateways): the boto3 cases of tests/object_lock_cases.py through one gateway, and a lock set through one gateway
enforced by the other."""

from __future__ import annotations

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
from tests.s3_helpers import dev_client, expect_error


@pytest.fixture
def cluster(replicated_cluster: DevCluster) -> DevCluster:
    return replicated_cluster  # tests/shared_clusters.py: one cluster for the modules that leave it alone


@pytest.fixture
def s3(replicated_s3: Any) -> Any:
    return replicated_s3


@pytest.fixture
def bucket(replicated_bucket: str) -> str:
    return replicated_bucket


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
