"""Object lock through boto3 (default settings), run against the embedded server (tests/test_object_lock.py) and a
`tessera dev` cluster with three metadata replicas (tests/test_object_lock_cluster.py): each test takes an `s3`
client and a new, plain `bucket` from the module's fixtures, and makes lock-enabled buckets of its own."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.s3_helpers import MiB, data, expect_error, unique

DENIED = ("AccessDenied", 403)


def locked_bucket(s3: Any, mode: str = "", days: int = 0) -> str:
    name = unique("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    if mode:
        rule = {"DefaultRetention": {"Mode": mode, "Days": days}}
        s3.put_object_lock_configuration(
            Bucket=name, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
        )
    return name


def ahead(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def version_ids(s3: Any, bucket: str) -> list[str]:
    return [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket).get("Versions", [])]


def wait_until(what: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.25)


def test_lock_configuration(s3: Any, bucket: str) -> None:
    name = locked_bucket(s3)
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"  # object lock turns versioning on
    got = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled"}
    for period in ({"Days": 3}, {"Years": 2}):
        rule = {"DefaultRetention": {"Mode": "GOVERNANCE", **period}}
        cfg = {"ObjectLockEnabled": "Enabled", "Rule": rule}
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=cfg)
        assert s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"] == cfg
    bad = [
        ({"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1, "Years": 1}}, "MalformedXML"),
        ({"DefaultRetention": {"Mode": "COMPLIANCE"}}, "MalformedXML"),
        ({"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 0}}, "InvalidArgument"),
        ({"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 101}}, "InvalidArgument"),
        ({}, "MalformedXML"),
    ]
    for rule, code in bad:
        cfg = {"ObjectLockEnabled": "Enabled", "Rule": rule}
        expect_error(s3.put_object_lock_configuration, code, 400, Bucket=name, ObjectLockConfiguration=cfg)
    got = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert got["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Years": 2}  # refusals changed nothing
    suspend = {"Status": "Suspended"}
    expect_error(s3.put_bucket_versioning, "InvalidBucketState", 409, Bucket=name, VersioningConfiguration=suspend)
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"

    # A plain bucket: no configuration; lock can be enabled only once versioning is.
    expect_error(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError", 404, Bucket=bucket)
    enabled = {"ObjectLockEnabled": "Enabled"}
    expect_error(
        s3.put_object_lock_configuration, "InvalidBucketState", 409, Bucket=bucket, ObjectLockConfiguration=enabled
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=enabled)
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == enabled


def test_lock_requests_to_a_bucket_without_lock(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    retention = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": ahead(3600)}
    for extra in (retention, {"ObjectLockLegalHoldStatus": "ON"}):
        expect_error(s3.put_object, "InvalidRequest", 400, Bucket=bucket, Key="k", Body=b"x", **extra)
        src = f"{bucket}/src"
        expect_error(s3.copy_object, "InvalidRequest", 400, Bucket=bucket, Key="k", CopySource=src, **extra)
        expect_error(s3.create_multipart_upload, "InvalidRequest", 400, Bucket=bucket, Key="k", **extra)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")
    expect_error(s3.get_object_retention, "InvalidRequest", 400, Bucket=bucket, Key="src")
    expect_error(s3.get_object_legal_hold, "InvalidRequest", 400, Bucket=bucket, Key="src")
    ret = {"Mode": "GOVERNANCE", "RetainUntilDate": ahead(3600)}
    expect_error(s3.put_object_retention, "InvalidRequest", 400, Bucket=bucket, Key="src", Retention=ret)
    hold = {"Status": "ON"}
    expect_error(s3.put_object_legal_hold, "InvalidRequest", 400, Bucket=bucket, Key="src", LegalHold=hold)


def test_retention_and_legal_hold_per_version(s3: Any, bucket: str) -> None:
    name = locked_bucket(s3)
    until = ahead(3600).replace(microsecond=0)
    first = s3.put_object(
        Bucket=name,
        Key="k",
        Body=b"one",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )["VersionId"]
    head = s3.head_object(Bucket=name, Key="k")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    got = s3.get_object(Bucket=name, Key="k")
    assert got["ObjectLockMode"] == "GOVERNANCE" and got["ObjectLockLegalHoldStatus"] == "ON"
    assert s3.get_object_retention(Bucket=name, Key="k")["Retention"] == {
        "Mode": "GOVERNANCE",
        "RetainUntilDate": until,
    }
    assert s3.get_object_legal_hold(Bucket=name, Key="k")["LegalHold"] == {"Status": "ON"}

    second = s3.put_object(Bucket=name, Key="k", Body=b"two")["VersionId"]  # no lock asked, no default
    assert "ObjectLockMode" not in s3.head_object(Bucket=name, Key="k")
    expect_error(s3.get_object_retention, "NoSuchObjectLockConfiguration", 404, Bucket=name, Key="k")
    expect_error(s3.get_object_legal_hold, "NoSuchObjectLockConfiguration", 404, Bucket=name, Key="k")
    later = until + timedelta(days=1)
    s3.put_object_retention(Bucket=name, Key="k", Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    s3.put_object_legal_hold(Bucket=name, Key="k", VersionId=first, LegalHold={"Status": "OFF"})
    assert s3.get_object_retention(Bucket=name, Key="k", VersionId=second)["Retention"]["Mode"] == "COMPLIANCE"
    assert s3.get_object_legal_hold(Bucket=name, Key="k", VersionId=first)["LegalHold"] == {"Status": "OFF"}
    assert s3.head_object(Bucket=name, Key="k", VersionId=first)["ObjectLockLegalHoldStatus"] == "OFF"
    assert s3.get_object(Bucket=name, Key="k", VersionId=first)["Body"].read() == b"one"  # data untouched
    assert version_ids(s3, name) == [second, first]  # revised in place: no new version

    past = {"Mode": "GOVERNANCE", "RetainUntilDate": ahead(-60)}
    expect_error(s3.put_object_retention, "InvalidArgument", 400, Bucket=name, Key="k", VersionId=first, Retention=past)
    expect_error(
        s3.put_object,
        "InvalidArgument",
        400,
        Bucket=name,
        Key="p",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=ahead(-60),
    )
    unknown = "0" * 32
    expect_error(s3.get_object_retention, "NoSuchVersion", 404, Bucket=name, Key="k", VersionId=unknown)
    expect_error(s3.get_object_legal_hold, "NoSuchKey", 404, Bucket=name, Key="nokey")
    marker = s3.delete_object(Bucket=name, Key="k")["VersionId"]
    hold = {"Status": "ON"}
    expect_error(
        s3.put_object_legal_hold, "MethodNotAllowed", 405, Bucket=name, Key="k", VersionId=marker, LegalHold=hold
    )


def test_veeam_like_flow(s3: Any, bucket: str) -> None:
    """A lock-enabled bucket with a default COMPLIANCE retention of one day: root overwrites (a new version),
    cannot delete the old version by id, with or without a bypass, and still reads every version."""
    name = locked_bucket(s3, "COMPLIANCE", 1)
    old = s3.put_object(Bucket=name, Key="backup/chain.vbk", Body=b"full backup")["VersionId"]
    head = s3.head_object(Bucket=name, Key="backup/chain.vbk")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    left = (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).total_seconds()
    assert 86400 - 120 < left <= 86400
    new = s3.put_object(Bucket=name, Key="backup/chain.vbk", Body=b"incremental")["VersionId"]
    assert new != old and version_ids(s3, name) == [new, old]
    for extra in ({}, {"BypassGovernanceRetention": True}):
        expect_error(s3.delete_object, *DENIED, Bucket=name, Key="backup/chain.vbk", VersionId=old, **extra)
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": ahead(3600)}
    weaker = {"Mode": "GOVERNANCE", "RetainUntilDate": ahead(3 * 86400)}
    for ret in (shorter, weaker):
        kw = {"Bucket": name, "Key": "backup/chain.vbk", "VersionId": old, "Retention": ret}
        expect_error(s3.put_object_retention, *DENIED, BypassGovernanceRetention=True, **kw)
    longer = {"Mode": "COMPLIANCE", "RetainUntilDate": ahead(2 * 86400)}
    s3.put_object_retention(Bucket=name, Key="backup/chain.vbk", VersionId=old, Retention=longer)
    gone = s3.delete_objects(
        Bucket=name,
        Delete={"Objects": [{"Key": "backup/chain.vbk", "VersionId": v} for v in (old, new)] + [{"Key": "other"}]},
    )
    assert sorted(e["VersionId"] for e in gone["Errors"]) == sorted([old, new])
    assert {e["Code"] for e in gone["Errors"]} == {"AccessDenied"}
    assert [d["Key"] for d in gone["Deleted"]] == ["other"]  # a delete marker for a key never written
    marker = s3.delete_object(Bucket=name, Key="backup/chain.vbk")  # allowed: only a delete marker
    assert marker["DeleteMarker"] is True
    expect_error(s3.get_object, "NoSuchKey", 404, Bucket=name, Key="backup/chain.vbk")
    for vid, body in ((old, b"full backup"), (new, b"incremental")):
        assert s3.get_object(Bucket=name, Key="backup/chain.vbk", VersionId=vid)["Body"].read() == body
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=name)


def test_governance_bypass(s3: Any, bucket: str) -> None:
    name = locked_bucket(s3, "GOVERNANCE", 1)
    vid = s3.put_object(Bucket=name, Key="g", Body=b"governed")["VersionId"]
    expect_error(s3.delete_object, *DENIED, Bucket=name, Key="g", VersionId=vid)
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": ahead(600)}
    expect_error(s3.put_object_retention, *DENIED, Bucket=name, Key="g", VersionId=vid, Retention=shorter)
    s3.put_object_retention(Bucket=name, Key="g", VersionId=vid, Retention=shorter, BypassGovernanceRetention=True)
    s3.put_object_retention(Bucket=name, Key="g", VersionId=vid, Retention={}, BypassGovernanceRetention=True)
    expect_error(s3.get_object_retention, "NoSuchObjectLockConfiguration", 404, Bucket=name, Key="g", VersionId=vid)
    other = s3.put_object(Bucket=name, Key="g", Body=b"again")["VersionId"]
    expect_error(s3.delete_object, *DENIED, Bucket=name, Key="g", VersionId=other)
    s3.delete_object(Bucket=name, Key="g", VersionId=other, BypassGovernanceRetention=True)
    s3.delete_object(Bucket=name, Key="g", VersionId=vid)  # its retention was taken off
    assert version_ids(s3, name) == []
    # DeleteObjects: per entry, the same rule.
    third = s3.put_object(Bucket=name, Key="g", Body=b"third")["VersionId"]
    batch = {"Objects": [{"Key": "g", "VersionId": third}]}
    assert s3.delete_objects(Bucket=name, Delete=batch)["Errors"][0]["Code"] == "AccessDenied"
    done = s3.delete_objects(Bucket=name, Delete=batch, BypassGovernanceRetention=True)
    assert [d["VersionId"] for d in done["Deleted"]] == [third] and "Errors" not in done
    assert version_ids(s3, name) == []


def test_legal_hold_on_and_off(s3: Any, bucket: str) -> None:
    name = locked_bucket(s3)
    vid = s3.put_object(Bucket=name, Key="h", Body=b"held", ObjectLockLegalHoldStatus="ON")["VersionId"]
    for extra in ({}, {"BypassGovernanceRetention": True}):  # a legal hold is never bypassed
        expect_error(s3.delete_object, *DENIED, Bucket=name, Key="h", VersionId=vid, **extra)
    s3.put_object_legal_hold(Bucket=name, Key="h", VersionId=vid, LegalHold={"Status": "OFF"})
    s3.put_object_legal_hold(Bucket=name, Key="h", LegalHold={"Status": "ON"})  # the current version
    expect_error(s3.delete_object, *DENIED, Bucket=name, Key="h", VersionId=vid)
    s3.put_object_legal_hold(Bucket=name, Key="h", LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=name, Key="h", VersionId=vid)
    assert version_ids(s3, name) == []


def test_retention_ends(s3: Any, bucket: str) -> None:
    """A version becomes deletable once its retain-until date has passed."""
    name = locked_bucket(s3)
    until = ahead(3)
    vid = s3.put_object(
        Bucket=name, Key="t", Body=b"short", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )["VersionId"]
    expect_error(s3.delete_object, *DENIED, Bucket=name, Key="t", VersionId=vid)

    def deleted() -> bool:
        try:
            s3.delete_object(Bucket=name, Key="t", VersionId=vid)
        except s3.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDenied"
            return False
        return True

    wait_until("the retention to end", deleted)
    assert datetime.now(UTC) >= until - timedelta(seconds=1)  # not before its date (a second for clock rounding)
    assert version_ids(s3, name) == []


def test_multipart_and_copy_carry_the_lock(s3: Any, bucket: str) -> None:
    name = locked_bucket(s3, "GOVERNANCE", 2)
    until = ahead(7200).replace(microsecond=0)
    up = s3.create_multipart_upload(
        Bucket=name,
        Key="mp",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )
    body = data(5 * MiB + 7)
    etag = s3.upload_part(Bucket=name, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=body)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    s3.complete_multipart_upload(Bucket=name, Key="mp", UploadId=up["UploadId"], MultipartUpload=parts)
    head = s3.head_object(Bucket=name, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == (
        "COMPLIANCE",
        until,
        "ON",
    )
    # A copy asks for its own lock; the source's is not copied. Without one it gets the bucket's default.
    s3.copy_object(Bucket=name, Key="c1", CopySource=f"{name}/mp", ObjectLockLegalHoldStatus="ON")
    head = s3.head_object(Bucket=name, Key="c1")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
    left = (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).total_seconds()
    assert 2 * 86400 - 120 < left <= 2 * 86400
    s3.copy_object(
        Bucket=name, Key="c2", CopySource=f"{name}/mp", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )
    head = s3.head_object(Bucket=name, Key="c2")
    assert head["ObjectLockMode"] == "COMPLIANCE" and "ObjectLockLegalHoldStatus" not in head
    assert s3.get_object(Bucket=name, Key="c2")["Body"].read() == body
