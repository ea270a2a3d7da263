"""Shared by the test_aws_chunked* modules: an aws-chunked encoder written here from the spec ("Transfer
Payload in Multiple Chunks", "trailing headers"), an in-memory stream, and readers over encoded bodies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import os
import zlib
from dataclasses import dataclass

import pytest

from gateway.s3 import payload
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
