"""Conditional deletes, If-Match: * on PUT, and the differences from S3 an outside conformance run found
(issue 16), through boto3 with default settings against a real embedded server."""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.error import HTTPError

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.s3_helpers import MiB, expect_error, get_body, signed_request
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess

OTHER_ETAG = '"0123456789abcdef0123456789abcdef"'

# -- conditional deletes ---------------------------------------------------------------------------------------


def test_delete_if_match(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    resp = expect_error(s3.delete_object, "PreconditionFailed", 412, Bucket=bucket, Key="k", IfMatch=OTHER_ETAG)
    assert resp["Error"]["Condition"] == "If-Match"
    assert get_body(s3, bucket, "k") == b"v1"
    assert s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")
    # A conditional delete of a key that is not there is S3's 404 (a plain delete is a 204).
    expect_error(s3.delete_object, "NoSuchKey", 404, Bucket=bucket, Key="k", IfMatch=etag)
    expect_error(s3.delete_object, "NoSuchKey", 404, Bucket=bucket, Key="k", IfMatch="*")
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_if_match_star_and_unquoted(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="star", Body=b"x")["ETag"]
    s3.delete_object(Bucket=bucket, Key="star", IfMatch="*")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="star")
    s3.put_object(Bucket=bucket, Key="bare", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="bare", IfMatch=etag.strip('"'))  # same body, same ETag, unquoted
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="bare")


def test_delete_conditions_not_built_are_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    expect_error(s3.delete_object, "NotImplemented", 501, Bucket=bucket, Key="k", IfMatchSize=1)
    objects = {"Objects": [{"Key": "k", "Size": 1}]}
    expect_error(s3.delete_objects, "NotImplemented", 501, Bucket=bucket, Delete=objects)
    assert get_body(s3, bucket, "k") == b"x"


def test_delete_objects_with_etags(s3: Any, bucket: str) -> None:
    etags = {k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode())["ETag"] for k in ("a", "b", "c", "d")}
    objects = [
        {"Key": "a", "ETag": etags["a"]},
        {"Key": "b", "ETag": OTHER_ETAG},
        {"Key": "c"},
        {"Key": "ghost", "ETag": etags["d"]},
        {"Key": "d", "ETag": "*"},
    ]
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["a", "c", "d"]
    assert sorted((e["Key"], e["Code"]) for e in resp["Errors"]) == [
        ("b", "PreconditionFailed"),
        ("ghost", "NoSuchKey"),
    ]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b", "ETag": OTHER_ETAG}], "Quiet": True})
    assert "Deleted" not in quiet and [e["Code"] for e in quiet["Errors"]] == ["PreconditionFailed"]


# -- If-Match: * on writes -------------------------------------------------------------------------------------


def test_put_if_match_star(s3: Any, bucket: str) -> None:
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=bucket, Key="new", Body=b"x", IfMatch="*")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="new")
    s3.put_object(Bucket=bucket, Key="new", Body=b"first")
    s3.put_object(Bucket=bucket, Key="new", Body=b"second", IfMatch="*")
    assert get_body(s3, bucket, "new") == b"second"
    # A named ETag on a missing key stays S3's 404.
    expect_error(s3.put_object, "NoSuchKey", 404, Bucket=bucket, Key="other", Body=b"x", IfMatch=OTHER_ETAG)


# -- repeated CompleteMultipartUpload ---------------------------------------------------------------------------


