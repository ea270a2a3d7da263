"""Object operations against a real `tessera server`, with boto3 at its default settings."""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.s3_helpers import (
    MiB,
    checksum,
    data,
    expect_error,
    get_body,
    md5_b64,
    send,
    send_headers_only,
    sign,
    signed_request,
    unique,
)
from tests.server_process import ServerProcess

ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]
ODD_KEYS = [
    "with space",
    "plus+sign",
    "percent%literal",
    "percent%25encoded-looking",
    "hash#tag",
    "question?mark",
    "tilde~",
    "equals=and&ampersand",
    "unicodé/日本語/ключ",
    "emoji😀🎉",
    "dir/sub dir/file name.txt",
    "a/../b",
    "./dot",
    "a//double//slash",
    "/leading-slash",
    "trailing-slash/",
    "semi;colon:colon,comma",
    "quotes'\"and<angle>",
    "brackets[]{}()",
    "caret^`|\\backslash",
    "!$@*",
    "tab\there",
]


# -- put / get / head / delete ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 7])
def test_put_get_sizes(s3: Any, bucket: str, size: int) -> None:
    body = data(size, seed=size)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=body)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["ContentLength"] == size
    assert got["ETag"] == put["ETag"]
    assert got["Body"].read() == body
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]
    assert head["ContentType"] == "binary/octet-stream"
    assert head["AcceptRanges"] == "bytes"
    assert abs(head["LastModified"] - datetime.now(UTC)) < timedelta(minutes=1)


def test_overwrite_and_delete(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    s3.put_object(Bucket=bucket, Key="k", Body=b"two!")
    assert get_body(s3, bucket, "k") == b"two!"
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    resp = expect_error(s3.get_object, "NoSuchKey", 404, Bucket=bucket, Key="k")
    assert resp["Error"]["Key"] == "k"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")
    # Deleting what is not there succeeds, as in S3.
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("change", ["delete", "overwrite"])
def test_read_in_progress_survives_delete_and_overwrite(s3: Any, bucket: str, change: str) -> None:
    body = data(24 * MiB, seed=99)
    s3.put_object(Bucket=bucket, Key="busy", Body=body)
    stream = s3.get_object(Bucket=bucket, Key="busy")["Body"]
    first = stream.read(MiB)
    if change == "delete":
        s3.delete_object(Bucket=bucket, Key="busy")
    else:
        s3.put_object(Bucket=bucket, Key="busy", Body=b"new")
    assert first + stream.read() == body


def test_concurrent_puts_of_distinct_keys(s3: Any, bucket: str) -> None:
    bodies = {f"c/{i}": data(1000 + i, seed=i) for i in range(16)}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), bodies.items()))
    for key, body in bodies.items():
        assert get_body(s3, bucket, key) == body


@pytest.mark.parametrize("size", [0, 100, 3 * MiB + 5])
def test_put_with_http_chunked_transfer_encoding(server: ServerProcess, s3: Any, bucket: str, size: int) -> None:
    # No Content-Length: the body comes in HTTP chunks of odd sizes, each a separate piece to the writer.
    body = data(size, seed=size)
    key = f"te-chunked/{size}"
    signed = sign(server, "PUT", f"/{bucket}/{key}", {"Transfer-Encoding": "chunked"}, payload_hash="UNSIGNED-PAYLOAD")
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        pieces = [body[i : i + 100_003] for i in range(0, size, 100_003)]
        conn.request("PUT", f"/{bucket}/{key}", body=iter(pieces), headers=signed.headers, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()
    assert get_body(s3, bucket, key) == body
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'


def test_put_larger_than_5gib_refused_before_the_body(server: ServerProcess, s3: Any, bucket: str) -> None:
    headers = {"Content-Length": str((5 << 30) + 1)}
    signed = sign(server, "PUT", f"/{bucket}/huge", headers, payload_hash="UNSIGNED-PAYLOAD")
    resp = send_headers_only(server, "PUT", f"/{bucket}/huge", signed.headers)
    assert (resp.status, resp.error()["Code"]) == (400, "EntityTooLarge")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="huge")


# -- ranges -------------------------------------------------------------------------------------------------

RANGE_SIZE = 3 * MiB + 7


