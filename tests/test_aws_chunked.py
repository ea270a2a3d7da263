"""gateway.s3.aws_chunked: bodies from the AWS documentation's examples, from an encoder written here from the
spec, and from botocore / boto3 themselves; tampering, truncation and framing errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import os
import zlib
from dataclasses import dataclass
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import boto3
import pytest
from botocore import httpchecksum
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.s3 import checksums, payload, sigv4
from gateway.s3.aws_chunked import AwsChunkedReader
from gateway.s3.errors import S3Error

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ACCESS_KEY = "TESSERAACCESSKEY0001"
SECRET_KEY = "chunked/secret+key"


class FakeStream:
    """In-memory stand-in for aiohttp's StreamReader (readexactly / readline / read over bytes)."""

    def __init__(self, data: bytes, line_limit: int | None = None) -> None:
        self._data = data
        self._pos = 0
        self._line_limit = line_limit
        self.largest_read = 0

    async def readexactly(self, n: int) -> bytes:
        self.largest_read = max(self.largest_read, n)
        end = self._pos + n
        chunk = self._data[self._pos : end]
        self._pos = min(end, len(self._data))
        if len(chunk) < n:
            raise asyncio.IncompleteReadError(chunk, n)
        return chunk

    async def readline(self) -> bytes:
        end = self._data.find(b"\n", self._pos)
        end = len(self._data) if end < 0 else end + 1
        if self._line_limit is not None and end - self._pos > self._line_limit:
            raise ValueError("Line is too long")
        line = self._data[self._pos : end]
        self._pos = end
        return line

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


# -- an encoder, from the spec ("Transfer Payload in Multiple Chunks", "trailing headers") -------------


def derive_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@dataclass
class ChunkSigner:
    key: bytes
    amz_date: str
    scope: str
    previous: str  # starts as the seed signature

    def chunk(self, data: bytes) -> str:
        sts = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                self.previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        self.previous = hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()
        return self.previous

    def trailer(self, lines: list[tuple[str, str]]) -> str:
        canonical = "".join(f"{name}:{value}\n" for name, value in lines)
        sts = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                self.amz_date,
                self.scope,
                self.previous,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()


def encode(
    data: bytes,
    chunk_size: int,
    *,
    signer: ChunkSigner | None = None,
    trailers: list[tuple[str, str]] | None = None,
    blank_before_trailers: bool = False,
) -> bytes:
    out = io.BytesIO()
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for piece in pieces:
        out.write(b"%x" % len(piece))
        if signer is not None:
            out.write(b";chunk-signature=" + signer.chunk(piece).encode())
        out.write(b"\r\n")
        if piece:
            out.write(piece + b"\r\n")
    if trailers is None:
        out.write(b"\r\n")
        return out.getvalue()
    if blank_before_trailers:
        out.write(b"\r\n")
    for name, value in trailers:
        out.write(f"{name}:{value}\r\n".encode())
    if signer is not None:
        out.write(f"x-amz-trailer-signature:{signer.trailer(trailers)}\r\n".encode())
    out.write(b"\r\n")
    return out.getvalue()


def b64_crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def make_auth(mode: str, seed: str = "ab" * 32, amz_date: str = "20240102T030405Z") -> payload.AuthContext:
    date = amz_date[:8]
    return payload.AuthContext(
        access_key=ACCESS_KEY,
        region="us-east-1",
        date=date,
        amz_date=amz_date,
        scope=f"{date}/us-east-1/s3/aws4_request",
        signing_key=derive_key(SECRET_KEY, date, "us-east-1"),
        seed_signature=seed,
        payload_hash=mode,
        presigned=False,
    )


def signer_for(auth: payload.AuthContext) -> ChunkSigner:
    return ChunkSigner(derive_key(SECRET_KEY, auth.date, auth.region), auth.amz_date, auth.scope, auth.seed_signature)


async def decode(reader: AwsChunkedReader, limit: int | None = None) -> bytes:
    out = bytearray()
    async for piece in reader:
        assert 0 < len(piece) <= (limit or len(piece))
        out += piece
    assert await reader.read() == b""  # stays at the end
    return bytes(out)


async def expect_error(reader: AwsChunkedReader) -> tuple[S3Error, bytes]:
    """Read until the reader fails; return the error and the data handed out before it."""
    out = bytearray()
    with pytest.raises(S3Error) as exc:
        while piece := await reader.read():
            out += piece
    with pytest.raises(S3Error) as again:  # the failure sticks
        await reader.read()
    assert again.value is exc.value
    return exc.value, bytes(out)


DATA = os.urandom(200_000) + b"tail"
MODES = [payload.STREAMING_PAYLOAD, payload.STREAMING_PAYLOAD_TRAILER, payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER]


def signed_chunks(auth: payload.AuthContext) -> bool:
    return auth.payload_hash in (payload.STREAMING_PAYLOAD, payload.STREAMING_PAYLOAD_TRAILER)


