"""Authentication against a real `tessera server`: SigV4 headers, presigned URLs, streaming chunk signatures,
trailing checksums, and the S3 error documents that refuse a request."""

from __future__ import annotations

import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED

from tests.s3_helpers import (
    ChunkSigner,
    RawResponse,
    botocore_clock,
    checksum,
    data,
    expect_error,
    send,
    sign,
    signed_chunked_body,
    signed_request,
    split_chunks,
    unsigned_trailer_body,
)
from tests.server_process import SECRET_KEY, ServerProcess

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
CHUNK = 64 * 1024


def _get(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _urlopen(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _error_doc(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


# -- header signatures ------------------------------------------------------------------------------------------


def test_wrong_secret(server: ServerProcess, bucket: str) -> None:
    bad = server.client(secret_key="not-the-secret-0000000000000000000000000")
    expect_error(bad.list_buckets, "SignatureDoesNotMatch", 403)
    expect_error(bad.put_object, "SignatureDoesNotMatch", 403, Bucket=bucket, Key="k", Body=b"x")
    expect_error(server.client().head_object, "404", 404, Bucket=bucket, Key="k")


def test_unknown_access_key(server: ServerProcess, bucket: str) -> None:
    bad = server.client(access_key="AKIDUNKNOWN000000000", secret_key=SECRET_KEY)
    resp = expect_error(bad.list_objects_v2, "InvalidAccessKeyId", 403, Bucket=bucket)
    assert resp["Error"]["AWSAccessKeyId"] == "AKIDUNKNOWN000000000"


def test_anonymous_requests_denied(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    for url, method in [
        (f"{server.endpoint}/{bucket}/private", "GET"),
        (f"{server.endpoint}/{bucket}", "GET"),
        (f"{server.endpoint}/{bucket}/new", "PUT"),
    ]:
        status, headers, body = _urlopen(url, method, b"x" if method == "PUT" else None)
        assert status == 403
        err = _error_doc(body)
        assert err["Code"] == "AccessDenied"
        assert err["Message"]
        assert err["RequestId"] == headers["x-amz-request-id"]
    anonymous = server.client(signature_version=UNSIGNED)
    expect_error(anonymous.get_object, "AccessDenied", 403, Bucket=bucket, Key="private")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="new")


def test_error_document(server: ServerProcess, bucket: str) -> None:
    resp = signed_request(server, "GET", f"/{bucket}/no%20such%20key")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/xml")
    err = resp.error()
    assert (err["Code"], err["Key"]) == ("NoSuchKey", "no such key")
    assert err["Message"] == "The specified key does not exist."
    assert err["RequestId"] == resp.headers["x-amz-request-id"]
    assert len(err["RequestId"]) >= 16
    head = signed_request(server, "HEAD", f"/{bucket}/no%20such%20key")
    assert (head.status, head.body) == (404, b"")
    assert head.headers["x-amz-request-id"]
    other = signed_request(server, "GET", f"/{bucket}/no%20such%20key")
    assert other.error()["RequestId"] != err["RequestId"]


def test_signature_covers_path(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    signed = sign(server, "GET", f"/{bucket}/a")
    resp = send(server, "GET", f"/{bucket}/b", signed.headers)
    assert resp.status == 403
    assert resp.error()["Code"] == "SignatureDoesNotMatch"


def test_unsigned_amz_header_refused(server: ServerProcess, s3: Any, bucket: str) -> None:
    signed = sign(server, "PUT", f"/{bucket}/k", {"Content-Length": "1"}, payload_hash="UNSIGNED-PAYLOAD")
    resp = send(server, "PUT", f"/{bucket}/k", {**signed.headers, "x-amz-meta-sneaky": "1"}, b"x")
    assert resp.status == 403
    assert resp.error()["Code"] == "AccessDenied"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")


@pytest.mark.parametrize("offset", [timedelta(minutes=-20), timedelta(minutes=20)])
def test_request_time_too_skewed(server: ServerProcess, bucket: str, offset: timedelta) -> None:
    when = datetime.now(UTC).replace(tzinfo=None) + offset
    resp = signed_request(server, "GET", f"/{bucket}?list-type=2", when=when)
    assert resp.status == 403
    err = resp.error()
    assert err["Code"] == "RequestTimeTooSkewed"
    assert err["RequestId"] == resp.headers["x-amz-request-id"]


def test_small_skew_accepted(server: ServerProcess, bucket: str) -> None:
    when = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
    assert signed_request(server, "GET", f"/{bucket}?list-type=2", when=when).status == 200


# -- presigned URLs ---------------------------------------------------------------------------------------------


def _presigner(server: ServerProcess, version: str) -> Any:
    """boto3's default presigner makes SigV2 query URLs for S3; s3v4 makes SigV4 ones."""
    return server.client() if version == "default" else server.client(signature_version="s3v4")


@pytest.mark.parametrize("version", ["default", "s3v4"])
def test_presigned_get_and_put(server: ServerProcess, s3: Any, bucket: str, version: str) -> None:
    presigner = _presigner(server, version)
    key = "pre/signed key+ü.bin"
    body = data(200_000, seed=21)
    params = {"Bucket": bucket, "Key": key, "ContentType": "application/x-test"}
    put_url = presigner.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
    status, _, _ = _urlopen(put_url, "PUT", body, {"Content-Type": "application/x-test"})
    assert status == 200
    assert _get(s3, bucket, key) == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/x-test"
    get_url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    status, headers, got = _urlopen(get_url)
    assert (status, got) == (200, body)
    assert headers["ETag"] == s3.head_object(Bucket=bucket, Key=key)["ETag"]


def test_presigned_expired_v4(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    presigner = _presigner(server, "s3v4")
    with botocore_clock(an_hour_ago):
        url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "old"}, ExpiresIn=60)
    _assert_expired(url)


def test_presigned_expired_default(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    url = _presigner(server, "default").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "old"}, ExpiresIn=-60
    )
    _assert_expired(url)


def _assert_expired(url: str) -> None:
    status, headers, body = _urlopen(url)
    assert status == 403
    err = _error_doc(body)
    assert err["Code"] == "AccessDenied"
    assert "expired" in err["Message"].lower()
    assert err["RequestId"] == headers["x-amz-request-id"]


@pytest.mark.parametrize("version", ["default", "s3v4"])
def test_presigned_tampered(server: ServerProcess, s3: Any, bucket: str, version: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    url = _presigner(server, version).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300
    )
    status, _, body = _urlopen(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"))
    assert (status, _error_doc(body)["Code"]) == (403, "SignatureDoesNotMatch")
    status, _, body = _urlopen(url, "PUT", b"overwrite")
    assert (status, _error_doc(body)["Code"]) == (403, "SignatureDoesNotMatch")
    assert _get(s3, bucket, "a") == b"a"


@pytest.mark.parametrize("version", ["default", "s3v4"])
def test_presigned_wrong_secret(server: ServerProcess, bucket: str, version: str) -> None:
    config = {} if version == "default" else {"signature_version": "s3v4"}
    bad = server.client(secret_key="not-the-secret-0000000000000000000000000", **config)
    url = bad.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket}, ExpiresIn=300)
    status, _, body = _urlopen(url)
    assert (status, _error_doc(body)["Code"]) == (403, "SignatureDoesNotMatch")


# -- aws-chunked bodies -----------------------------------------------------------------------------------------


def _chunked_headers(payload: str, decoded: int, encoded: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded),
        "Content-Length": str(encoded),
        **(extra or {}),
    }