@pytest.fixture(scope="module")
def ranged(s3: Any) -> tuple[str, bytes]:
    name = unique("ranges")
    s3.create_bucket(Bucket=name)
    body = data(RANGE_SIZE, seed=7)
    s3.put_object(Bucket=name, Key="big", Body=body)
    return name, body


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=0-0", 0, 0),
        ("bytes=1048570-1048590", 1048570, 1048590),
        ("bytes=1048576-2097151", MiB, 2 * MiB - 1),
        ("bytes=1000-2100000", 1000, 2100000),
        ("bytes=-100", RANGE_SIZE - 100, RANGE_SIZE - 1),
        ("bytes=-1", RANGE_SIZE - 1, RANGE_SIZE - 1),
        (f"bytes=-{RANGE_SIZE + 50}", 0, RANGE_SIZE - 1),
        ("bytes=3145000-", 3145000, RANGE_SIZE - 1),
        (f"bytes={RANGE_SIZE - 1}-", RANGE_SIZE - 1, RANGE_SIZE - 1),
        ("bytes=3145000-99999999", 3145000, RANGE_SIZE - 1),
    ],
)
def test_ranges(s3: Any, ranged: tuple[str, bytes], header: str, start: int, end: int) -> None:
    name, body = ranged
    got = s3.get_object(Bucket=name, Key="big", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/{RANGE_SIZE}"
    assert got["ContentLength"] == end - start + 1
    assert got["Body"].read() == body[start : end + 1]
    head = s3.head_object(Bucket=name, Key="big", Range=header)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == end - start + 1
    assert head["ContentRange"] == f"bytes {start}-{end}/{RANGE_SIZE}"


@pytest.mark.parametrize("header", [f"bytes={RANGE_SIZE}-", f"bytes={RANGE_SIZE + 10}-{RANGE_SIZE + 20}", "bytes=-0"])
def test_range_not_satisfiable(s3: Any, ranged: tuple[str, bytes], header: str) -> None:
    resp = expect_error(s3.get_object, "InvalidRange", 416, Bucket=ranged[0], Key="big", Range=header)
    assert resp["Error"]["ActualObjectSize"] == str(RANGE_SIZE)


def test_range_of_small_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    assert get_body(s3, bucket, "small", Range="bytes=2-4") == b"234"
    assert get_body(s3, bucket, "small", Range="bytes=-3") == b"789"
    assert get_body(s3, bucket, "small", Range="bytes=8-") == b"89"
    expect_error(s3.get_object, "InvalidRange", 416, Bucket=bucket, Key="small", Range="bytes=10-")


def test_unparsable_range_is_whole_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="k", Range="bytes=5-2")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == b"0123456789"


# -- metadata and standard headers ----------------------------------------------------------------------------

EXPIRES = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
STANDARD = {
    "ContentType": "text/plain; charset=utf-8",
    "ContentEncoding": "identity",
    "ContentDisposition": 'attachment; filename="report.txt"',
    "ContentLanguage": "en-GB",
    "CacheControl": "max-age=3600, must-revalidate",
}


def _check_headers(resp: dict[str, Any]) -> None:
    for name, value in STANDARD.items():
        assert resp[name] == value, name
    assert resp["ExpiresString"] == formatdate(EXPIRES.timestamp(), usegmt=True)
    assert resp["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces", "empty": ""}


def test_metadata_and_standard_headers(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="meta",
        Body=b"hi",
        Metadata={"color": "blue", "Mixed-Case": "Value With Spaces", "empty": ""},
        Expires=EXPIRES,
        **STANDARD,
    )
    _check_headers(s3.get_object(Bucket=bucket, Key="meta"))
    _check_headers(s3.head_object(Bucket=bucket, Key="meta"))


def test_metadata_too_large(s3: Any, bucket: str) -> None:
    expect_error(
        s3.put_object, "MetadataTooLarge", 400, Bucket=bucket, Key="fat", Body=b"x", Metadata={"big": "v" * 2100}
    )
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="fat")


def test_response_overrides_signedget_body(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"abc", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/x-override",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
    )
    assert got["ContentType"] == "application/x-override"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


@pytest.mark.parametrize("version", ["default", "s3v4"])
def test_response_overrides_presignedget_body(server: ServerProcess, s3: Any, bucket: str, version: str) -> None:
    """boto3's default presigner makes SigV2 URLs for S3; s3v4 makes SigV4 ones."""
    presigner = s3 if version == "default" else server.client(signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="dir/pre signed+key", Body=b"payload", ContentType="text/plain")
    params = {
        "Bucket": bucket,
        "Key": "dir/pre signed+key",
        "ResponseContentType": "application/json",
        "ResponseContentDisposition": 'attachment; filename="a b.json"',
        "ResponseContentLanguage": "fr",
        "ResponseContentEncoding": "identity",
        "ResponseCacheControl": "private",
        "ResponseExpires": datetime(2030, 5, 6, tzinfo=UTC),
    }
    url = presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.read() == b"payload"
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="a b.json"'
        assert resp.headers["Content-Language"] == "fr"
        assert resp.headers["Content-Encoding"] == "identity"
        assert resp.headers["Cache-Control"] == "private"
        assert resp.headers["Expires"] == "Mon, 06 May 2030 00:00:00 GMT"


