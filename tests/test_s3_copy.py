"""CopyObject within and between buckets against a real `tessera server`: metadata directives, conditions, checksums."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from tests.s3_helpers import (
    MiB,
    checksum,
    data,
    expect_error,
    get_body,
    unique,
)

# -- copy -----------------------------------------------------------------------------------------------------


def test_copy_same_bucket_keeps_metadata(s3: Any, bucket: str) -> None:
    body = data(MiB + 5, seed=3)
    s3.put_object(
        Bucket=bucket, Key="src", Body=body, ContentType="image/png", Metadata={"a": "1"}, CacheControl="no-store"
    )
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert resp["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"a": "1"}
    assert got["CacheControl"] == "no-store"
    assert get_body(s3, bucket, "src") == body


def test_copy_other_bucket_replace_metadata(s3: Any, bucket: str) -> None:
    other = unique("copy-dst")
    s3.create_bucket(Bucket=other)
    body = data(3 * MiB + 7, seed=4)
    s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="image/png", Metadata={"a": "1"})
    s3.copy_object(
        Bucket=other,
        Key="dst",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        ContentType="text/csv",
        Metadata={"b": "2"},
        ContentDisposition="inline",
    )
    got = s3.get_object(Bucket=other, Key="dst")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/csv"
    assert got["Metadata"] == {"b": "2"}
    assert got["ContentDisposition"] == "inline"


def test_copy_to_itself(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"me", Metadata={"v": "1"})
    expect_error(s3.copy_object, "InvalidRequest", 400, Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    s3.copy_object(
        Bucket=bucket, Key="self", CopySource=f"{bucket}/self", MetadataDirective="REPLACE", Metadata={"v": "2"}
    )
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"me"
    assert got["Metadata"] == {"v": "2"}


def test_copy_odd_keys_and_empty_object(s3: Any, bucket: str) -> None:
    src = "dir/a b+c%&=?#ü😀.txt"
    s3.put_object(Bucket=bucket, Key=src, Body=b"odd")
    s3.copy_object(Bucket=bucket, Key="dst " + src, CopySource={"Bucket": bucket, "Key": src})
    assert get_body(s3, bucket, "dst " + src) == b"odd"
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    s3.copy_object(Bucket=bucket, Key="empty2", CopySource={"Bucket": bucket, "Key": "empty"})
    assert s3.head_object(Bucket=bucket, Key="empty2")["ContentLength"] == 0


def test_copy_missing_source(s3: Any, bucket: str) -> None:
    expect_error(s3.copy_object, "NoSuchKey", 404, Bucket=bucket, Key="d", CopySource=f"{bucket}/absent")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="d")


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"cond")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    src = f"{bucket}/src"
    other = '"0123456789abcdef0123456789abcdef"'
    failing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": other},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": modified + timedelta(hours=1)},
        {"CopySourceIfUnmodifiedSince": modified - timedelta(hours=1)},
    ]
    for cond in failing:
        expect_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst", CopySource=src, **cond)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="dst")
    passing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": other},
        {"CopySourceIfModifiedSince": modified - timedelta(hours=1)},
        {"CopySourceIfUnmodifiedSince": modified},
    ]
    for cond in passing:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **cond)
    assert get_body(s3, bucket, "dst") == b"cond"


def test_copy_conditional_destination(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"new")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"old")
    expect_error(
        s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", IfNoneMatch="*"
    )
    assert get_body(s3, bucket, "dst") == b"old"


def test_copy_keeps_checksum(s3: Any, bucket: str) -> None:
    body = b"checksummed source"
    s3.put_object(Bucket=bucket, Key="src", Body=body, ChecksumAlgorithm="SHA256")
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    assert resp["CopyObjectResult"]["ChecksumSHA256"] == checksum("SHA256", body)
    got = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == checksum("SHA256", body)


UNSUPPORTED_WRITES: list[dict[str, Any]] = [
    {"ServerSideEncryption": "AES256"},
    {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "some-key"},
    {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
]


@pytest.mark.parametrize("extra", UNSUPPORTED_WRITES)
def test_unsupported_write_features_refused(s3: Any, bucket: str, extra: dict[str, Any]) -> None:
    """Encryption is not implemented: refused, never acknowledged and dropped."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    expect_error(s3.put_object, "NotImplemented", 501, Bucket=bucket, Key="k", Body=b"x", **extra)
    expect_error(s3.copy_object, "NotImplemented", 501, Bucket=bucket, Key="k", CopySource=f"{bucket}/src", **extra)
    expect_error(s3.create_multipart_upload, "NotImplemented", 501, Bucket=bucket, Key="k", **extra)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