def signed_chunked_put(
    server: ServerProcess,
    target: str,
    body: bytes,
    *,
    trailer: tuple[str, str] | None = None,
    tamper: int = -1,
    corrupt_data: bool = False,
    extra: dict[str, str] | None = None,
) -> RawResponse:
    """PUT body as STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER), 64 KiB chunks, each signed per the spec."""
    chunks = split_chunks(body, CHUNK)
    payload = SIGNED_TRAILER if trailer else SIGNED
    headers = {**(extra or {}), **({"x-amz-trailer": trailer[0]} if trailer else {})}
    encoded_len = len(signed_chunked_body(chunks, None, trailer))
    signed = sign(server, "PUT", target, _chunked_headers(payload, len(body), encoded_len, headers), payload)
    wire = signed_chunked_body(chunks, ChunkSigner(signed), trailer, tamper=tamper)
    if corrupt_data:
        i = wire.index(b"\r\n") + 2  # first data byte of the first chunk
        wire = wire[:i] + bytes([wire[i] ^ 1]) + wire[i + 1 :]
    assert len(wire) == encoded_len
    return send(server, "PUT", target, signed.headers, wire)


def unsigned_trailer_put(server: ServerProcess, target: str, body: bytes, trailer: tuple[str, str]) -> RawResponse:
    wire = unsigned_trailer_body(split_chunks(body, CHUNK), trailer)
    headers = _chunked_headers(UNSIGNED_TRAILER, len(body), len(wire), {"x-amz-trailer": trailer[0]})
    signed = sign(server, "PUT", target, headers, UNSIGNED_TRAILER)
    return send(server, "PUT", target, signed.headers, wire)


