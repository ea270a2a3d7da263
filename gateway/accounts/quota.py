"""Whose quota a write counts against: bucket owners' user records (briefly cached) and their usage."""

from __future__ import annotations

import time

from metadata.index import Index, NoSuchBucket
from metadata.records import Usage, UserRecord

USER_CACHE_SECONDS = 2.0  # how long users' quotas are reused before they are read again

_users: dict[int, tuple[float, dict[str, UserRecord]]] = {}  # per index: when read, access key -> user


async def owner(index: Index, access_key: str) -> UserRecord | None:
    """The user with this access key (None for the root, or no such user)."""
    when, by_key = _users.get(id(index), (0.0, {}))
    if time.monotonic() - when > USER_CACHE_SECONDS:
        by_key = {u.access_key: u for u in await index.list_users()}
        _users[id(index)] = (time.monotonic(), by_key)
    return by_key.get(access_key)


def forget_users(index: Index) -> None:
    """A user's quota changed through this gateway: read users again at the next check."""
    _users.pop(id(index), None)


async def owner_usage(index: Index, access_key: str) -> Usage:
    """What all the buckets owned by `access_key` hold together."""
    total = Usage()
    for rec in await index.list_buckets():
        if rec.owner == access_key:
            try:
                u = await index.bucket_usage(rec.name)
            except NoSuchBucket:  # deleted since listed: it holds nothing
                continue
            total.bytes += u.bytes
            total.objects += u.objects
    return total
