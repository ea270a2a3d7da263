"""gateway.s3.aws_chunked refuses broken framing: truncation, corruption, bad chunk sizes and lines, length
and trailer announcements; fuzzed hostile bodies give an S3Error, never another exception or other data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.s3 import payload
from gateway.s3.aws_chunked import AwsChunkedReader
from gateway.s3.errors import S3Error
from tests.aws_chunked_helpers import (
    DATA,
    MODES,
    FakeStream,
    build,
    decode,
    expect_error,
    make_auth,
    reader_for,
    signed_chunks,
)


@pytest.mark.parametrize("mode", MODES)
async def test_every_truncation_is_an_incomplete_body(mode: str) -> None:
    data = b"0123456789abcdef0123456789ABCDEF!"
    body, auth = build(mode, data, 16)
    for cut in range(len(body)):
        err, _ = await expect_error(reader_for(body[:cut], auth))
        assert err.code == "IncompleteBody", (cut, body[:cut])


@pytest.mark.parametrize("mode", MODES)
async def test_every_single_bit_corruption_is_refused(mode: str) -> None:
    data = b"0123456789abcdef0123456789ABCDEF!"
    body, auth = build(mode, data, 16)
    for pos in range(len(body)):
        if mode == payload.STREAMING_PAYLOAD and body[pos : pos + 1].isalnum() and pos > len(body) - 2:
            continue
        bad = body[:pos] + bytes([body[pos] ^ 1]) + body[pos + 1 :]
        try:
            decoded = await decode(reader_for(bad, auth, decoded_length=len(data)))
        except S3Error:
            continue
        pytest.fail(f"corruption at {pos} accepted: {bad!r} -> {decoded!r}")


@pytest.mark.parametrize(
    "header",
    [b"zz", b"0x10", b" 10", b"1_0", b"+10", b"-1", b"", b"1" * 17, "\uff11\uff10".encode()],
)
async def test_bad_chunk_size(header: bytes) -> None:
    body = header + b"\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"
    err, _ = await expect_error(AwsChunkedReader(FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER))
    assert err.code == "InvalidRequest"


async def test_chunk_longer_than_announced() -> None:
    body = b"10\r\n" + b"x" * 20 + b"\r\n0\r\n\r\n"
    err, _ = await expect_error(AwsChunkedReader(FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER))
    assert err.code == "InvalidRequest"


async def test_bare_lf_framing() -> None:
    body = b"10\n" + b"x" * 16 + b"\r\n0\r\n\r\n"
    err, _ = await expect_error(AwsChunkedReader(FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER))
    assert err.code == "InvalidRequest"


async def test_oversized_chunk_is_refused_before_reading_it() -> None:
    body, auth = build(payload.STREAMING_PAYLOAD, os.urandom(20 * 1024 * 1024), 20 * 1024 * 1024)
    stream = FakeStream(body)
    err, _ = await expect_error(AwsChunkedReader(stream, auth.payload_hash, auth=auth))
    assert err.code == "InvalidRequest"
    assert stream.largest_read == 0
    body, auth = build(payload.STREAMING_PAYLOAD, DATA, 65536)
    err, _ = await expect_error(AwsChunkedReader(FakeStream(body), auth.payload_hash, auth=auth, max_chunk_size=1000))
    assert err.code == "InvalidRequest"


async def test_huge_line() -> None:
    body = b"1" * 100_000 + b"\r\n"
    for stream in (FakeStream(body), FakeStream(body, line_limit=2**16)):
        err, _ = await expect_error(AwsChunkedReader(stream, payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER))
        assert err.code == "InvalidRequest"


@pytest.mark.parametrize("mode", MODES)
async def test_decoded_length_mismatch(mode: str) -> None:
    body, auth = build(mode)
    for declared in (len(DATA) - 1, len(DATA) + 1, 0):
        err, handed_out = await expect_error(reader_for(body, auth, decoded_length=declared))
        assert err.code == "IncompleteBody"
        assert len(handed_out) <= declared


async def test_from_request_headers() -> None:
    body, auth = build(payload.STREAMING_PAYLOAD_TRAILER)
    headers = CIMultiDict({"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-decoded-content-length": str(len(DATA))})
    assert await decode(AwsChunkedReader.from_request(FakeStream(body), auth, headers)) == DATA

    headers["x-amz-decoded-content-length"] = "12abc"
    with pytest.raises(S3Error) as exc:
        AwsChunkedReader.from_request(FakeStream(body), auth, headers)
    assert exc.value.code == "InvalidArgument"


@pytest.mark.parametrize(
    ("trailer", "mode"),
    [
        ("x-amz-meta-foo", payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER),
        ("x-amz-checksum-md5", payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER),
        ("x-amz-checksum-crc32, x-amz-checksum-sha1", payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER),
        ("x-amz-checksum-crc32", payload.STREAMING_PAYLOAD),
    ],
)
def test_bad_trailer_announcements(trailer: str, mode: str) -> None:
    with pytest.raises(S3Error) as exc:
        AwsChunkedReader(FakeStream(b""), mode, auth=make_auth(mode), trailer=trailer)
    assert exc.value.code == "InvalidRequest"


def test_conflicting_checksum_algorithm() -> None:
    mode = payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER
    with pytest.raises(S3Error):
        AwsChunkedReader(FakeStream(b""), mode, trailer="x-amz-checksum-crc32", checksum_algorithm="SHA1")
    AwsChunkedReader(FakeStream(b""), mode, trailer="X-Amz-Checksum-CRC32", checksum_algorithm="crc32")


def test_programming_errors() -> None:
    with pytest.raises(ValueError):
        AwsChunkedReader(FakeStream(b""), payload.UNSIGNED_PAYLOAD)
    with pytest.raises(ValueError):
        AwsChunkedReader(FakeStream(b""), payload.STREAMING_PAYLOAD)  # signed chunks need the AuthContext


FUZZ_DATA = b"The quick brown fox jumps over the lazy dog" * 3


@settings(max_examples=400, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=4), st.integers(0, 4)), max_size=3),
)
def test_fuzz_mutated_bodies(mode: str, edits: list[tuple[int, bytes, int]]) -> None:
    body, auth = build(mode, FUZZ_DATA, 40)
    for pos, insert, delete in edits:
        pos %= len(body) + 1
        body = body[:pos] + insert + body[pos + delete :]

    async def run() -> bytes | None:
        try:
            return await decode(reader_for(body, auth))
        except S3Error:
            return None

    decoded = asyncio.run(run())
    if decoded is not None and signed_chunks(auth):
        assert decoded == FUZZ_DATA


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(MODES), body=st.binary(max_size=200))
def test_fuzz_random_bodies(mode: str, body: bytes) -> None:
    auth = make_auth(mode)

    async def run() -> None:
        with contextlib.suppress(S3Error):
            await decode(reader_for(body, auth))

    asyncio.run(run())