def test_signed_chunks(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = data(3 * CHUNK + 10, seed=31)
    resp = signed_chunked_put(server, f"/{bucket}/chunked", body)
    assert resp.status == 200, resp.body
    assert _get(s3, bucket, "chunked") == body
    head = s3.head_object(Bucket=bucket, Key="chunked")
    assert head["ContentLength"] == len(body)
    assert "ContentEncoding" not in head  # aws-chunked describes the transfer, not the object


def test_signed_chunks_empty_body(server: ServerProcess, s3: Any, bucket: str) -> None:
    assert signed_chunked_put(server, f"/{bucket}/empty", b"").status == 200
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0


def test_signed_chunks_keep_other_content_encoding(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = b"pretend this is gzip"
    resp = signed_chunked_put(server, f"/{bucket}/gz", body, extra={"Content-Encoding": "aws-chunked,gzip"})
    assert resp.status == 200
    assert s3.head_object(Bucket=bucket, Key="gz")["ContentEncoding"] == "gzip"


@pytest.mark.parametrize("tamper", [0, 2, 4])
def test_tampered_chunk_signature(server: ServerProcess, s3: Any, bucket: str, tamper: int) -> None:
    """Chunk 0, a middle chunk, and the final zero-length chunk."""
    s3.put_object(Bucket=bucket, Key="keep", Body=b"previous")
    body = data(4 * CHUNK - 5, seed=32)
    resp = signed_chunked_put(server, f"/{bucket}/keep", body, tamper=tamper)
    assert resp.status == 403
    assert resp.error()["Code"] == "SignatureDoesNotMatch"
    assert _get(s3, bucket, "keep") == b"previous"
    resp = signed_chunked_put(server, f"/{bucket}/fresh", body, tamper=tamper)
    assert resp.status == 403
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="fresh")


def test_tampered_chunk_data(server: ServerProcess, s3: Any, bucket: str) -> None:
    resp = signed_chunked_put(server, f"/{bucket}/data", data(2 * CHUNK, seed=33), corrupt_data=True)
    assert resp.status == 403
    assert resp.error()["Code"] == "SignatureDoesNotMatch"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="data")


def test_signed_chunks_wrong_decoded_length(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = data(CHUNK + 1, seed=34)
    chunks = split_chunks(body, CHUNK)
    encoded_len = len(signed_chunked_body(chunks, None))
    headers = _chunked_headers(SIGNED, len(body) + 1, encoded_len)
    signed = sign(server, "PUT", f"/{bucket}/short", headers, SIGNED)
    resp = send(server, "PUT", f"/{bucket}/short", signed.headers, signed_chunked_body(chunks, ChunkSigner(signed)))
    assert resp.status == 400
    assert resp.error()["Code"] == "IncompleteBody"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="short")


def test_signed_chunks_with_trailer(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = data(2 * CHUNK + 3, seed=35)
    trailer = ("x-amz-checksum-crc32c", checksum("CRC32C", body))
    resp = signed_chunked_put(server, f"/{bucket}/trailer", body, trailer=trailer)
    assert resp.status == 200, resp.body
    got = s3.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32C"] == trailer[1]
    assert got["Body"].read() == body


def test_signed_trailer_wrong_checksum(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = data(CHUNK, seed=36)
    trailer = ("x-amz-checksum-crc32c", checksum("CRC32C", b"not the body"))
    resp = signed_chunked_put(server, f"/{bucket}/badtrailer", body, trailer=trailer)
    assert resp.status == 400
    assert resp.error()["Code"] == "BadDigest"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="badtrailer")


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_unsigned_payload_trailer(server: ServerProcess, s3: Any, bucket: str, algorithm: str) -> None:
    body = data(2 * CHUNK + 17, seed=37)
    trailer = (f"x-amz-checksum-{algorithm.lower()}", checksum(algorithm, body))
    resp = unsigned_trailer_put(server, f"/{bucket}/unsigned", body, trailer)
    assert resp.status == 200, resp.body
    assert resp.headers[trailer[0]] == trailer[1]
    got = s3.get_object(Bucket=bucket, Key="unsigned", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == trailer[1]
    assert got["Body"].read() == body


def test_unsigned_payload_trailer_wrong_crc32(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"previous")
    body = data(CHUNK + 5, seed=38)
    trailer = ("x-amz-checksum-crc32", checksum("CRC32", body[:-1]))
    for key in ("keep", "fresh"):
        resp = unsigned_trailer_put(server, f"/{bucket}/{key}", body, trailer)
        assert resp.status == 400
        err = resp.error()
        assert err["Code"] == "BadDigest"
        assert err["RequestId"] == resp.headers["x-amz-request-id"]
    assert _get(s3, bucket, "keep") == b"previous"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="fresh")


def test_checksum_header_and_trailer_together_refused(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = b"two checksums"
    wire = unsigned_trailer_body([body], ("x-amz-checksum-crc32c", checksum("CRC32C", body)))
    extra = {"x-amz-trailer": "x-amz-checksum-crc32c", "x-amz-checksum-crc32": checksum("CRC32", body)}
    signed = sign(
        server,
        "PUT",
        f"/{bucket}/two",
        _chunked_headers(UNSIGNED_TRAILER, len(body), len(wire), extra),
        UNSIGNED_TRAILER,
    )
    resp = send(server, "PUT", f"/{bucket}/two", signed.headers, wire)
    assert (resp.status, resp.error()["Code"]) == (400, "InvalidRequest")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="two")


def test_signed_chunks_large_chunks(server: ServerProcess, s3: Any, bucket: str) -> None:
    """Chunks of 1 MiB and more (hashed off the event loop), and a tampered last data chunk."""
    body = data(3 * (1 << 20) + 5, seed=43)
    chunks = split_chunks(body, (1 << 20) + 17)
    encoded_len = len(signed_chunked_body(chunks, None))
    for key, tamper in (("big", -1), ("big-tampered", len(chunks) - 1)):
        signed = sign(server, "PUT", f"/{bucket}/{key}", _chunked_headers(SIGNED, len(body), encoded_len), SIGNED)
        wire = signed_chunked_body(chunks, ChunkSigner(signed), tamper=tamper)
        resp = send(server, "PUT", f"/{bucket}/{key}", signed.headers, wire)
        assert resp.status == (200 if tamper < 0 else 403)
    assert _get(s3, bucket, "big") == body
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="big-tampered")