def has_trailer(auth: payload.AuthContext) -> bool:
    return auth.payload_hash in (payload.STREAMING_PAYLOAD_TRAILER, payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER)


def build(mode: str, data: bytes = DATA, chunk_size: int = 65536, **kw: object) -> tuple[bytes, payload.AuthContext]:
    auth = make_auth(mode)
    signer = signer_for(auth) if signed_chunks(auth) else None
    trailers = [("x-amz-checksum-crc32", b64_crc32(data))] if has_trailer(auth) else None
    return encode(data, chunk_size, signer=signer, trailers=trailers, **kw), auth  # type: ignore[arg-type]


def reader_for(body: bytes, auth: payload.AuthContext, **kw: object) -> AwsChunkedReader:
    trailer = "x-amz-checksum-crc32" if has_trailer(auth) else None
    options = {"trailer": trailer, **kw}
    return AwsChunkedReader(FakeStream(body), auth.payload_hash, auth=auth, **options)  # type: ignore[arg-type]


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


# -- what botocore / boto3 send ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "cls"),
    [
        ("CRC32", httpchecksum.Crc32Checksum),
        ("CRC32C", httpchecksum.CrtCrc32cChecksum),
        ("CRC64NVME", httpchecksum.CrtCrc64NvmeChecksum),
        ("SHA1", httpchecksum.Sha1Checksum),
        ("SHA256", httpchecksum.Sha256Checksum),
    ],
)
async def test_botocore_aws_chunked_wrapper(algo: str, cls: type) -> None:
    name = checksums.header_name(algo)
    data = os.urandom(2 * 1024 * 1024 + 5)  # the wrapper cuts 1 MiB chunks
    body = httpchecksum.AwsChunkedWrapper(io.BytesIO(data), checksum_cls=cls, checksum_name=name).read()
    reader = AwsChunkedReader(FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER, trailer=name)
    assert await decode(reader, limit=1024 * 1024) == data
    expected = cls()
    expected.update(data)
    assert reader.checksum_b64 == expected.b64digest()


def capture_boto3_put(data: bytes, **params: object) -> AWSRequest:
    """The request boto3's put_object sends to an https endpoint (where it uses aws-chunked by default)."""
    client = boto3.client(
        "s3",
        endpoint_url="https://127.0.0.1:9000",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    captured: list[AWSRequest] = []

    def before_send(request: AWSRequest, **_: object) -> AWSResponse:
        captured.append(request)
        raw = mock.Mock()
        raw.stream.return_value = iter([b""])
        return AWSResponse(request.url, 200, {"ETag": '"x"'}, raw)

    client.meta.events.register("before-send", before_send)
    client.put_object(Bucket="bucket", Key="dir/ünï code+.bin", Body=data, **params)
    return captured[0]


@pytest.mark.parametrize("algo", [None, "CRC32C", "SHA256", "CRC64NVME"])
async def test_boto3_put_object_end_to_end(algo: str | None) -> None:
    data = os.urandom(1024 * 1024 * 2 + 333)
    request = capture_boto3_put(data, **({"ChecksumAlgorithm": algo} if algo else {}))
    parts = urlsplit(request.url)
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        headers.add(key, value.decode() if isinstance(value, bytes) else value)
    assert headers["x-amz-content-sha256"] == payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER
    assert headers["content-encoding"] == "aws-chunked"
    body = request.body.read()

    auth = sigv4.verify(request.method, parts.path, parse_qsl(parts.query), headers, lambda _: SECRET_KEY)
    assert auth.streaming and has_trailer(auth) and not signed_chunks(auth)
    reader = AwsChunkedReader.from_request(FakeStream(body), auth, headers)
    assert await decode(reader) == data
    assert reader.checksum_algorithm == (algo or "CRC32")
    assert reader.checksum_b64 == base64.b64encode(checksums.compute(algo or "CRC32", data)).decode()


async def test_botocore_signed_request_then_signed_chunks() -> None:
    """Seed signature from botocore's own signer, chunks signed by the encoder above."""

    class Streaming(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return payload.STREAMING_PAYLOAD_TRAILER

    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(DATA)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    request = AWSRequest(method="PUT", url="http://127.0.0.1:9000/bucket/key", headers=headers)
    Streaming(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "eu-west-3").add_auth(request)
    received = CIMultiDict({k: v for k, v in request.headers.items()})
    received["Host"] = "127.0.0.1:9000"
    auth = sigv4.verify("PUT", "/bucket/key", [], received, lambda _: SECRET_KEY)

    body = encode(DATA, 65536, signer=signer_for(auth), trailers=[("x-amz-checksum-crc32", b64_crc32(DATA))])
    reader = AwsChunkedReader.from_request(FakeStream(body), auth, received)
    assert await decode(reader) == DATA


# -- tampering ----------------------------------------------------------------------------------------------


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


# -- framing errors and truncation --------------------------------------------------------------------------


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


# -- fuzzing: hostile bodies give an S3Error, never another exception, never other data ------------------

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
