"""Workloads: put, get, mixed, list and stat against one bucket, every GET verified byte for byte.

Object content is a pure function of (seed, key, size): a window into a pseudo-random pool that starts at an
offset derived from the key. So the verifier needs no copy of what was put, generating a body costs no CPU
(slices of the pool), and a wrong, stale or swapped object shows up as a byte mismatch.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp

from bench.client import PIECE, S3Client, S3RequestError

OPS = ("put", "get", "mixed", "list", "stat")
POOL_SIZE = 8 << 20  # larger than any single piece, so every piece is one contiguous slice of pool+pool
MAX_ERROR_EXAMPLES = 5


class VerifyError(Exception):
    """A GET returned other bytes (or another length) than the ones put."""


class Content:
    """Deterministic per-key object bytes."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        pool = random.Random(seed).randbytes(POOL_SIZE)
        self._pool2_bytes = pool + pool
        self._pool2 = memoryview(self._pool2_bytes)

    def offset(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}\0{key}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % POOL_SIZE

    def window(self, key: str, start: int, length: int) -> Iterator[memoryview]:
        """Bytes [start, start+length) of key's object, as zero-copy pieces of at most PIECE bytes."""
        pos = (self.offset(key) + start) % POOL_SIZE
        while length > 0:
            n = min(length, PIECE)
            yield self._pool2[pos : pos + n]
            pos = (pos + n) % POOL_SIZE
            length -= n

    def body(self, key: str, size: int) -> bytes | Iterator[memoryview]:
        """A request body: plain bytes for small objects (cheapest for aiohttp), else a piece stream."""
        if size <= PIECE:
            off = self.offset(key)
            return bytes(self._pool2[off : off + size])
        return self.window(key, 0, size)

    def verifier(self, key: str, size: int) -> Verifier:
        return Verifier(self._pool2_bytes, self.offset(key), size)


class Verifier:
    """Fed the response body piece by piece; compares each piece with the expected window.

    bytes == bytes is a memcmp; memoryview == memoryview compares item by item (~5x slower), so the
    expected window is sliced from a bytes pool (a copy of piece size, cheap next to the compare).
    """

    __slots__ = ("_pool2", "bad_at", "off", "pos", "size")

    def __init__(self, pool2: bytes, off: int, size: int) -> None:
        self._pool2, self.off, self.size, self.pos = pool2, off, size, 0
        self.bad_at: int | None = None

    def __call__(self, piece: bytes) -> None:
        if self.bad_at is not None:
            self.pos += len(piece)
            return
        done = 0
        while done < len(piece):
            if self.pos >= self.size:
                self.bad_at = self.pos  # longer than it should be
                break
            n = min(len(piece) - done, POOL_SIZE, self.size - self.pos)
            start = (self.off + self.pos) % POOL_SIZE
            got = piece if done == 0 and n == len(piece) else piece[done : done + n]
            expected = self._pool2[start : start + n]
            if got != expected:
                self.bad_at = self.pos + _first_difference(got, expected)
                break
            done += n
            self.pos += n
        self.pos += len(piece) - done

    def check(self, key: str) -> None:
        if self.bad_at is not None:
            raise VerifyError(f"{key}: wrong byte at offset {self.bad_at}")
        if self.pos != self.size:
            raise VerifyError(f"{key}: got {self.pos} bytes, expected {self.size}")


def _first_difference(a: bytes, b: bytes) -> int:
    lo, hi = 0, len(a)
    while hi - lo > 64:  # bisect on slices: each comparison is a memcmp
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    return next(i for i in range(lo, hi) if a[i] != b[i])


