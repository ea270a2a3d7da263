"""What every S3 handler works with: the index, the object layer, who is who, and how much may be in flight."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.accounts.users import UserDirectory
from gateway.care.maintenance import Maintenance
from gateway.objects.layer import ObjectLayer
from gateway.s3.errors import S3Error
from gateway.siblings import Siblings
from metadata.index import Index
from metadata.records import BucketRecord

BUSY_REQUESTS = 4  # more client requests in flight than this and repair waits (for a bounded time)
DEFAULT_MAX_REQUESTS = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """Past either cap a new S3 request is answered 503 SlowDown at once, before its body is read."""

    requests: int = DEFAULT_MAX_REQUESTS  # S3 requests in flight in this process
    body_bytes: int = 256 << 20  # request-body bytes in flight (each request counted up to its window)
    body_window: int = 4 << 20  # the most of one body held in memory at once

    @classmethod
    def derive(cls, segment_size: int, requests: int = 0, body_bytes: int = 0) -> Limits:
        """0: the default. A streamed body holds aiohttp's read buffer (two segments), the segment
        being encoded and its fragments: about four segments. The body budget is an eighth of RAM
        (at least 64 MiB, at most 2 GiB) when not given."""
        window = 4 * segment_size
        if not body_bytes:
            body_bytes = min(max(_memory() // 8, 64 << 20), 2 << 30)
        return cls(requests or DEFAULT_MAX_REQUESTS, max(body_bytes, window), window)


def _memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 30


@dataclass(slots=True)
class Gateway:
    index: Index
    layer: ObjectLayer
    users: UserDirectory
    region: str = "us-east-1"
    domains: tuple[str, ...] = ("localhost",)  # bucket.<domain> hosts are virtual-hosted-style requests
    readiness: Callable[[], Awaitable[str | None]] | None = None  # None when ready, else the reason
    maintenance: Maintenance | None = None  # the repairer, scans, GC and admin jobs
    meta_addresses: tuple[str, ...] = ()  # the metadata services, for status; () for a local index
    # The embedded server's index copies as status lists them ({address, ok, error} each); None: no copies.
    index_copies: Callable[[], list[dict[str, Any]]] | None = None
    inflight: int = 0  # client requests being served now: background repair yields to them
    siblings: Siblings | None = None  # the server's other worker processes, when it has several
    limits: Limits = field(default_factory=Limits)
    body_bytes: int = 0  # request-body bytes admitted and in flight (Limits.body_window each at most)

    def busy(self) -> bool:
        return self.inflight > BUSY_REQUESTS

    def admit(self) -> None:
        """Refuse a new request early when too much is in flight; the request counts itself already.
        One request alone is always admitted, whatever its size."""
        if self.inflight > self.limits.requests or (self.inflight > 1 and self.body_bytes > self.limits.body_bytes):
            raise S3Error("SlowDown")

    def is_root(self, access_key: str) -> bool:
        return self.users.is_root(access_key)

    async def bucket(self, name: str) -> BucketRecord:
        rec = await self.index.get_bucket(name) if name else None
        if rec is None:
            raise S3Error("NoSuchBucket", BucketName=name)
        return rec
