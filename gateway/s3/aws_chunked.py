"""Decoding of `Content-Encoding: aws-chunked` request bodies.

The three framings S3 clients send, told apart by x-amz-content-sha256:

  STREAMING-AWS4-HMAC-SHA256-PAYLOAD           <hex>;chunk-signature=<sig>\\r\\n<data>\\r\\n ...
                                               0;chunk-signature=<sig>\\r\\n\\r\\n
  STREAMING-UNSIGNED-PAYLOAD-TRAILER           <hex>\\r\\n<data>\\r\\n ... 0\\r\\n
                                               x-amz-checksum-crc32:<b64>\\r\\n\\r\\n
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER   signed chunks, 0;chunk-signature=<sig>\\r\\n, then the
                                               trailer lines, x-amz-trailer-signature:<sig>\\r\\n, \\r\\n

Chunk signatures chain from the request's seed signature; each one is checked before that chunk's bytes
are handed out. The checksum named in x-amz-trailer is computed over the decoded data as it streams and
compared with the trailer at the end. Memory is bounded by one chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Protocol

from gateway.s3 import checksums
from gateway.s3.errors import S3Error
from gateway.s3.numbers import decimal
from gateway.s3.payload import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    AuthContext,
)

MAX_CHUNK_SIZE = 16 * 1024 * 1024  # clients use 64 KiB .. 8 MiB
OFFLOAD_THRESHOLD = 1024 * 1024  # SHA chunks at least this big in a thread (hashlib releases the GIL)
MAX_LINE = 4096  # a chunk header or trailer line is ~100 bytes
MAX_TRAILER_LINES = 16
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEX_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE_EXT_RE = re.compile(rb"chunk-signature=([0-9a-f]{64})")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


class ByteStream(Protocol):
    """What the reader needs from the request body (aiohttp's StreamReader has it)."""

    async def readexactly(self, n: int) -> bytes: ...

    async def readline(self) -> bytes: ...


def _invalid(detail: str) -> S3Error:
    return S3Error("InvalidRequest", f"Invalid aws-chunked encoding: {detail}")


def _incomplete(detail: str | None = None) -> S3Error:
    return S3Error("IncompleteBody", detail)


def _malformed_trailer(detail: str) -> S3Error:
    return S3Error(
        "MalformedTrailerError",
        f"The request contained trailing data that was not well-formed or did not conform to our "
        f"published schema: {detail}",
        400,
    )


def parse_trailer_header(value: str | None) -> str | None:
    """The checksum algorithm announced by x-amz-trailer ('x-amz-checksum-crc32' -> 'CRC32'), or None."""
    if value is None:
        return None
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    if not names:
        return None
    if len(names) > 1:
        raise S3Error(
            "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    algorithm = checksums.algorithm_from_header(names[0])
    if algorithm is None:
        raise S3Error("InvalidRequest", "The value specified in the x-amz-trailer header is not supported")
    return algorithm


class AwsChunkedReader:
    """Async reader of the decoded data of an aws-chunked body.

    `await read()` returns the next piece of data (one chunk at most), b"" once the body is complete and
    every check passed (chunk signatures, decoded length, trailer signature and checksum). Any failure
    raises an S3Error, and every later read() raises it again. After the end, `trailers` holds the trailer
    headers (lowercase names) and `checksum_b64` the checksum computed over the data.
    """

    def __init__(
        self,
        stream: ByteStream,
        payload_hash: str,
        *,
        auth: AuthContext | None = None,
        trailer: str | None = None,
        decoded_length: int | None = None,
        checksum_algorithm: str | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        offload_threshold: int | None = OFFLOAD_THRESHOLD,
    ) -> None:
        """`payload_hash` is the x-amz-content-sha256 value; `auth` is required for the signed framings.
        `trailer` is the x-amz-trailer header; `checksum_algorithm` asks for a checksum of the data even
        when no trailer carries one (e.g. to check an x-amz-checksum-* request header)."""
        if payload_hash not in (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER):
            raise ValueError(f"not an aws-chunked payload: {payload_hash!r}")
        self._signed = payload_hash in (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER)
        self._signed_trailer = payload_hash == STREAMING_PAYLOAD_TRAILER
        self._allows_trailer = payload_hash != STREAMING_PAYLOAD
        if self._signed and auth is None:
            raise ValueError("signed aws-chunked payloads need the request's AuthContext")

        trailer_algorithm = parse_trailer_header(trailer)
        if trailer_algorithm is not None and not self._allows_trailer:
            raise S3Error("InvalidRequest", f"x-amz-trailer is not allowed with x-amz-content-sha256 {payload_hash}")
        if checksum_algorithm is not None:
            checksum_algorithm = checksums.normalize_algorithm(checksum_algorithm)
            if trailer_algorithm is not None and checksum_algorithm != trailer_algorithm:
                raise S3Error(
                    "InvalidRequest",
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                )
        self.checksum_algorithm = trailer_algorithm or checksum_algorithm
        self._trailer_name = checksums.HEADER_NAMES[trailer_algorithm] if trailer_algorithm else None
        self._checksum = checksums.Checksum(self.checksum_algorithm) if self.checksum_algorithm else None

        self._stream = stream
        self._decoded_length = decoded_length
        self._max_chunk_size = max_chunk_size
        # Only SHA work is worth a thread hop: CRCs run at several GB/s inline, SHA-256 at ~1.5 GB/s,
        # which would hold the event loop ~5 ms per 8 MiB chunk.
        sha_work = self._signed or self.checksum_algorithm in ("SHA1", "SHA256")
        self._offload_threshold = offload_threshold if sha_work else None
        self._signing_key = b""
        self._previous_signature = self._chunk_prefix = self._trailer_prefix = ""
        if auth is not None:
            self._signing_key = auth.signing_key
            self._previous_signature = auth.seed_signature
            self._chunk_prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{auth.amz_date}\n{auth.scope}\n"
            self._trailer_prefix = f"AWS4-HMAC-SHA256-TRAILER\n{auth.amz_date}\n{auth.scope}\n"

        self.bytes_read = 0
        self.done = False
        self.trailers: dict[str, str] = {}
        self.checksum_b64: str | None = None
        self._error: S3Error | None = None

    @classmethod
    def from_request(
        cls, stream: ByteStream, auth: AuthContext, headers: Mapping[str, str], **options: object
    ) -> AwsChunkedReader:
        """A reader for a request whose AuthContext says its body is aws-chunked (auth.streaming)."""
        decoded_length: int | None = None
        raw_length = headers.get("x-amz-decoded-content-length")
        if raw_length is not None:
            decoded_length = decimal(raw_length.strip())
            if decoded_length is None:
                raise S3Error(
                    "InvalidArgument",
                    "x-amz-decoded-content-length must be a non-negative integer.",
                    ArgumentName="x-amz-decoded-content-length",
                    ArgumentValue=raw_length,
                )
        return cls(
            stream,
            auth.payload_hash,
            auth=auth,
            trailer=headers.get("x-amz-trailer"),
            decoded_length=decoded_length,
            **options,  # type: ignore[arg-type]
        )

    @property
    def decoded_length(self) -> int | None:
        """The body's length after decoding, as x-amz-decoded-content-length announced it (None if it did not)."""
        return self._decoded_length

    def __aiter__(self) -> AwsChunkedReader:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    async def read(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self.done:
            return b""
        try:
            return await self._read_chunk()
        except S3Error as exc:
            self._error = exc
            raise

    async def _read_chunk(self) -> bytes:
        size, signature = self._parse_chunk_header(await self._readline())
        if size > self._max_chunk_size:
            raise _invalid(f"chunk of {size} bytes is larger than the {self._max_chunk_size} bytes allowed")
        if self._decoded_length is not None and self.bytes_read + size > self._decoded_length:
            raise _incomplete(
                f"The body is longer than the {self._decoded_length} bytes of x-amz-decoded-content-length."
            )
        if size == 0:
            if signature is not None:
                self._verify_chunk(signature, EMPTY_SHA256)
            await self._finish()
            return b""
        data = await self._readexactly(size)
        if await self._readexactly(2) != b"\r\n":
            raise _invalid("chunk data is not followed by CRLF (chunk longer than its announced size?)")
        if self._offload_threshold is not None and size >= self._offload_threshold:
            data_hash = await asyncio.get_running_loop().run_in_executor(None, self._digest, data)
        else:
            data_hash = self._digest(data)
        if signature is not None:
            self._verify_chunk(signature, data_hash)
        self.bytes_read += size
        return data

    def _digest(self, data: bytes) -> str:
        """Feed the running checksum and return the chunk's SHA-256 (hex) when chunks are signed."""
        if self._checksum is not None:
            self._checksum.update(data)
        return hashlib.sha256(data).hexdigest() if self._signed else ""

    def _parse_chunk_header(self, line: bytes) -> tuple[int, str | None]:
        size_text, _, extensions = line.partition(b";")
        if not _HEX_SIZE_RE.fullmatch(size_text):
            raise _invalid("bad chunk size")
        if not self._signed:
            return int(size_text, 16), None  # extensions carry nothing we need here
        match = _SIGNATURE_EXT_RE.fullmatch(extensions)
        if match is None:
            raise _invalid("chunk without a valid chunk-signature")
        return int(size_text, 16), match.group(1).decode("ascii")

    def _verify_chunk(self, signature: str, data_hash: str) -> None:
        string_to_sign = f"{self._chunk_prefix}{self._previous_signature}\n{EMPTY_SHA256}\n{data_hash}"
        expected = hmac.new(self._signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise S3Error("SignatureDoesNotMatch", StringToSign=string_to_sign, SignatureProvided=signature)
        self._previous_signature = signature

    async def _finish(self) -> None:
        """After the zero-length chunk: the trailer section, then every end-of-body check."""
        if self._decoded_length is not None and self.bytes_read != self._decoded_length:
            raise _incomplete(
                f"The body has {self.bytes_read} bytes, x-amz-decoded-content-length says {self._decoded_length}."
            )
        trailers: dict[str, str] = {}
        trailer_signature: str | None = None
        lines = 0
        skipped_blank = False
        while True:
            raw = await self._read_raw_line()
            if not raw and skipped_blank:
                raise _malformed_trailer("the body ended without the trailer announced in x-amz-trailer")
            line = self._strip_crlf(raw)
            if not line:
                # Some signed-chunk clients end the zero-length chunk with its own CRLF before the
                # trailers; tolerate that blank line when a trailer is still due.
                if lines == 0 and (self._trailer_name is not None or self._signed_trailer):
                    lines += 1
                    skipped_blank = True
                    continue
                break
            lines += 1
            if lines > MAX_TRAILER_LINES:
                raise _malformed_trailer("too many trailer lines")
            name_bytes, sep, value_bytes = line.partition(b":")
            try:
                name = name_bytes.decode("ascii").strip().lower()
                value = value_bytes.decode("ascii").strip()
            except UnicodeDecodeError:
                raise _malformed_trailer("non-ASCII trailer") from None
            if not sep or not name:
                raise _malformed_trailer("trailer line without a name")
            if name == TRAILER_SIGNATURE and self._signed_trailer and trailer_signature is None:
                trailer_signature = value
                continue
            if name != self._trailer_name or name in trailers or trailer_signature is not None:
                raise _malformed_trailer(f"unexpected trailer {name!r}")
            trailers[name] = value

        if self._trailer_name is not None and self._trailer_name not in trailers:
            raise _malformed_trailer(f"missing trailer {self._trailer_name!r} announced in x-amz-trailer")
        if self._signed_trailer:
            self._verify_trailer(trailers, trailer_signature)
        if self._checksum is not None:
            computed = self._checksum.digest()
            self.checksum_b64 = self._checksum.b64()
            if self._trailer_name is not None:
                sent = checksums.decode_b64(self._checksum.algorithm, trailers[self._trailer_name], trailer=True)
                if not hmac.compare_digest(sent, computed):
                    raise S3Error(
                        "BadDigest", f"The {self._trailer_name} you specified did not match the calculated checksum."
                    )
        self.trailers = trailers
        self.done = True

    def _verify_trailer(self, trailers: dict[str, str], signature: str | None) -> None:
        if signature is None or not _SIGNATURE_RE.fullmatch(signature):
            raise _malformed_trailer(f"missing or malformed {TRAILER_SIGNATURE}")
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
        string_to_sign = (
            f"{self._trailer_prefix}{self._previous_signature}\n{hashlib.sha256(canonical.encode('ascii')).hexdigest()}"
        )
        expected = hmac.new(self._signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise S3Error("SignatureDoesNotMatch", StringToSign=string_to_sign, SignatureProvided=signature)

    async def _readline(self) -> bytes:
        """One CRLF-terminated line, without its CRLF."""
        return self._strip_crlf(await self._read_raw_line())

    async def _read_raw_line(self) -> bytes:
        """One line with its terminator, b"" at the end of the body."""
        try:
            line = await self._stream.readline()
        except asyncio.IncompleteReadError:
            raise _incomplete() from None
        except (ValueError, asyncio.LimitOverrunError):  # aiohttp: line longer than its buffer limit
            raise _invalid("line too long") from None
        if len(line) > MAX_LINE:
            raise _invalid("line too long")
        return line

    @staticmethod
    def _strip_crlf(line: bytes) -> bytes:
        if not line.endswith(b"\r\n"):
            if line.endswith(b"\n"):
                raise _invalid("line not terminated by CRLF")
            raise _incomplete()  # the body ended in the middle of the framing
        return line[:-2]

    async def _readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError:
            raise _incomplete() from None
