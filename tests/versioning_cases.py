"""Versioning through boto3 (default settings), run against the embedded server (tests/test_versioning.py) and
a `tessera dev` cluster with three metadata replicas (tests/test_versioning_cluster.py): each test takes an
`s3` client and a new `bucket` of its own from the module's fixtures."""

from __future__ import annotations

import hashlib
import heapq
from typing import Any

from tests.s3_helpers import MiB, data, expect_error, unique


def enable(s3: Any, bucket: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def all_versions(s3: Any, bucket: str, **kwargs: Any) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is a delete marker, is latest) of every version, in the order S3 lists them, paginated."""
    out: list[tuple[str, str, bool, bool]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **kwargs):
        # boto3 splits S3's one list in two, each in S3's order: merge them back (key, then newest first).
        entries = heapq.merge(
            [(v, False) for v in page.get("Versions", [])],
            [(d, True) for d in page.get("DeleteMarkers", [])],
            key=lambda e: (e[0]["Key"].encode(), not e[0]["IsLatest"], -e[0]["LastModified"].timestamp()),
        )
        out += [(e["Key"], e["VersionId"], marker, e["IsLatest"]) for e, marker in entries]
    return out


def test_versioning_configuration(s3: Any, bucket: str) -> None:
    got = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in got and "MFADelete" not in got  # never configured: an empty configuration
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    expect_error(
        s3.put_bucket_versioning,
        "IllegalVersioningConfigurationException",
        400,
        Bucket=bucket,
        VersioningConfiguration={"Status": "Disabled"},
    )
    expect_error(
        s3.put_bucket_versioning,
        "NotImplemented",
        501,
        Bucket=bucket,
        VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
        MFA="serial 123456",
    )
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"  # refused: nothing changed
    expect_error(s3.get_bucket_versioning, "NoSuchBucket", 404, Bucket=unique("none"))


def test_versions_put_get_head_delete(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    assert len(set(ids)) == 3
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    for i, vid in enumerate(ids):
        got = s3.get_object(Bucket=bucket, Key="k", VersionId=vid)
        assert (got["Body"].read(), got["VersionId"]) == (f"v{i}".encode(), vid)
        assert s3.head_object(Bucket=bucket, Key="k", VersionId=vid)["ContentLength"] == 2
    # Deleting a version for good: the next newest becomes current.
    resp = s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[2])
    assert resp["VersionId"] == ids[2] and "DeleteMarker" not in resp
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=bucket, Key="k", VersionId=ids[2])
    expect_error(s3.get_object, "InvalidArgument", 400, Bucket=bucket, Key="k", VersionId="not-a-version")
    expect_error(s3.head_object, "400", 400, Bucket=bucket, Key="k", VersionId="not-a-version")
    assert [v[1] for v in all_versions(s3, bucket)] == [ids[1], ids[0]]


def test_delete_markers(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    resp = s3.delete_object(Bucket=bucket, Key="k")
    assert resp["DeleteMarker"] is True
    marker = resp["VersionId"]
    err = expect_error(s3.get_object, "NoSuchKey", 404, Bucket=bucket, Key="k")
    headers = err["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    err = expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")
    assert err["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    err = expect_error(s3.get_object, "MethodNotAllowed", 405, Bucket=bucket, Key="k", VersionId=marker)
    assert err["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert "Contents" not in s3.list_objects(Bucket=bucket)
    assert all_versions(s3, bucket) == [("k", marker, True, True), ("k", v1, False, False)]
    # Removing the marker brings the object back.
    resp = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert resp["DeleteMarker"] is True and resp["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    # A delete of a key that never existed still leaves a marker, as in S3.
    assert s3.delete_object(Bucket=bucket, Key="never")["DeleteMarker"] is True


def test_null_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"before"
    enable(s3, bucket, "Suspended")
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"suspended")["VersionId"] == "null"
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"again")["VersionId"] == "null"  # replaces it
    got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert (got["Body"].read(), got["VersionId"]) == (b"again", "null")
    assert all_versions(s3, bucket, Prefix="k") == [("k", "null", False, True), ("k", v1, False, False)]
    resp = s3.delete_object(Bucket=bucket, Key="k")  # suspended: a null delete marker replaces the null version
    assert (resp["DeleteMarker"], resp["VersionId"]) == (True, "null")
    assert all_versions(s3, bucket, Prefix="k") == [("k", "null", True, True), ("k", v1, False, False)]


def test_copy_and_multipart_versions(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"second")
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1})
    assert resp["CopySourceVersionId"] == v1 and resp["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"first"
    expect_error(
        s3.copy_object,
        "NoSuchVersion",
        404,
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src", "VersionId": "0" * 32},
    )
    marker = s3.delete_object(Bucket=bucket, Key="src")["VersionId"]
    expect_error(
        s3.copy_object,
        "InvalidRequest",
        400,
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src", "VersionId": marker},
    )
    body = data(5 * MiB + 1, seed=1)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    parts = []
    for n, piece in enumerate([body[: 5 * MiB], body[5 * MiB :]], start=1):
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=piece)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    assert done["VersionId"]
    got = s3.get_object(Bucket=bucket, Key="mp", VersionId=done["VersionId"])
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(body).digest()


def test_delete_objects_with_versions(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    a1 = s3.put_object(Bucket=bucket, Key="a", Body=b"1")["VersionId"]
    a2 = s3.put_object(Bucket=bucket, Key="a", Body=b"2")["VersionId"]
    resp = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a", "VersionId": a1}, {"Key": "b"}, {"Key": "a", "VersionId": "bogus"}]},
    )
    deleted = {(d["Key"], d.get("VersionId")): d for d in resp["Deleted"]}
    assert deleted[("a", a1)].get("DeleteMarker") is None
    assert deleted[("b", None)]["DeleteMarker"] is True and deleted[("b", None)]["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in resp["Errors"]] == [("a", "NoSuchVersion")]
    assert all_versions(s3, bucket) == [
        ("a", a2, False, True),
        ("b", deleted[("b", None)]["DeleteMarkerVersionId"], True, True),
    ]


def test_list_object_versions_pages_prefixes_and_encoding(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    expected = []
    for key in ["a", "dir/1", "dir/2", "z\x01"]:
        ids = [s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"] for _ in range(3)]
        expected += [(key, vid) for vid in reversed(ids)]
    got = [(k, v) for k, v, _, _ in all_versions(s3, bucket, PaginationConfig={"PageSize": 2})]
    assert got == expected
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=4)
    assert page["IsTruncated"] and page["NextKeyMarker"] == "dir/1" and page["NextVersionIdMarker"] == expected[3][1]
    page = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/"]
    assert {v["Key"] for v in page["Versions"]} == {"a", "z\x01"}
    page = s3.list_object_versions(Bucket=bucket, KeyMarker="dir/2", EncodingType="url")
    assert page["EncodingType"] == "url" and [v["Key"] for v in page["Versions"]] == ["z%01"] * 3
    expect_error(s3.list_object_versions, "InvalidArgument", 400, Bucket=bucket, VersionIdMarker=expected[0][1])
    expect_error(s3.list_object_versions, "InvalidArgument", 400, Bucket=bucket, KeyMarker="a", VersionIdMarker="x")


def test_bucket_with_versions_is_not_empty_until_purged(s3: Any, bucket: str) -> None:
    """What `rclone purge` does (rclone is not on PyPI; its requests, emulated): read the versioning status, list
    every version, delete them by id in batches, delete the bucket."""
    enable(s3, bucket)
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"y")
        s3.delete_object(Bucket=bucket, Key=f"d/{i}")
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}):
        victims = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
        victims += [{"Key": d["Key"], "VersionId": d["VersionId"]} for d in page.get("DeleteMarkers", [])]
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": victims, "Quiet": True})
        assert not resp.get("Errors")
    assert all_versions(s3, bucket) == []
    s3.delete_bucket(Bucket=bucket)
    expect_error(s3.head_bucket, "404", 404, Bucket=bucket)


def test_tags_and_attributes_of_each_version(s3: Any, bucket: str) -> None:
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one", Tagging="gen=1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"second", Tagging="gen=2")["VersionId"]
    s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "gen", "Value": "old"}]})
    tags = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"]
    assert tags == [{"Key": "gen", "Value": "old"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "gen", "Value": "2"}]
    attrs = s3.get_object_attributes(Bucket=bucket, Key="k", VersionId=v1, ObjectAttributes=["ObjectSize"])
    assert attrs["ObjectSize"] == 3
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"  # data untouched
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == v2
