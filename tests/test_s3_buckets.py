"""Bucket operations against a real `tessera server`, with boto3."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.s3_helpers import expect_error, signed_request, unique
from tests.server_process import ServerProcess


def test_create_head_list_delete(s3: Any) -> None:
    name = unique()
    resp = s3.create_bucket(Bucket=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Location"] == "/" + name
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    listed = s3.list_buckets()
    assert name in [b["Name"] for b in listed["Buckets"]]
    assert listed["Owner"]["ID"]
    created = next(b for b in listed["Buckets"] if b["Name"] == name)["CreationDate"]
    assert created.year >= 2024
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect_error(s3.head_bucket, "404", 404, Bucket=name)


def test_list_buckets_sorted(s3: Any) -> None:
    names = sorted(unique("sorted") for _ in range(3))
    for name in reversed(names):
        s3.create_bucket(Bucket=name)
    listed = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert listed == sorted(listed)
    assert [n for n in listed if n in names] == names


def test_list_buckets_paginated(s3: Any) -> None:
    prefix = unique("pg")
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    first = s3.list_buckets(MaxBuckets=2, Prefix=prefix)
    assert [b["Name"] for b in first["Buckets"]] == names[:2]
    assert first["Prefix"] == prefix
    token = first["ContinuationToken"]
    second = s3.list_buckets(MaxBuckets=2, Prefix=prefix, ContinuationToken=token)
    assert [b["Name"] for b in second["Buckets"]] == names[2:4]
    pages = s3.get_paginator("list_buckets").paginate(Prefix=prefix, PaginationConfig={"PageSize": 2})
    walked = [b["Name"] for page in pages for b in page["Buckets"]]
    assert walked == names
    last = s3.list_buckets(MaxBuckets=10, Prefix=prefix)
    assert "ContinuationToken" not in last
    assert [b["Name"] for b in last["Buckets"]] == names
    assert [b["BucketRegion"] for b in last["Buckets"]] == ["us-east-1"] * 5
    assert s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")["Buckets"] == []


@pytest.mark.parametrize("query", ["max-buckets=0", "max-buckets=10001", "max-buckets=x", "continuation-token=%25%25"])
def test_list_buckets_bad_arguments(server: ServerProcess, query: str) -> None:
    resp = signed_request(server, "GET", "/?" + query)
    assert resp.status == 400
    assert resp.error()["Code"] == "InvalidArgument"


def test_recreate_is_already_owned(s3: Any, bucket: str) -> None:
    # In us-east-1 (this server's region) S3 answers the owner's repeated creation with success.
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(bucket) == 1


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "Upper-case",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        ".leading-dot",
        "trailing-dot.",
        "double..dot",
        "dot.-dash",
        "dash-.dot",
        "192.168.5.4",
        "xn--punycode",
        "sthree-bucket",
        "name-s3alias",
        "name--ol-s3",
    ],
)
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    expect_error(s3.create_bucket, "InvalidBucketName", 400, Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("name", ["abc", "a" * 63, "with.dots.ok", "0-digits-9", "a-b.c-d"])
def test_valid_bucket_names(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"v")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def test_delete_non_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    resp = expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=bucket)
    assert resp["Error"]["BucketName"] == bucket
    s3.head_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    expect_error(s3.head_bucket, "404", 404, Bucket=bucket)


def test_delete_with_an_upload_in_progress(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"p" * 100)
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=bucket)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    s3.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload)
    s3.delete_bucket(Bucket=bucket)
    expect_error(s3.head_bucket, "404", 404, Bucket=bucket)


def test_delete_missing_bucket(s3: Any) -> None:
    expect_error(s3.delete_bucket, "NoSuchBucket", 404, Bucket=unique("missing"))


def test_no_such_bucket_on_object_operations(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    missing = unique("missing")
    expect_error(s3.put_object, "NoSuchBucket", 404, Bucket=missing, Key="k", Body=b"x")
    expect_error(s3.get_object, "NoSuchBucket", 404, Bucket=missing, Key="k")
    expect_error(s3.head_object, "404", 404, Bucket=missing, Key="k")
    expect_error(s3.delete_object, "NoSuchBucket", 404, Bucket=missing, Key="k")
    expect_error(s3.delete_objects, "NoSuchBucket", 404, Bucket=missing, Delete={"Objects": [{"Key": "k"}]})
    expect_error(s3.list_objects, "NoSuchBucket", 404, Bucket=missing)
    expect_error(s3.list_objects_v2, "NoSuchBucket", 404, Bucket=missing)
    expect_error(s3.list_multipart_uploads, "NoSuchBucket", 404, Bucket=missing)
    expect_error(s3.create_multipart_upload, "NoSuchBucket", 404, Bucket=missing, Key="k")
    expect_error(s3.get_bucket_location, "NoSuchBucket", 404, Bucket=missing)
    expect_error(s3.copy_object, "NoSuchBucket", 404, Bucket=missing, Key="k", CopySource=f"{bucket}/src")
    expect_error(s3.copy_object, "NoSuchBucket", 404, Bucket=bucket, Key="k", CopySource=f"{missing}/src")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="k")


def test_bucket_location(s3: Any, bucket: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_bucket_location_constraint(s3: Any) -> None:
    """Only the server's own region (us-east-1) is a place to create buckets, as each AWS region's endpoint."""
    name = unique()
    config = {"LocationConstraint": "eu-west-1"}
    expect_error(
        s3.create_bucket, "IllegalLocationConstraintException", 400, Bucket=name, CreateBucketConfiguration=config
    )
    expect_error(s3.head_bucket, "404", 404, Bucket=name)
    s3.create_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None


def test_create_bucket_malformed_configuration(server: ServerProcess) -> None:
    name = unique()
    resp = signed_request(server, "PUT", f"/{name}", body=b"<CreateBucketConfiguration><oops")
    assert resp.status == 400
    assert resp.error()["Code"] == "MalformedXML"
    assert signed_request(server, "HEAD", f"/{name}").status == 404


@pytest.mark.parametrize(
    "call",
    [
        lambda s3, b: s3.get_bucket_lifecycle_configuration(Bucket=b),
        lambda s3, b: s3.get_bucket_website(Bucket=b),
    ],
)
def test_unsupported_subresources(s3: Any, bucket: str, call: Any) -> None:
    s3.put_object(Bucket=bucket, Key="obj", Body=b"keep")
    resp = expect_error(call, "NotImplemented", 501, s3, bucket)
    assert resp["Error"]["Message"]
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"].startswith("application/xml")
    # The request was refused, not misread as a plain object or bucket request.
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"keep"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["obj"]


def test_unsupported_subresource_raw_xml(server: ServerProcess, s3: Any, bucket: str) -> None:
    resp = signed_request(server, "GET", f"/{bucket}?lifecycle")
    assert resp.status == 501
    err = resp.error()
    assert err["Code"] == "NotImplemented"
    assert err["RequestId"] == resp.headers["x-amz-request-id"]


@pytest.mark.parametrize(("method", "target"), [("PATCH", "/{b}/key"), ("PATCH", "/{b}"), ("DELETE", "/")])
def test_method_not_allowed(server: ServerProcess, bucket: str, method: str, target: str) -> None:
    resp = signed_request(server, method, target.format(b=bucket))
    assert (resp.status, resp.error()["Code"]) == (405, "MethodNotAllowed")


def test_anonymous_list_buckets_denied(server: ServerProcess) -> None:
    try:
        urllib.request.urlopen(server.endpoint + "/", timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
        assert b"<Code>AccessDenied</Code>" in exc.read()
    else:
        raise AssertionError("anonymous ListBuckets succeeded")
