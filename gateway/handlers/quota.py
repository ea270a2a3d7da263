"""Bucket and user quotas: a write that would take a bucket or its owner past a quota is refused with
403 QuotaExceeded before its data is stored (docs/quotas.md)."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts.quota import owner as owner_of
from gateway.accounts.quota import owner_usage
from gateway.context import Gateway
from gateway.s3.errors import S3Error
from metadata.index import NoSuchBucket
from metadata.records import BucketRecord, ObjectManifest, PartRecord, Usage, UserRecord

# What admitted writes of this process will add once stored, by (index, scope): scope is "b:" + bucket or
# "u:" + owner. A check counts them beside the index's usage, so concurrent writes through one gateway cannot
# together pass a quota; each request's share is released when its answer is ready (release()).
_pending: dict[tuple[int, str], Usage] = {}
# Shares released while a check was reading the usage may be missing from what it read (a read of several
# index copies is no snapshot of one moment): a check adds those released since it began. Kept while a check
# that began before them is still reading.
_released: list[tuple[int, tuple[int, str], int, int]] = []  # (sequence, (index, scope), bytes, objects)
_sequence = [0]
_reading: dict[int, int] = {}  # checks in progress: the sequence each began at -> how many
_RESERVED = "tessera.quota.reserved"


def _with_pending(gw: Gateway, scope: str, usage: Usage) -> Usage:
    held = _pending.get((id(gw.index), scope))
    return usage if held is None else Usage(usage.bytes + held.bytes, usage.objects + held.objects)


def _reserve(gw: Gateway, http: web.Request, scopes: list[str], size: int, objects: int) -> None:
    size, objects = max(size, 0), max(objects, 0)
    if not size and not objects:
        return
    for scope in scopes:
        held = _pending.setdefault((id(gw.index), scope), Usage())
        held.bytes += size
        held.objects += objects
    http[_RESERVED] = [*http.get(_RESERVED, []), (scopes, size, objects)]


def release(gw: Gateway, http: web.Request) -> None:
    """Give back what a request reserved (its write is committed by now, or failed)."""
    for scopes, size, objects in http.pop(_RESERVED, []):
        for scope in scopes:
            key = (id(gw.index), scope)
            held = _pending[key]
            held.bytes -= size
            held.objects -= objects
            if not held.bytes and not held.objects:
                del _pending[key]
            if _reading:
                _sequence[0] += 1
                _released.append((_sequence[0], key, size, objects))


def _begin_read() -> int:
    start = _sequence[0]
    _reading[start] = _reading.get(start, 0) + 1
    return start


def _end_read(start: int) -> None:
    _reading[start] -= 1
    if not _reading[start]:
        del _reading[start]
    oldest = min(_reading, default=_sequence[0])
    while _released and _released[0][0] <= oldest:
        _released.pop(0)


def _released_since(gw: Gateway, scope: str, start: int, usage: Usage) -> Usage:
    key = (id(gw.index), scope)
    extra = [(b, o) for seq, k, b, o in _released if seq > start and k == key]
    return Usage(usage.bytes + sum(b for b, _ in extra), usage.objects + sum(o for _, o in extra))


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
    gw: Gateway,
    http: web.Request,
    bucket: BucketRecord,
    size: int,
    objects: int = 1,
    replacing: ObjectManifest | None = None,
) -> None:
    """Refuse a write adding `size` bytes and `objects` objects to `bucket` (less what it replaces for good, in a
    bucket whose versioning was never configured) if that passes the bucket's or its owner's quota; else reserve
    them until the request is answered."""
    own, owner = await _limits(gw, bucket)
    if not own and owner is None:
        return
    if replacing is not None and not bucket.versioning and not replacing.delete_marker:
        size, objects = size - replacing.size, objects - 1
    # Both usages are read before anything is compared, and nothing is awaited from the comparison to the
    # reservation: a concurrent request of this process sees this one's share.
    start = _begin_read()
    try:
        try:
            held = await gw.index.bucket_usage(bucket.name) if own else Usage()
            owned = await owner_usage(gw.index, bucket.owner) if owner is not None else Usage()
        except NoSuchBucket:  # deleted since the request read it
            raise S3Error("NoSuchBucket", BucketName=bucket.name) from None
        # Writes answered while we read may be missing from what was read: count them (at worst twice: safe).
        held = _released_since(gw, "b:" + bucket.name, start, held)
        owned = _released_since(gw, "u:" + bucket.owner, start, owned)
    finally:
        _end_read(start)
    scopes = []
    if own:
        scopes.append("b:" + bucket.name)
        held = _with_pending(gw, scopes[-1], held)
        past = _past(held, size, objects, bucket.quota_size, bucket.quota_objects)
        if past is not None:
            raise _refuse(f"Bucket {bucket.name}", past)
    if owner is not None:
        scopes.append("u:" + bucket.owner)
        past = _past(_with_pending(gw, scopes[-1], owned), size, objects, owner.quota_size, owner.quota_objects)
        if past is not None:
            raise _refuse(f"User {owner.name}", past)
    _reserve(gw, http, scopes, size, objects)


async def check_stored(gw: Gateway, http: web.Request, bucket: BucketRecord, key: str, part: PartRecord) -> None:
    """check_put() for a body whose size was known only once stored: its data is discarded if refused."""
    try:
        await check_put(gw, http, bucket, key, part.size)
    except S3Error:
        gw.layer.discard([part])
        raise


async def check_put(gw: Gateway, http: web.Request, bucket: BucketRecord, key: str, size: int | None) -> None:
    """check() for a new version of `key` of a declared size (None: not known before the body is read)."""
    own, owner = await _limits(gw, bucket)
    if not own and owner is None:
        return
    current = None if bucket.versioning else await gw.index.get_object(bucket.name, key)
    await check(gw, http, bucket, size or 0, 1, current)
