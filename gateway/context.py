"""What every S3 handler works with: the index, the object layer, who is who."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.accounts.users import UserDirectory
from gateway.care.maintenance import Maintenance
from gateway.objects.layer import ObjectLayer
from gateway.s3.errors import S3Error
from gateway.siblings import Siblings
from metadata.index import Index
from metadata.records import BucketRecord

BUSY_REQUESTS = 4  # more client requests in flight than this and repair waits (for a bounded time)


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
    inflight: int = 0  # client requests being served now: background repair yields to them
    siblings: Siblings | None = None  # the server's other worker processes, when it has several

    def busy(self) -> bool:
        return self.inflight > BUSY_REQUESTS

    def is_root(self, access_key: str) -> bool:
        return self.users.is_root(access_key)

    async def bucket(self, name: str) -> BucketRecord:
        rec = await self.index.get_bucket(name) if name else None
        if rec is None:
            raise S3Error("NoSuchBucket", BucketName=name)
        return rec
