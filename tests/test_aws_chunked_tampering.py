"""gateway.s3.aws_chunked refuses tampered bodies: chunk and trailer signatures, reordered or dropped chunks,
wrong, malformed, unexpected or missing trailers; a bad chunk's bytes are never handed out.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.s3 import payload
from gateway.s3.aws_chunked import AwsChunkedReader
from tests.aws_chunked_helpers import (
    DATA,
    FakeStream,
    b64_crc32,
    build,
    decode,
    encode,
    expect_error,
    make_auth,
    reader_for,
    signed_chunks,
    signer_for,
)


@pytest.mark.parametrize("mode", [payload.STREAMING_PAYLOAD, payload.STREAMING_PAYLOAD_TRAILER])
async def test_tampered_chunk_signature(mode: str) -> None:
    body, auth = build(mode, DATA, 65536)
    second = body.index(b";chunk-signature=", body.index(b";chunk-signature=") + 1) + len(b";chunk-signature=")
    bad = body[:second] + (b"0" if body[second : second + 1] != b"0" else b"1") + body[second + 1 :]
    err, handed_out = await expect_error(reader_for(bad, auth))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert handed_out == DATA[:65536]  # the bad chunk's bytes were never returned


async def test_tampered_chunk_data() -> None:
    body, auth = build(payload.STREAMING_PAYLOAD, DATA, 65536)
    pos = body.index(b"\r\n") + 2 + 100
    bad = body[:pos] + bytes([body[pos] ^ 1]) + body[pos + 1 :]
    err, handed_out = await expect_error(reader_for(bad, auth))
    assert err.code == "SignatureDoesNotMatch"
    assert handed_out == b""


async def test_reordered_chunks() -> None:
    auth = make_auth(payload.STREAMING_PAYLOAD)
    signer = signer_for(auth)
    a = b"%x;chunk-signature=%s\r\n" % (1000, signer.chunk(DATA[:1000]).encode()) + DATA[:1000] + b"\r\n"
    b = b"%x;chunk-signature=%s\r\n" % (1000, signer.chunk(DATA[1000:2000]).encode()) + DATA[1000:2000] + b"\r\n"
    end = b"0;chunk-signature=%s\r\n\r\n" % signer.chunk(b"").encode()
    assert await decode(reader_for(a + b + end, make_auth(payload.STREAMING_PAYLOAD))) == DATA[:2000]
    err, _ = await expect_error(reader_for(b + a + end, make_auth(payload.STREAMING_PAYLOAD)))
    assert err.code == "SignatureDoesNotMatch"
    err, _ = await expect_error(reader_for(a + end, make_auth(payload.STREAMING_PAYLOAD)))  # a dropped chunk
    assert err.code == "SignatureDoesNotMatch"


async def test_wrong_seed_or_key() -> None:
    body, _ = build(payload.STREAMING_PAYLOAD)
    err, _ = await expect_error(reader_for(body, make_auth(payload.STREAMING_PAYLOAD, seed="cd" * 32)))
    assert err.code == "SignatureDoesNotMatch"
    err, _ = await expect_error(reader_for(body, make_auth(payload.STREAMING_PAYLOAD, amz_date="20240102T030406Z")))
    assert err.code == "SignatureDoesNotMatch"


async def test_unsigned_chunks_in_signed_mode() -> None:
    body, _ = build(payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER)
    err, _ = await expect_error(reader_for(body, make_auth(payload.STREAMING_PAYLOAD_TRAILER)))
    assert err.code == "InvalidRequest"


@pytest.mark.parametrize("mode", [payload.STREAMING_PAYLOAD_TRAILER, payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER])
async def test_wrong_trailer_checksum(mode: str) -> None:
    auth = make_auth(mode)
    signer = signer_for(auth) if signed_chunks(auth) else None
    body = encode(DATA, 65536, signer=signer, trailers=[("x-amz-checksum-crc32", b64_crc32(DATA + b"x"))])
    err, handed_out = await expect_error(reader_for(body, auth))
    assert (err.code, err.status) == ("BadDigest", 400)
    assert err.message == "The x-amz-checksum-crc32 you specified did not match the calculated checksum."
    assert handed_out == DATA  # the data came through; the gateway must not commit it


@pytest.mark.parametrize("value", ["AAAA", "not base64!", "", "AAAAAAAAAAA="])
async def test_malformed_trailer_checksum(value: str) -> None:
    body = encode(DATA, 65536, trailers=[("x-amz-checksum-crc32", value)])
    err, _ = await expect_error(reader_for(body, make_auth(payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER)))
    assert err.code == "InvalidRequest"
    assert err.message == "Value for x-amz-checksum-crc32 trailing header is invalid."


async def test_tampered_trailer_signature() -> None:
    body, auth = build(payload.STREAMING_PAYLOAD_TRAILER)
    pos = body.index(b"x-amz-trailer-signature:") + len(b"x-amz-trailer-signature:")
    bad = body[:pos] + (b"0" if body[pos : pos + 1] != b"0" else b"1") + body[pos + 1 :]
    err, _ = await expect_error(reader_for(bad, auth))
    assert err.code == "SignatureDoesNotMatch"


async def test_trailer_value_changed_under_signature() -> None:
    auth = make_auth(payload.STREAMING_PAYLOAD_TRAILER)
    signer = signer_for(auth)
    good = b64_crc32(DATA)
    body = encode(DATA, 65536, signer=signer, trailers=[("x-amz-checksum-crc32", good)])
    bad = body.replace(good.encode(), b64_crc32(b"other").encode())
    err, _ = await expect_error(reader_for(bad, auth))
    assert err.code == "SignatureDoesNotMatch"


async def test_missing_trailer_signature() -> None:
    body = encode(DATA, 65536, signer=signer_for(make_auth(payload.STREAMING_PAYLOAD_TRAILER)), trailers=None)
    body = body[:-2] + b"x-amz-checksum-crc32:" + b64_crc32(DATA).encode() + b"\r\n\r\n"
    err, _ = await expect_error(reader_for(body, make_auth(payload.STREAMING_PAYLOAD_TRAILER)))
    assert err.code == "MalformedTrailerError"


@pytest.mark.parametrize(
    "trailers",
    [
        [("x-amz-checksum-sha256", base64.b64encode(hashlib.sha256(DATA).digest()).decode())],  # not announced
        [("x-amz-checksum-crc32", b64_crc32(DATA)), ("x-amz-checksum-crc32", b64_crc32(DATA))],  # twice
        [("x-amz-checksum-crc32", b64_crc32(DATA)), ("x-amz-meta-extra", "1")],
        [],  # announced but missing
    ],
)
async def test_unexpected_or_missing_trailers(trailers: list[tuple[str, str]]) -> None:
    body = encode(DATA, 65536, trailers=trailers)
    err, _ = await expect_error(reader_for(body, make_auth(payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER)))
    assert (err.code, err.status) == ("MalformedTrailerError", 400)


async def test_trailer_without_announcement() -> None:
    body = encode(DATA, 65536, trailers=[("x-amz-checksum-crc32", b64_crc32(DATA))])
    reader = AwsChunkedReader(FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER)
    err, _ = await expect_error(reader)
    assert err.code == "MalformedTrailerError"