# -- integrity ----------------------------------------------------------------------------------------------


def test_content_md5(s3: Any, s3_once: Any, bucket: str) -> None:
    body = b"the body"
    s3.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=md5_b64(body))
    assert get_body(s3, bucket, "md5") == body
    resp = expect_error(
        s3_once.put_object, "BadDigest", 400, Bucket=bucket, Key="md5", Body=b"other body", ContentMD5=md5_b64(body)
    )
    assert resp["Error"]["Message"]
    assert get_body(s3, bucket, "md5") == body


def test_content_md5_malformed(s3: Any, bucket: str) -> None:
    expect_error(s3.put_object, "InvalidDigest", 400, Bucket=bucket, Key="bad", Body=b"x", ContentMD5="not-base64!")
    expect_error(s3.put_object, "InvalidDigest", 400, Bucket=bucket, Key="bad", Body=b"x", ContentMD5="AAAA")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_algorithm(s3: Any, bucket: str, algorithm: str) -> None:
    body = data(MiB + 3, seed=11)
    put = s3.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumAlgorithm=algorithm)
    want = checksum(algorithm, body)
    field = f"Checksum{algorithm}"
    assert put[field] == want
    got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got[field] == want
    assert got["ChecksumType"] == "FULL_OBJECT"
    assert got["Body"].read() == body
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head[field] == want
    assert field not in s3.head_object(Bucket=bucket, Key="sum")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_explicit_checksum_value(s3: Any, bucket: str, algorithm: str) -> None:
    body = b"explicit checksum body"
    field = f"Checksum{algorithm}"
    s3.put_object(Bucket=bucket, Key="x", Body=body, **{field: checksum(algorithm, body)})
    got = s3.get_object(Bucket=bucket, Key="x", ChecksumMode="ENABLED")
    assert got[field] == checksum(algorithm, body)
    assert got["Body"].read() == body


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_checksum_is_bad_digest(s3: Any, s3_once: Any, bucket: str, algorithm: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"previous")
    field = f"Checksum{algorithm}"
    wrong = checksum(algorithm, b"something else")
    expect_error(s3_once.put_object, "BadDigest", 400, Bucket=bucket, Key="keep", Body=b"new body", **{field: wrong})
    expect_error(s3_once.put_object, "BadDigest", 400, Bucket=bucket, Key="fresh", Body=b"new body", **{field: wrong})
    assert get_body(s3, bucket, "keep") == b"previous"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="fresh")
    # A body cut into fragments (past the inline size), checked in large pieces (CRC32 through ISA-L).
    big = data(300 * 1024 + 1, seed=5)
    expect_error(s3_once.put_object, "BadDigest", 400, Bucket=bucket, Key="big", Body=big, **{field: wrong})
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="big")


def test_malformed_checksum_value(s3: Any, bucket: str) -> None:
    expect_error(s3.put_object, "InvalidRequest", 400, Bucket=bucket, Key="m", Body=b"x", ChecksumCRC32="nope")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="m")


def test_wrong_payload_sha256(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="sha", Body=b"previous")
    resp = signed_request(
        server, "PUT", f"/{bucket}/sha", b"actual", payload_hash=hashlib.sha256(b"claimed").hexdigest()
    )
    assert resp.status == 400
    assert resp.error()["Code"] == "XAmzContentSHA256Mismatch"
    assert get_body(s3, bucket, "sha") == b"previous"


# -- delete many ----------------------------------------------------------------------------------------------


def _put_many(s3: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))


def test_delete_objects_verbose(s3: Any, bucket: str) -> None:
    real = [f"real/{i:03d}" for i in range(40)]
    _put_many(s3, bucket, [*real, "keep"])
    keys = real + [f"ghost/{i:04d}" for i in range(1000 - len(real))]
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == sorted(keys)
    assert "Errors" not in resp
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


def test_delete_objects_quiet(s3: Any, bucket: str) -> None:
    keys = ["q 1", "q+2", "q/ü/3", "q&<4>"]
    _put_many(s3, bucket, keys)
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    assert "Deleted" not in resp
    assert "Errors" not in resp
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects_reports_bad_keys(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="fine", Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "fine"}, {"Key": "k" * 1025}]})
    assert [d["Key"] for d in resp["Deleted"]] == ["fine"]
    assert [(e["Key"], e["Code"]) for e in resp["Errors"]] == [("k" * 1025, "KeyTooLongError")]
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="fine")


