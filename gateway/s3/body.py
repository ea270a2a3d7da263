"""Request bodies as the EC writer reads them: decoded, size-checked, hashed and verified.

Every check that needs the whole body (declared length, x-amz-content-sha256, checksums,
trailers) happens before the writer sees the end, or in verified_checksums() before commit,
so a body that fails one is never acknowledged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web

from gateway.s3 import checksums
from gateway.s3.aws_chunked import AwsChunkedReader
from gateway.s3.errors import S3Error
from gateway.s3.payload import PayloadHashVerifier
from gateway.s3.request import S3Request, content_md5

_SINGLE_CHECKSUM = "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
_DISCONNECTS = (aiohttp.ClientPayloadError, ConnectionError, asyncio.IncompleteReadError, EOFError)


async def _next_piece(content: aiohttp.StreamReader) -> bytes:
    """The next piece of a body as it arrived; b"" at its end.

    Unlike readany(), which joins everything buffered into a new bytes object, this hands over
    the received pieces themselves: the EC writer joins them into segments anyway.
    """
    while True:
        data, http_chunk_end = await content.readchunk()
        # (b"", True) marks a transfer-encoding chunk's end, or (empty body) is said again after the end.
        if data or not http_chunk_end or content.at_eof():
            return data


class _ShaBehind:
    """Feeds a signed payload's SHA-256 off the event loop, in order, up to DEPTH batches behind.

    SHA-256 costs about as much CPU per byte as MD5; done inline in read() it held the event loop for
    it, so a boto3 or aws-cli PUT (which sign the payload over http) read its body at the pace of one
    core shared with everything else. hashlib releases the GIL, so a thread of the request's own does
    it beside the loop. Pieces are immutable bytes, held (not copied) until hashed. A body smaller than
    one batch never starts the thread.
    """

    BATCH = 1 << 20
    DEPTH = 2

    def __init__(self, verifier: PayloadHashVerifier) -> None:
        self._verifier = verifier
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[asyncio.Future[None]] = deque()

    def _hash(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._verifier.update(piece)

    async def add(self, piece: bytes) -> None:
        self._batch.append(piece)
        self._batch_bytes += len(piece)
        if self._batch_bytes < self.BATCH:
            return
        if len(self._pending) >= self.DEPTH:
            await self._pending.popleft()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._pending.append(asyncio.get_running_loop().run_in_executor(self._pool, self._hash, batch))

    async def verify(self) -> None:
        """Once every piece has been added: wait for the thread, hash the rest, compare."""
        await self.close()
        self._hash(self._batch)
        self._batch = []
        self._verifier.verify()

    async def close(self) -> None:
        """Wait for what is running (also on failure: no thread outlives the request)."""
        try:
            results = await asyncio.gather(*self._pending, return_exceptions=True)
        finally:
            self._pending.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
        for r in results:
            if isinstance(r, BaseException):
                raise r


class Body:
    """A client's request body (plain or aws-chunked) as a BodySource."""

    def __init__(
        self,
        http: web.Request,
        declared: int | None,
        limit: int,
        chunked: AwsChunkedReader | None,
        sha256: PayloadHashVerifier | None,
        expected: dict[str, str],
    ) -> None:
        self._http = http
        self._declared = declared
        self._limit = limit
        self._chunked = chunked
        self._sha256 = _ShaBehind(sha256) if sha256 is not None else None
        self._expected = expected  # algorithm -> base64 the client announced in a header
        self.hashers = [checksums.Checksum(a) for a in expected]
        self.received = 0

    @property
    def declared(self) -> int | None:
        """The body's size as the headers declare it (decoded, for aws-chunked); None if they do not."""
        return self._declared

    @property
    def algorithms(self) -> set[str]:
        found = {h.algorithm for h in self.hashers}
        if self._chunked is not None and self._chunked.checksum_algorithm:
            found.add(self._chunked.checksum_algorithm)
        return found

    def add_checksum(self, algorithm: str) -> None:
        self.hashers.append(checksums.Checksum(checksums.normalize_algorithm(algorithm)))

    async def read(self) -> bytes:
        try:
            try:
                piece = await (self._chunked.read() if self._chunked else _next_piece(self._http.content))
            except _DISCONNECTS:
                raise S3Error("IncompleteBody") from None
            if piece:
                self.received += len(piece)
                if self.received > self._limit:
                    raise S3Error("EntityTooLarge", MaxSizeAllowed=str(self._limit))
                if self._sha256 is not None:
                    await self._sha256.add(piece)
                return piece
            if self._declared is not None and self.received != self._declared:
                raise S3Error("IncompleteBody")
            if self._sha256 is not None:
                await self._sha256.verify()
            return b""
        except BaseException:
            if self._sha256 is not None:
                await self._sha256.close()
            raise

    def verified_checksums(self) -> dict[str, str]:
        """Checksums of the whole body (announced ones verified): algorithm -> base64. BadDigest on mismatch."""
        out: dict[str, str] = {}
        for h in self.hashers:
            value = h.b64()
            want = self._expected.get(h.algorithm)
            if want is not None and want != value:
                raise S3Error(
                    "BadDigest",
                    f"The {checksums.header_name(h.algorithm)} you specified did not match the calculated checksum.",
                )
            out[h.algorithm] = value
        if self._chunked is not None and self._chunked.checksum_algorithm and self._chunked.checksum_b64:
            out[self._chunked.checksum_algorithm] = self._chunked.checksum_b64
        return out


