"""Bucket and user quotas on the embedded server, set as an operator does (`tessera admin`), written through boto3:
the write that would pass a quota is refused (403 QuotaExceeded) before its data is stored, and usage stays exact
across overwrites, deletes, multipart uploads and versions (docs/quotas.md)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3_helpers import data, expect_error, unique
from tests.server_process import ServerProcess
from tests.test_admin_embedded import admin, fragment_files

MiB = 1 << 20


def ok(srv: ServerProcess, *args: str) -> str:
    res = admin(srv, *args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def info(srv: ServerProcess, kind: str, name: str) -> dict[str, Any]:
    return json.loads(ok(srv, kind, "info", name, "--json"))


def usage(srv: ServerProcess, bucket: str) -> tuple[int, int]:
    u = info(srv, "bucket", bucket)["usage"]
    return u["bytes"], u["objects"]


def refused(fn: Any, *args: Any, **kwargs: Any) -> str:
    err = expect_error(fn, "QuotaExceeded", 403, *args, **kwargs)
    return str(err["Error"]["Message"])


def test_size_quota_refuses_the_write_that_would_pass_it(server: ServerProcess, s3: Any, bucket: str) -> None:
    assert "(10000 bytes)" in ok(server, "bucket", "quota", bucket, "--max-size", "10000")
    s3.put_object(Bucket=bucket, Key="a", Body=data(6000))
    before = len(fragment_files(server))
    message = refused(s3.put_object, Bucket=bucket, Key="b", Body=data(5000))
    assert f"Bucket {bucket} quota exceeded" in message and "10000 bytes" in message
    big = 2 * MiB  # past the inline size: its data would go to the drives
    ok(server, "bucket", "quota", bucket, "--max-size", "1MiB")
    refused(s3.put_object, Bucket=bucket, Key="big", Body=data(big))
    assert len(fragment_files(server)) == before  # refused before any fragment was written
    ok(server, "bucket", "quota", bucket, "--max-size", "10000")
    s3.put_object(Bucket=bucket, Key="a", Body=data(9000))  # an overwrite: 9000 in place of 6000 fits
    assert usage(server, bucket) == (9000, 1)
    refused(s3.copy_object, Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "a"})
    s3.delete_object(Bucket=bucket, Key="a")
    assert usage(server, bucket) == (0, 0)
    s3.put_object(Bucket=bucket, Key="b", Body=data(5000))
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "b"})
    assert usage(server, bucket) == (10000, 2)
    ok(server, "bucket", "quota", bucket, "--clear")
    s3.put_object(Bucket=bucket, Key="d", Body=data(5000))
    assert info(server, "bucket", bucket)["quota"] == {"max_size": 0, "max_objects": 0}


def test_object_quota_and_aws_chunked_bodies(server: ServerProcess, s3: Any, s3_chunked: Any, bucket: str) -> None:
    ok(server, "bucket", "quota", bucket, "--max-objects", "2")
    s3.put_object(Bucket=bucket, Key="1", Body=b"x")
    s3_chunked.put_object(Bucket=bucket, Key="2", Body=b"y")
    assert "2 objects" in refused(s3.put_object, Bucket=bucket, Key="3", Body=b"z")
    s3.put_object(Bucket=bucket, Key="2", Body=b"again")  # replaces one: the count stays
    ok(server, "bucket", "quota", bucket, "--max-size", "1000")
    refused(s3_chunked.put_object, Bucket=bucket, Key="1", Body=data(2000))  # the decoded length is checked
    assert usage(server, bucket) == (6, 2)


def test_multipart_checked_at_each_part_and_at_complete(server: ServerProcess, s3: Any, bucket: str) -> None:
    ok(server, "bucket", "quota", bucket, "--max-size", "8MiB")
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(s3.upload_part, Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=data(9 * MiB))
    one = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=data(5 * MiB))["ETag"]
    two = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=data(4 * MiB))["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": one}, {"PartNumber": 2, "ETag": two}]}
    refused(s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    ok(server, "bucket", "quota", bucket, "--max-size", "9MiB")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    assert usage(server, bucket) == (9 * MiB, 1)


def test_every_version_counts_and_delete_markers_do_not(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ok(server, "bucket", "quota", bucket, "--max-size", "250")
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=data(100))["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=data(100))  # a second version: both are kept
    assert usage(server, bucket) == (200, 2)
    refused(s3.put_object, Bucket=bucket, Key="k", Body=data(100))
    s3.delete_object(Bucket=bucket, Key="k")  # a delete marker: never refused, counts nothing
    assert usage(server, bucket) == (200, 2)
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    assert usage(server, bucket) == (100, 1)
    s3.put_object(Bucket=bucket, Key="k", Body=data(100))


def test_user_quota_spans_their_buckets(server: ServerProcess) -> None:
    name = unique("u")
    doc = json.loads(ok(server, "user", "add", name, "--json"))
    user = server.client(doc["access_key"], doc["secret_key"])
    first, second = unique(), unique()
    user.create_bucket(Bucket=first)
    user.create_bucket(Bucket=second)
    ok(server, "user", "quota", name, "--max-size", "1000", "--max-objects", "10")
    user.put_object(Bucket=first, Key="a", Body=data(600))
    message = refused(user.put_object, Bucket=second, Key="b", Body=data(600))
    assert f"User {name} quota exceeded" in message
    user.put_object(Bucket=second, Key="b", Body=data(400))
    got = info(server, "user", name)
    assert got["usage"] == {"bytes": 1000, "objects": 2} and got["quota"]["max_size"] == 1000
    ok(server, "user", "quota", name, "--clear")
    user.put_object(Bucket=second, Key="c", Body=data(600))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("bucket", "quota", "nosuchbucket-q"), "give --max-size"),
        (("bucket", "quota", "nosuchbucket-q", "--max-size", "ten"), "not a size"),
        (("bucket", "quota", "nosuchbucket-q", "--max-size", "1GiB"), "NoSuchBucket"),
        (("bucket", "quota", "nosuchbucket-q", "--max-size", "1", "--clear"), "--clear takes no"),
        (("user", "quota", "nosuchuser-q", "--max-objects", "3"), "NoSuchUser"),
        (("bucket", "info", "nosuchbucket-q"), "NoSuchBucket"),
    ],
)
def test_bad_quota_commands_fail_cleanly(server: ServerProcess, args: tuple[str, ...], fragment: str) -> None:
    res = admin(server, *args)
    assert res.returncode != 0 and fragment in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_concurrent_writes_never_pass_the_quota_together(server: ServerProcess, s3: Any, bucket: str) -> None:
    ok(server, "bucket", "quota", bucket, "--max-size", "10000")

    def put(i: int) -> bool:
        try:
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=data(1000, seed=i))
            return True
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "QuotaExceeded"
            return False

    with ThreadPoolExecutor(10) as pool:
        stored = sum(pool.map(put, range(20)))
    assert 0 < stored <= 10 and usage(server, bucket) == (1000 * stored, stored)  # each admitted write reserved
    for i in range(20, 40):  # one at a time, the bucket fills up exactly
        if not put(i):
            break
    assert usage(server, bucket) == (10000, 10)
