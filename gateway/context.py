"""What every S3 handler works with: the index, the object layer, who is who."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.errors import S3Error
from gateway.object_layer import ObjectLayer
from metadata.index import Index
from metadata.records import BucketRecord


@dataclass(slots=True)
class Gateway:
    index: Index
    layer: ObjectLayer
    lookup_secret: Callable[[str], str | None]
    region: str = "us-east-1"
    domains: tuple[str, ...] = ("localhost",)  # bucket.<domain> hosts are virtual-hosted-style requests
    readiness: Callable[[], Awaitable[str | None]] | None = None  # None when ready, else the reason

    async def bucket(self, name: str) -> BucketRecord:
        rec = await self.index.get_bucket(name) if name else None
        if rec is None:
            raise S3Error("NoSuchBucket", BucketName=name)
        return rec
