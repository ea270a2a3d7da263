"""Lifecycle rules through boto3 (default settings), run against the embedded server (tests/test_lifecycle.py) and
a `tessera dev` cluster (tests/test_lifecycle_cluster.py). Both run with `--lifecycle-day 1`: a rule's day is a
second. Each test takes an `s3` client and `settle`, which runs a lifecycle pass now and waits for it
(`tessera admin lifecycle run BUCKET --wait`), so that what a pass leaves can be checked exactly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.s3_helpers import expect_error, unique

Settle = Callable[[str], str]
DAY = 1.0  # seconds: the servers' --lifecycle-day


def rule(rule_id: str, **parts: Any) -> dict[str, Any]:
    return {"ID": rule_id, "Status": "Enabled", "Filter": parts.pop("Filter", {}), **parts}


def configure(s3: Any, bucket: str, *rules: dict[str, Any]) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)})


def keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def versions(s3: Any, bucket: str) -> list[tuple[str, str, bool]]:
    """(key, version id, is a delete marker), newest first per key."""
    got = s3.list_object_versions(Bucket=bucket)
    out = [(v["Key"], v["VersionId"], False, v["LastModified"]) for v in got.get("Versions", [])]
    out += [(v["Key"], v["VersionId"], True, v["LastModified"]) for v in got.get("DeleteMarkers", [])]
    return [(k, vid, dm) for k, vid, dm, _ in sorted(out, key=lambda v: (v[0], -v[3].timestamp()))]


def age(days: float = 1.0) -> None:
    """Let `days` lifecycle days pass (and a little more)."""
    time.sleep(days * DAY + 0.3)


def versioned(s3: Any) -> str:
    name = unique("lcv")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_configuration_round_trip(s3: Any, bucket: str) -> None:
    expect_error(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", 404, Bucket=bucket)
    rules = [
        rule("logs", Filter={"Prefix": "logs/"}, Expiration={"Days": 30}),
        rule(
            "big-tmp",
            Filter={"And": {"Prefix": "tmp/", "Tags": [{"Key": "t", "Value": "1"}], "ObjectSizeGreaterThan": 1024}},
            NoncurrentVersionExpiration={"NoncurrentDays": 2, "NewerNoncurrentVersions": 3},
        ),
        rule("markers", Expiration={"ExpiredObjectDeleteMarker": True}),
        {**rule("uploads", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 7}), "Status": "Disabled"},
        rule("on-date", Filter={"ObjectSizeLessThan": 10}, Expiration={"Date": "2030-01-01T00:00:00Z"}),
        {"ID": "legacy", "Status": "Enabled", "Prefix": "old/", "Expiration": {"Days": 9}},
    ]
    configure(s3, bucket, *rules)
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["ID"] for r in got] == [r["ID"] for r in rules]
    assert got[0]["Filter"] == {"Prefix": "logs/"} and got[0]["Expiration"] == {"Days": 30}
    assert got[1]["Filter"]["And"]["Tags"] == [{"Key": "t", "Value": "1"}]
    assert got[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 2, "NewerNoncurrentVersions": 3}
    assert got[2]["Expiration"] == {"ExpiredObjectDeleteMarker": True} and got[3]["Status"] == "Disabled"
    assert got[4]["Expiration"]["Date"].year == 2030
    assert got[5]["Prefix"] == "old/" and "Filter" not in got[5]  # the old form, answered back as given
    s3.delete_bucket_lifecycle(Bucket=bucket)
    expect_error(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", 404, Bucket=bucket)


def test_bad_configurations_are_refused(s3: Any, bucket: str) -> None:
    good = rule("keep", Expiration={"Days": 5})
    configure(s3, bucket, good)
    bad = [
        (rule("a", Expiration={"Days": 0}), "InvalidArgument"),
        (rule("a", NoncurrentVersionExpiration={"NoncurrentDays": 0}), "InvalidArgument"),
        (rule("a", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 0}), "InvalidArgument"),
        (rule("a"), "InvalidArgument"),  # no action
        (rule("a", Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True}), "InvalidArgument"),
        (rule("a", Expiration={"Date": "2030-01-01T12:00:00Z"}), "InvalidArgument"),  # not midnight
        (
            rule("a", Filter={"And": {"ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 5}}, Expiration={"Days": 1}),
            "InvalidArgument",
        ),
        ({**rule("a", Expiration={"Days": 1}), "Status": "On"}, "MalformedXML"),
        ({"ID": "a", "Status": "Enabled", "Expiration": {"Days": 1}}, "MalformedXML"),  # no Filter nor Prefix
        ({**rule("a", Expiration={"Days": 1}), "Prefix": "x/"}, "MalformedXML"),  # both
        ({**rule("a", Expiration={"Days": 1}), "ID": "x" * 256}, "InvalidArgument"),
        (
            rule(
                "a",
                Filter={"Tag": {"Key": "k", "Value": "v"}},
                AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1},
            ),
            "InvalidArgument",
        ),
    ]
    for r, code in bad:
        expect_error(configure, code, 400 if code != "NotImplemented" else 501, s3, bucket, r)
    expect_error(configure, "InvalidArgument", 400, s3, bucket, good, {**good})  # the same ID twice
    transition = rule("t", Transitions=[{"Days": 30, "StorageClass": "GLACIER"}])
    err = expect_error(configure, "NotImplemented", 501, s3, bucket, transition)
    assert "Transition" in err["Error"]["Message"]
    # Nothing refused changed what was there.
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "keep"


def test_expiration_takes_exactly_what_the_filter_names(s3: Any, bucket: str, settle: Settle) -> None:
    tagged = "keep=no"
    puts = {
        "logs/match": (b"x" * 100, tagged),
        "logs/untagged": (b"x" * 100, ""),
        "logs/small": (b"x" * 5, tagged),
        "other/match": (b"x" * 100, tagged),
    }
    for key, (body, tags) in puts.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, Tagging=tags)
    f = {"And": {"Prefix": "logs/", "Tags": [{"Key": "keep", "Value": "no"}], "ObjectSizeGreaterThan": 10}}
    configure(s3, bucket, rule("r", Filter=f, Expiration={"Days": 1}))
    age()
    settle(bucket)
    assert keys(s3, bucket) == {"logs/untagged", "logs/small", "other/match"}


def test_expiration_header_on_put_get_head_copy_and_complete(s3: Any, bucket: str) -> None:
    configure(s3, bucket, rule("far", Filter={"Prefix": "a/"}, Expiration={"Days": 1000}))
    put = s3.put_object(Bucket=bucket, Key="a/1", Body=b"x")
    header = put["ResponseMetadata"]["HTTPHeaders"]["x-amz-expiration"]
    assert header.startswith('expiry-date="') and header.endswith('", rule-id="far"')
    assert s3.head_object(Bucket=bucket, Key="a/1")["Expiration"] == header
    assert s3.get_object(Bucket=bucket, Key="a/1")["Expiration"] == header
    s3.put_object(Bucket=bucket, Key="b/1", Body=b"x")
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="b/1")
    copied = s3.copy_object(Bucket=bucket, Key="a/copy", CopySource={"Bucket": bucket, "Key": "b/1"})
    assert copied["Expiration"].endswith('", rule-id="far"')  # the copy's key is the one a rule names
    assert "Expiration" not in s3.copy_object(Bucket=bucket, Key="b/copy", CopySource={"Bucket": bucket, "Key": "a/1"})
    up = s3.create_multipart_upload(Bucket=bucket, Key="a/mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="a/mp", UploadId=up, PartNumber=1, Body=b"y")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    done = s3.complete_multipart_upload(Bucket=bucket, Key="a/mp", UploadId=up, MultipartUpload=parts)
    assert done["Expiration"] == s3.head_object(Bucket=bucket, Key="a/mp")["Expiration"]


def test_versioned_expiration_noncurrent_and_markers(s3: Any, settle: Settle) -> None:
    name = versioned(s3)
    for i in range(4):
        s3.put_object(Bucket=name, Key="n/k", Body=f"v{i}".encode())
    s3.put_object(Bucket=name, Key="cur/k", Body=b"current")
    s3.put_object(Bucket=name, Key="dm/gone", Body=b"x")
    s3.delete_object(Bucket=name, Key="dm/gone")  # a marker over one version
    s3.put_object(Bucket=name, Key="dm/alone", Body=b"x")
    s3.delete_object(Bucket=name, Key="dm/alone")
    only = [v for k, v, dm in versions(s3, name) if k == "dm/alone" and not dm]
    s3.delete_object(Bucket=name, Key="dm/alone", VersionId=only[0])  # leaves the marker alone
    configure(
        s3,
        name,
        rule(
            "nc",
            Filter={"Prefix": "n/"},
            NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 1},
        ),
        rule("cur", Filter={"Prefix": "cur/"}, Expiration={"Days": 1}),
        rule("dm", Filter={"Prefix": "dm/"}, Expiration={"ExpiredObjectDeleteMarker": True}),
    )
    age()
    settle(name)
    left = versions(s3, name)
    n = [(v, dm) for k, v, dm in left if k == "n/k"]
    assert len(n) == 2 and not any(dm for _, dm in n)  # the current and the one newer noncurrent kept
    assert s3.get_object(Bucket=name, Key="n/k")["Body"].read() == b"v3"
    cur = [dm for k, _, dm in left if k == "cur/k"]
    assert cur == [True, False]  # expired behind a delete marker, its data kept as S3 does
    assert [dm for k, _, dm in left if k == "dm/gone"] == [True, False]  # a marker with a version behind it stays
    assert not [k for k, _, _ in left if k == "dm/alone"]


def test_locked_versions_are_never_removed(s3: Any, settle: Settle) -> None:
    name = unique("lcl")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    held = s3.put_object(Bucket=name, Key="k", Body=b"held")["VersionId"]
    s3.put_object_legal_hold(Bucket=name, Key="k", VersionId=held, LegalHold={"Status": "ON"})
    kept = s3.put_object(
        Bucket=name,
        Key="k",
        Body=b"kept",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=time.time() + 3600,
    )["VersionId"]
    free = s3.put_object(Bucket=name, Key="k", Body=b"free")["VersionId"]
    s3.put_object(Bucket=name, Key="k", Body=b"now")
    configure(s3, name, rule("nc", NoncurrentVersionExpiration={"NoncurrentDays": 1}))
    age()
    out = settle(name)
    left = {v for _, v, _ in versions(s3, name)}
    assert held in left and kept in left and free not in left and len(left) == 3
    assert "2 kept by object lock" in out


def test_incomplete_uploads_are_aborted(s3: Any, bucket: str, settle: Settle) -> None:
    old = s3.create_multipart_upload(Bucket=bucket, Key="up/old")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="up/old", UploadId=old, PartNumber=1, Body=b"x" * 1000)
    other = s3.create_multipart_upload(Bucket=bucket, Key="keep/old")["UploadId"]
    configure(
        s3, bucket, rule("mpu", Filter={"Prefix": "up/"}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1})
    )
    age()
    settle(bucket)
    left = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == [other]
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="up/old", UploadId=old)


def test_background_worker_applies_rules_by_itself(s3: Any, bucket: str) -> None:
    for i in range(30):
        s3.put_object(Bucket=bucket, Key=f"bg/{i:02d}", Body=b"x")
    s3.put_object(Bucket=bucket, Key="stay", Body=b"x")
    configure(s3, bucket, rule("bg", Filter={"Prefix": "bg/"}, Expiration={"Days": 2}))
    deadline = time.monotonic() + 30
    while keys(s3, bucket) != {"stay"}:
        assert time.monotonic() < deadline, f"the worker left {sorted(keys(s3, bucket))[:5]}"
        time.sleep(0.25)