def test_delete_objects_too_many(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k0", Body=b"x")
    objects = [{"Key": f"k{i}"} for i in range(1001)]
    expect_error(s3.delete_objects, "MalformedXML", 400, Bucket=bucket, Delete={"Objects": objects})
    assert get_body(s3, bucket, "k0") == b"x"


def test_delete_objects_needs_integrity_header(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    resp = signed_request(server, "POST", f"/{bucket}?delete", body)
    assert resp.status == 400
    assert resp.error()["Code"] == "InvalidRequest"
    wrong = {"x-amz-checksum-crc32": checksum("CRC32", b"other")}
    resp = signed_request(server, "POST", f"/{bucket}?delete", body, headers=wrong)
    assert resp.status == 400
    assert resp.error()["Code"] == "BadDigest"
    assert get_body(s3, bucket, "k") == b"x"
    right = {"x-amz-checksum-sha256": checksum("SHA256", body)}
    assert signed_request(server, "POST", f"/{bucket}?delete", body, headers=right).status == 200
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")


def test_delete_objects_body_must_match_signature(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="victim", Body=b"x")
    signed_body = b"<Delete><Object><Key>other</Key></Object></Delete>"
    sent_body = b"<Delete><Object><Key>victim</Key></Object></Delete>"
    headers = {"Content-MD5": md5_b64(sent_body)}
    resp = signed_request(
        server, "POST", f"/{bucket}?delete", sent_body, headers, payload_hash=hashlib.sha256(signed_body).hexdigest()
    )
    assert resp.status == 400
    assert resp.error()["Code"] == "XAmzContentSHA256Mismatch"
    assert get_body(s3, bucket, "victim") == b"x"


# -- keys -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys(s3: Any, bucket: str, key: str) -> None:
    body = key.encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert get_body(s3, bucket, key) == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key=key)


@pytest.mark.parametrize("key", ["k/" + "x" * 1022, "é" * 512, "😀" * 256, "a" * 1021 + "€"])
def test_longest_key(s3: Any, bucket: str, key: str) -> None:
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"long")
    assert get_body(s3, bucket, key) == b"long"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


@pytest.mark.parametrize("key", ["k/" + "x" * 1023, "é" * 512 + "a", "😀" * 257])
def test_key_too_long(s3: Any, bucket: str, key: str) -> None:
    assert len(key.encode()) > 1024
    expect_error(s3.put_object, "KeyTooLongError", 400, Bucket=bucket, Key=key, Body=b"x")
    expect_error(s3.create_multipart_upload, "KeyTooLongError", 400, Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_key_errors_only_after_authentication(server: ServerProcess, bucket: str) -> None:
    long_key = "k" * 1025
    resp = send(server, "PUT", f"/{bucket}/{long_key}", {"Content-Length": "1"}, b"x")
    assert (resp.status, resp.error()["Code"]) == (403, "AccessDenied")
    resp = signed_request(server, "PUT", f"/{bucket}/{long_key}", b"x")
    assert (resp.status, resp.error()["Code"]) == (400, "KeyTooLongError")


def test_virtual_hosted_style(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="vh/key one", Body=b"virtual")
    port = server.endpoint.rsplit(":", 1)[1]
    host = {"Host": f"{bucket}.localhost:{port}"}
    resp = signed_request(server, "GET", "/vh/key%20one", headers=host)
    assert (resp.status, resp.body) == (200, b"virtual")
    resp = signed_request(server, "PUT", "/vh/two", b"second", headers=host)
    assert resp.status == 200
    assert get_body(s3, bucket, "vh/two") == b"second"
    listing = signed_request(server, "GET", "/?list-type=2&prefix=vh%2F", headers=host)
    assert listing.status == 200
    assert b"<Key>vh/key one</Key>" in listing.body


def test_a_client_gone_mid_get_is_counted_as_499_not_logged_as_a_failure(server: ServerProcess, s3: Any) -> None:
    bucket = unique("gone")
    s3.create_bucket(Bucket=bucket)
    body = data(24 * MiB)  # more than the loopback socket buffers: the server is still sending when we leave
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    before = server.requests_answered("get_object", "499")
    for _ in range(3):
        stream = s3.get_object(Bucket=bucket, Key="big")["Body"]
        assert len(stream.read(MiB)) == MiB
        stream.close()  # drops the connection mid-body
    deadline = time.monotonic() + 30
    while server.requests_answered("get_object", "499") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.requests_answered("get_object", "499") == before + 3
    assert f"GET /{bucket}/big failed" not in server.log_text()
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body