def _announced_checksums(req: S3Request) -> dict[str, str]:
    found = checksums.checksum_headers(req.headers.keys())
    if len(found) > 1:
        raise S3Error("InvalidRequest", _SINGLE_CHECKSUM)
    out = {}
    for algo, name in found.items():
        checksums.decode_b64(algo, req.headers[name])  # shape check: InvalidRequest if malformed
        out[algo] = req.headers[name].strip()
    sdk_algo = req.headers.get("x-amz-sdk-checksum-algorithm")
    if sdk_algo:
        checksums.normalize_algorithm(sdk_algo)
    return out


async def open_body(req: S3Request, limit: int) -> Body:
    """Check what the headers promise about the body, and wrap it for reading."""
    http, auth = req.http, req.auth
    expected = _announced_checksums(req)
    chunked = None
    if auth is not None and auth.streaming:
        chunked = AwsChunkedReader.from_request(http.content, auth, http.headers)
        if expected and chunked.checksum_algorithm:
            raise S3Error("InvalidRequest", _SINGLE_CHECKSUM)
        declared = chunked.decoded_length
    else:
        if http.content_length is None and http.headers.get("Transfer-Encoding", "").lower() != "chunked":
            raise S3Error("MissingContentLength")
        declared = http.content_length
    if declared is not None and declared > limit:
        raise S3Error("EntityTooLarge", MaxSizeAllowed=str(limit), ProposedSize=str(declared))
    sha = PayloadHashVerifier(auth.content_sha256) if auth is not None and auth.content_sha256 else None
    return Body(http, declared, limit, chunked, sha, expected)


def check_small_body(req: S3Request, raw: bytes, body_checksums: bool) -> None:
    """Verify a whole (XML) request body against x-amz-content-sha256 and Content-MD5, and, when the
    operation's x-amz-checksum-* headers describe the body (not an object, as in Complete), against those."""
    if req.auth is not None and req.auth.content_sha256:
        verifier = PayloadHashVerifier(req.auth.content_sha256)
        verifier.update(raw)
        verifier.verify()
    want_md5 = content_md5(req.headers)
    if want_md5 is not None and hashlib.md5(raw).digest() != want_md5:
        raise S3Error("BadDigest")
    for algo, value in _announced_checksums(req).items() if body_checksums else ():
        if checksums.decode_b64(algo, value) != checksums.compute(algo, raw):
            raise S3Error(
                "BadDigest", f"The {checksums.header_name(algo)} you specified did not match the calculated checksum."
            )


class StreamBody:
    """An object's own bytes (a copy's source) as a BodySource, with checksums computed on the way."""

    def __init__(self, stream: AsyncIterator[bytes] | None, algorithms: Iterable[str]) -> None:
        self._stream = stream
        self.hashers = [checksums.Checksum(checksums.normalize_algorithm(a)) for a in algorithms]

    async def read(self) -> bytes:
        if self._stream is None:
            return b""
        return await anext(self._stream, b"")

    def computed_checksums(self) -> dict[str, str]:
        return {h.algorithm: h.b64() for h in self.hashers}


def stream_source(stream: AsyncIterator[bytes] | None, algorithms: Iterable[str]) -> StreamBody:
    return StreamBody(stream, algorithms)
