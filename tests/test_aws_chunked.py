"""gateway.s3.aws_chunked decodes good bodies: the AWS documentation's examples and round trips through the
encoder in aws_chunked_helpers, in every payload mode, chunk size and trailer algorithm.

Bodies from botocore / boto3 are in test_aws_chunked_clients.py, tampering in test_aws_chunked_tampering.py,
framing errors, truncation and fuzzing in test_aws_chunked_framing.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from unittest import mock

import aiohttp
import pytest

from gateway.s3 import checksums, payload
from gateway.s3.aws_chunked import AwsChunkedReader
from tests.aws_chunked_helpers import (
    DATA,
    MODES,
    FakeStream,
    b64_crc32,
    build,
    decode,
    derive_key,
    encode,
    has_trailer,
    make_auth,
    reader_for,
    signed_chunks,
    signer_for,
)

# -- the AWS documentation's examples -----------------------------------------------------------------

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def aws_example_auth(mode: str, seed: str) -> payload.AuthContext:
    return payload.AuthContext(
        access_key="AKIAIOSFODNN7EXAMPLE",
        region="us-east-1",
        date="20130524",
        amz_date="20130524T000000Z",
        scope="20130524/us-east-1/s3/aws4_request",
        signing_key=derive_key(AWS_SECRET, "20130524", "us-east-1"),
        seed_signature=seed,
        payload_hash=mode,
        presigned=False,
    )


async def test_aws_example_signed_chunks() -> None:
    auth = aws_example_auth(
        payload.STREAMING_PAYLOAD, "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    )
    body = (
        b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
        + b"a" * 65536
        + b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
        + b"a" * 1024
        + b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
    )
    assert len(body) == 66824  # the example's Content-Length
    reader = AwsChunkedReader(FakeStream(body), auth.payload_hash, auth=auth, decoded_length=66560)
    assert await decode(reader) == b"a" * 66560


async def test_aws_example_signed_trailer() -> None:
    auth = aws_example_auth(
        payload.STREAMING_PAYLOAD_TRAILER, "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    )
    body = (
        b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n"
        + b"a" * 65536
        + b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n"
        + b"a" * 1024
        + b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
        + b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
        + b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n"
    )
    reader = AwsChunkedReader(
        FakeStream(body), auth.payload_hash, auth=auth, trailer="x-amz-checksum-crc32c", decoded_length=66560
    )
    assert await decode(reader) == b"a" * 66560
    assert reader.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert reader.checksum_b64 == "sOO8/Q=="


# -- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk_size", [1, 1000, 65536, 8 * 1024 * 1024])
async def test_round_trip(mode: str, chunk_size: int) -> None:
    data = DATA[:5000] if chunk_size == 1 else DATA
    body, auth = build(mode, data, chunk_size)
    stream = FakeStream(body)
    trailer = "x-amz-checksum-crc32" if has_trailer(auth) else None
    reader = AwsChunkedReader(stream, mode, auth=auth, trailer=trailer, decoded_length=len(data))
    assert await decode(reader, limit=chunk_size) == data
    assert reader.done and reader.bytes_read == len(data)
    assert stream.largest_read <= max(chunk_size, 2)  # one chunk in memory at most (or its CRLF)
    if has_trailer(auth):
        assert reader.trailers == {"x-amz-checksum-crc32": b64_crc32(data)}
        assert reader.checksum_b64 == b64_crc32(data)
        assert reader.checksum_algorithm == "CRC32"


@pytest.mark.parametrize("mode", MODES)
async def test_empty_body(mode: str) -> None:
    body, auth = build(mode, b"")
    assert await decode(reader_for(body, auth, decoded_length=0)) == b""


@pytest.mark.parametrize("algo", checksums.ALGORITHMS)
@pytest.mark.parametrize("mode", [payload.STREAMING_PAYLOAD_TRAILER, payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER])
async def test_every_trailer_algorithm(mode: str, algo: str) -> None:
    name = checksums.header_name(algo)
    value = base64.b64encode(checksums.compute(algo, DATA)).decode()
    auth = make_auth(mode)
    signer = signer_for(auth) if signed_chunks(auth) else None
    body = encode(DATA, 50_000, signer=signer, trailers=[(name, value)])
    reader = AwsChunkedReader(FakeStream(body), mode, auth=auth, trailer=name)
    assert await decode(reader) == DATA
    assert reader.checksum_b64 == value


async def test_checksum_without_trailer() -> None:
    body, auth = build(payload.STREAMING_PAYLOAD)
    reader = reader_for(body, auth, checksum_algorithm="sha256")
    assert await decode(reader) == DATA
    assert reader.checksum_b64 == base64.b64encode(hashlib.sha256(DATA).digest()).decode()


@pytest.mark.parametrize("threshold", [None, 1, 10**9])
async def test_offloaded_hashing_is_equivalent(threshold: int | None) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    for mode in MODES:
        body, auth = build(mode, data, 1024 * 1024)
        assert await decode(reader_for(body, auth, offload_threshold=threshold)) == data


async def test_unsigned_chunk_extensions_are_ignored() -> None:
    body = b"5;name=value\r\nhello\r\n0;x=y\r\nx-amz-checksum-crc32:" + b64_crc32(b"hello").encode() + b"\r\n\r\n"
    reader = AwsChunkedReader(
        FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER, trailer="x-amz-checksum-crc32"
    )
    assert await decode(reader) == b"hello"


async def test_blank_line_before_signed_trailers_is_tolerated() -> None:
    body, auth = build(payload.STREAMING_PAYLOAD_TRAILER, blank_before_trailers=True)
    assert await decode(reader_for(body, auth)) == DATA
    body, auth = build(payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER, blank_before_trailers=True)
    assert await decode(reader_for(body, auth)) == DATA


async def test_with_aiohttp_stream_reader() -> None:
    """The real StreamReader, fed in small uneven pieces as a socket would."""
    body, auth = build(payload.STREAMING_PAYLOAD_TRAILER, DATA, 8192)
    loop = asyncio.get_running_loop()
    stream = aiohttp.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)

    async def feed() -> None:
        for i in range(0, len(body), 1237):
            stream.feed_data(body[i : i + 1237])
            await asyncio.sleep(0)
        stream.feed_eof()

    feeder = asyncio.create_task(feed())
    reader = AwsChunkedReader(stream, auth.payload_hash, auth=auth, trailer="x-amz-checksum-crc32")
    assert await decode(reader, limit=8192) == DATA
    await feeder