@dataclass
class Spec:
    op: str
    size: int
    concurrency: int = 16
    duration: float = 10.0
    objects: int | None = None  # objects prepared for get/stat/list/mixed
    get_ratio: float = 0.5  # mixed: share of GETs, the rest PUTs
    part_size: int | None = None  # multipart PUT when the object is larger than this
    seed: int = 1
    prefix: str = "bench/"
    max_ops: int | None = None  # stop after this many operations (tests)
    first_worker: int = 0  # worker numbering offset, so client processes never share PUT keys or RNG seeds

    def prepared_objects(self) -> int:
        if self.objects is not None:
            return self.objects
        # Enough that keys spread over the index, bounded to a few hundred MiB of preparation.
        return max(self.concurrency, min(1000, (256 << 20) // max(self.size, 1)))


@dataclass
class Sample:
    op: str
    start: float
    end: float
    nbytes: int
    ok: bool
    items: int = 0  # keys listed, for list


@dataclass
class Result:
    spec: Spec
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    client_cpu_s: float = 0.0

    def record_error(self, exc: BaseException) -> None:
        kind = _error_kind(exc)
        self.errors[kind] += 1
        if len(self.error_examples) < MAX_ERROR_EXAMPLES:
            self.error_examples.append(f"{kind}: {exc}"[:300])


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, VerifyError):
        return "verify"
    if isinstance(exc, S3RequestError):
        return exc.code
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return type(exc).__name__


class Workload:
    def __init__(self, client: S3Client, bucket: str, spec: Spec) -> None:
        if spec.op not in OPS:
            raise ValueError(f"op must be one of {', '.join(OPS)}")
        self.client, self.bucket, self.spec = client, bucket, spec
        self.content = Content(spec.seed)
        self.keys: list[str] = []

    def object_key(self, i: int) -> str:
        return f"{self.spec.prefix}obj/{i:08d}"

    def use_prepared(self) -> None:
        """Take the keys another process's prepare() put (they are a function of the spec)."""
        if self.spec.op != "put":
            self.keys = [self.object_key(i) for i in range(self.spec.prepared_objects())]

    async def prepare(self) -> None:
        """Put the objects that get/stat/list/mixed read; any failure here aborts the run."""
        self.use_prepared()
        queue = iter(self.keys)

        async def uploader() -> None:
            for key in queue:
                await self.put(key)

        await asyncio.gather(*(uploader() for _ in range(min(self.spec.concurrency, len(self.keys)))))

    async def put(self, key: str) -> None:
        size, part = self.spec.size, self.spec.part_size
        if part is None or size <= part:
            await self.client.put_object(self.bucket, key, self.content.body(key, size), size)
            return
        upload_id = await self.client.create_multipart_upload(self.bucket, key)
        try:
            etags = []
            for number, start in enumerate(range(0, size, part), 1):
                n = min(part, size - start)
                body = self.content.window(key, start, n)
                etags.append(await self.client.upload_part(self.bucket, key, upload_id, number, body, n))
            await self.client.complete_multipart_upload(self.bucket, key, upload_id, etags)
        except BaseException:
            try:
                await self.client.abort_multipart_upload(self.bucket, key, upload_id)
            except Exception:
                pass  # the run records the original error; leftover parts go with the bucket
            raise

    async def get(self, key: str) -> None:
        verifier = self.content.verifier(key, self.spec.size)
        await self.client.get_object(self.bucket, key, verifier)
        verifier.check(key)

    async def stat(self, key: str) -> None:
        headers = await self.client.head_object(self.bucket, key)
        if int(headers.get("Content-Length", -1)) != self.spec.size:
            raise VerifyError(f"{key}: HEAD says {headers.get('Content-Length')} bytes, expected {self.spec.size}")

    async def run(self) -> Result:
        spec = self.spec
        result = Result(spec)
        deadline = time.perf_counter() + spec.duration
        budget = [spec.max_ops if spec.max_ops is not None else -1]

        async def worker(wid: int) -> None:
            rng = random.Random(spec.seed * 1000 + wid)
            seq = 0
            while time.perf_counter() < deadline and budget[0] != 0:
                budget[0] -= 1
                op = spec.op
                if op == "mixed":
                    op = "get" if rng.random() < spec.get_ratio else "put"
                items, nbytes = 0, spec.size
                t0 = time.perf_counter()
                try:
                    if op == "put":
                        if spec.op == "mixed":  # overwrite with the same bytes: concurrent GETs stay verifiable
                            key = rng.choice(self.keys)
                        else:
                            key = f"{spec.prefix}put/{wid:04d}/{seq:09d}"
                            seq += 1
                        await self.put(key)
                    elif op == "get":
                        await self.get(rng.choice(self.keys))
                    elif op == "stat":
                        nbytes = 0
                        await self.stat(rng.choice(self.keys))
                    else:
                        nbytes = 0
                        keys, _ = await self.client.list_objects(self.bucket, f"{spec.prefix}obj/", 1000)
                        items = len(keys)
                    result.samples.append(Sample(op, t0, time.perf_counter(), nbytes, True, items))
                except (TimeoutError, aiohttp.ClientError, S3RequestError, VerifyError, OSError) as exc:
                    result.samples.append(Sample(op, t0, time.perf_counter(), 0, False))
                    result.record_error(exc)
                    if not isinstance(exc, VerifyError | S3RequestError):
                        await asyncio.sleep(0.05)  # a dead endpoint must not turn this loop into a spin

        cpu0 = time.process_time()
        result.started = time.perf_counter()
        await asyncio.gather(*(worker(spec.first_worker + i) for i in range(spec.concurrency)))
        result.ended = time.perf_counter()
        result.client_cpu_s = time.process_time() - cpu0
        return result

    async def cleanup(self) -> None:
        """Delete everything under the run's prefix (listing, so it works whatever the run created)."""
        keys = [key async for key in self.client.list_all(self.bucket, self.spec.prefix)]
        if keys:
            await self.client.delete_objects(self.bucket, keys)
