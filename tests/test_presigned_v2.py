"""Presigned URLs as aws-cli's `s3 presign` and boto3's default `generate_presigned_url` make them (SigV2)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from tests.server_process import ServerProcess


def _fetch(url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=30)


def _error_code(err: urllib.error.HTTPError) -> str:
    body = err.read().decode()
    return body.split("<Code>", 1)[1].split("</Code>", 1)[0]


@pytest.fixture(scope="module")
def bucket(server: ServerProcess) -> str:
    s3 = server.client()
    s3.create_bucket(Bucket="presign-v2")
    s3.put_object(Bucket="presign-v2", Key="dir/a b+c%.txt", Body=b"signed the old way", ContentType="text/plain")
    return "presign-v2"


def test_boto3_default_presigned_get(server: ServerProcess, bucket: str) -> None:
    url = server.client().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c%.txt"})
    assert "AWSAccessKeyId=" in url and "X-Amz-Signature" not in url  # really SigV2
    with _fetch(url) as resp:
        assert resp.read() == b"signed the old way"


def test_presigned_get_with_response_override(server: ServerProcess, bucket: str) -> None:
    url = server.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "dir/a b+c%.txt", "ResponseContentType": "application/x-test"}
    )
    with _fetch(url) as resp:
        assert resp.headers["Content-Type"] == "application/x-test"


def test_presigned_put_then_read_back(server: ServerProcess, bucket: str) -> None:
    s3 = server.client()
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"})
    with _fetch(url, "PUT", b"sent with plain HTTP", {"Content-Type": ""}) as resp:
        assert resp.status == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"sent with plain HTTP"


def test_aws_cli_presign(server: ServerProcess, bucket: str) -> None:
    url = server.aws("s3", "presign", f"s3://{bucket}/dir/a b+c%.txt").stdout.strip()
    with _fetch(url) as resp:
        assert resp.read() == b"signed the old way"


def test_tampered_and_expired_are_refused(server: ServerProcess, bucket: str) -> None:
    s3 = server.client()
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c%.txt"})
    other = url.replace("/dir/", "/dir2/")
    with pytest.raises(urllib.error.HTTPError) as err:
        _fetch(other)
    assert err.value.code == 403 and _error_code(err.value) == "SignatureDoesNotMatch"

    expired = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c%.txt"}, ExpiresIn=1)
    deadline = time.time() + 10
    while time.time() < deadline:  # wait for the second to pass, bounded
        try:
            _fetch(expired).close()
        except urllib.error.HTTPError as exc:
            assert exc.code == 403 and _error_code(exc) == "AccessDenied"
            break
        time.sleep(0.2)
    else:
        pytest.fail("an expired presigned URL kept working")

    with pytest.raises(urllib.error.HTTPError) as err:
        _fetch(url.replace("AWSAccessKeyId=", "AWSAccessKeyId=NOPE"))
    assert err.value.code == 403 and _error_code(err.value) == "InvalidAccessKeyId"