def upload_two_parts(s3: Any, bucket: str, key: str) -> tuple[str, list[dict[str, Any]]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for n, body in ((1, b"a" * (5 * MiB)), (2, b"b")):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    return up, parts


def test_complete_and_copy_if_match_star(s3: Any, bucket: str) -> None:
    up, parts = upload_two_parts(s3, bucket, "mp*")
    done = {"Parts": parts}
    expect_error(
        s3.complete_multipart_upload, "PreconditionFailed", 412, Bucket=bucket, Key="mp*", UploadId=up,
        MultipartUpload=done, IfMatch="*",
    )  # fmt: skip
    s3.put_object(Bucket=bucket, Key="mp*", Body=b"there now")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp*", UploadId=up, MultipartUpload=done, IfMatch="*")
    assert s3.head_object(Bucket=bucket, Key="mp*")["ContentLength"] == 5 * MiB + 1
    src = f"{bucket}/mp*"
    expect_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="c", CopySource=src, IfMatch="*")
    s3.put_object(Bucket=bucket, Key="c", Body=b"x")
    s3.copy_object(Bucket=bucket, Key="c", CopySource=src, IfMatch="*")
    assert s3.head_object(Bucket=bucket, Key="c")["ContentLength"] == 5 * MiB + 1


def test_repeated_complete_answers_the_same(s3: Any, bucket: str) -> None:
    up, parts = upload_two_parts(s3, bucket, "mp")
    first = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert (again["ETag"], again["Key"], again["Bucket"]) == (first["ETag"], "mp", bucket)
    assert get_body(s3, bucket, "mp") == b"a" * (5 * MiB) + b"b"
    # Once the object is replaced, the upload is gone for good.
    s3.put_object(Bucket=bucket, Key="mp", Body=b"new")
    expect_error(
        s3.complete_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="mp", UploadId=up,
        MultipartUpload={"Parts": parts},
    )  # fmt: skip
    assert get_body(s3, bucket, "mp") == b"new"
    other, _ = upload_two_parts(s3, bucket, "elsewhere")
    expect_error(
        s3.complete_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="mp", UploadId=other,
        MultipartUpload={"Parts": parts},
    )  # fmt: skip


# -- buckets, ranges, encodings, presigned URLs ----------------------------------------------------------------


def test_create_owned_bucket_again_in_us_east_1(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["kept"]  # nothing changed


def test_upload_part_copy_range_past_the_end(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    common = {"Bucket": bucket, "Key": "dst", "UploadId": up, "PartNumber": 1, "CopySource": f"{bucket}/src"}
    expect_error(s3.upload_part_copy, "InvalidRange", 416, CopySourceRange="bytes=0-10", **common)
    expect_error(s3.upload_part_copy, "InvalidRange", 416, CopySourceRange="bytes=10-12", **common)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="dst", UploadId=up)
    s3.upload_part_copy(CopySourceRange="bytes=0-9", **common)


@pytest.mark.parametrize("encoding", ["deflate, gzip", "gzip,br", "identity"])
def test_content_encoding_kept_as_sent(server: ServerProcess, s3: Any, bucket: str, encoding: str) -> None:
    s3.put_object(Bucket=bucket, Key="enc", Body=b"x", ContentEncoding=encoding)
    assert s3.head_object(Bucket=bucket, Key="enc")["ContentEncoding"] == encoding
    assert s3.get_object(Bucket=bucket, Key="enc")["ContentEncoding"] == encoding
    raw = signed_request(server, "GET", f"/{bucket}/enc")
    assert raw.headers["Content-Encoding"] == encoding


def presigned_get(server: ServerProcess, bucket: str, key: str, expires: int) -> str:
    """A SigV4 query-signed GET URL, signed by botocore's own signer (the CRT one refuses a negative expiry)."""
    request = AWSRequest(method="GET", url=f"{server.endpoint}/{bucket}/{key}")
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", expires=expires).add_auth(request)
    url: str = request.url
    return url


def test_presigned_url_with_negative_expiry(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    url = presigned_get(server, bucket, "p", -60)
    assert "X-Amz-Expires=-60" in url
    with pytest.raises(HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 403 and b"<Code>AccessDenied</Code>" in err.value.read()
    with urllib.request.urlopen(presigned_get(server, bucket, "p", 60), timeout=10) as resp:
        assert resp.read() == b"x"