def test_signed_chunks_upload_part(server: ServerProcess, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    body = data(CHUNK * 2 + 9, seed=39)
    resp = signed_chunked_put(server, f"/{bucket}/mp?partNumber=1&uploadId={upload_id}", body)
    assert resp.status == 200, resp.body
    parts = [{"PartNumber": 1, "ETag": resp.headers["ETag"]}]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert _get(s3, bucket, "mp") == body


def test_boto3_default_client_roundtrip(server: ServerProcess, bucket: str) -> None:
    """boto3's defaults (checksums when supported, payload signing over http) against the server."""
    s3 = server.client()
    body = data(100_000, seed=40)
    resp = s3.put_object(Bucket=bucket, Key="default", Body=body)
    assert resp["ChecksumCRC32"] == checksum("CRC32", body)
    assert s3.get_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED")["Body"].read() == body


def test_unsigned_payload_client(server: ServerProcess, bucket: str) -> None:
    """payload_signing_enabled=False makes botocore send UNSIGNED-PAYLOAD."""
    s3 = server.client(s3={"payload_signing_enabled": False})
    s3.put_object(Bucket=bucket, Key="unsigned-payload", Body=b"abc")
    assert s3.get_object(Bucket=bucket, Key="unsigned-payload")["Body"].read() == b"abc"


# -- boto3's own aws-chunked bodies (what it sends over https) -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK + 1, 1 << 20, 3 * (1 << 20) + 7])
def test_boto3_chunked_put(s3_chunked: Any, bucket: str, size: int) -> None:
    body = data(size, seed=size)
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.headers["X-Amz-Content-SHA256"])

    s3_chunked.meta.events.register("before-send.s3.PutObject", capture)
    try:
        resp = s3_chunked.put_object(Bucket=bucket, Key="chunked", Body=body)
    finally:
        s3_chunked.meta.events.unregister("before-send.s3.PutObject", capture)
    assert sent in ([UNSIGNED_TRAILER], [UNSIGNED_TRAILER.encode()])
    assert resp["ChecksumCRC32"] == checksum("CRC32", body)
    got = s3_chunked.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == checksum("CRC32", body)
    assert got["Body"].read() == body
    assert got["ContentLength"] == size


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_boto3_chunked_checksum_algorithms(s3_chunked: Any, bucket: str, algorithm: str) -> None:
    body = data(CHUNK * 2 + 11, seed=41)
    resp = s3_chunked.put_object(
        Bucket=bucket, Key="alg", Body=body, ChecksumAlgorithm=algorithm, ContentEncoding="gzip"
    )
    assert resp[f"Checksum{algorithm}"] == checksum(algorithm, body)
    head = s3_chunked.head_object(Bucket=bucket, Key="alg", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == checksum(algorithm, body)
    assert head["ContentEncoding"] == "gzip"


def test_boto3_chunked_multipart(s3_chunked: Any, bucket: str, tmp_path: Any) -> None:
    body = data(11 << 20, seed=42)
    src = tmp_path / "chunked.bin"
    src.write_bytes(body)
    config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    s3_chunked.upload_file(str(src), bucket, "mp.bin", Config=config)
    head = s3_chunked.head_object(Bucket=bucket, Key="mp.bin", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')
    assert head["ChecksumType"] == "COMPOSITE"
    assert s3_chunked.get_object(Bucket=bucket, Key="mp.bin")["Body"].read() == body
