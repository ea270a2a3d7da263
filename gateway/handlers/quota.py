"""Bucket and user quotas: a write that would take a bucket or its owner past a quota is refused with
403 QuotaExceeded before its data is stored (docs/quotas.md)."""

from __future__ import annotations

from gateway.accounts.quota import owner as owner_of
from gateway.accounts.quota import owner_usage
from gateway.context import Gateway
from gateway.s3.errors import S3Error
from metadata.records import BucketRecord, ObjectManifest, PartRecord, Usage, UserRecord


def _past(usage: Usage, size: int, objects: int, max_size: int, max_objects: int) -> tuple[str, str, str] | None:
    """The limit the write passes, what is held and what the write adds, for the message; None if it fits."""
    if max_size and size > 0 and usage.bytes + size > max_size:
        return f"{max_size} bytes", f"{usage.bytes} bytes", f"{size} bytes"
    if max_objects and objects > 0 and usage.objects + objects > max_objects:
        return f"{max_objects} objects", f"{usage.objects} objects", f"{objects} object"
    return None


def _refuse(what: str, past: tuple[str, str, str]) -> S3Error:
    limit, holds, adds = past
    return S3Error(
        "QuotaExceeded", f"{what} quota exceeded: it may hold {limit}, holds {holds}; this write adds {adds}.", 403
    )


async def _limits(gw: Gateway, bucket: BucketRecord) -> tuple[bool, UserRecord | None]:
    """Whether the bucket has a quota; its owner if they have one."""
    owner = await owner_of(gw.index, bucket.owner)
    limited = owner if owner is not None and (owner.quota_size or owner.quota_objects) else None
    return bool(bucket.quota_size or bucket.quota_objects), limited


async def check(
    gw: Gateway, bucket: BucketRecord, size: int, objects: int = 1, replacing: ObjectManifest | None = None
) -> None:
    """Refuse a write adding `size` bytes and `objects` objects to `bucket` (less what it replaces for good, in a
    bucket whose versioning was never configured) if that passes the bucket's or its owner's quota."""
    own, owner = await _limits(gw, bucket)
    if not own and owner is None:
        return
    if replacing is not None and not bucket.versioning and not replacing.delete_marker:
        size, objects = size - replacing.size, objects - 1
    if own:
        past = _past(await gw.index.bucket_usage(bucket.name), size, objects, bucket.quota_size, bucket.quota_objects)
        if past is not None:
            raise _refuse(f"Bucket {bucket.name}", past)
    if owner is not None:
        past = _past(await owner_usage(gw.index, bucket.owner), size, objects, owner.quota_size, owner.quota_objects)
        if past is not None:
            raise _refuse(f"User {owner.name}", past)


async def check_stored(gw: Gateway, bucket: BucketRecord, key: str, part: PartRecord) -> None:
    """check_put() for a body whose size was known only once stored: its data is discarded if refused."""
    try:
        await check_put(gw, bucket, key, part.size)
    except S3Error:
        gw.layer.discard([part])
        raise


async def check_put(gw: Gateway, bucket: BucketRecord, key: str, size: int | None) -> None:
    """check() for a new version of `key` of a declared size (None: not known before the body is read)."""
    own, owner = await _limits(gw, bucket)
    if not own and owner is None:
        return
    current = None if bucket.versioning else await gw.index.get_object(bucket.name, key)
    await check(gw, bucket, size or 0, 1, current)
