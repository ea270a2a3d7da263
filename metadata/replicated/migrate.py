"""Moving a single-copy index (the embedded server's before it kept copies on its drives) into the copies, once.

Everything is read through the Index seam (buckets, objects with their inline bytes, uploads and their
parts, users, the repair queue) and written straight into every copy's store as versions of one timestamp.
Leases are not carried over: they are minutes long and every holder takes its lease again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from metadata import keys
from metadata.hlc import HLC
from metadata.index import Index, IndexUnavailable
from metadata.records import encode
from metadata.replica.merge import Entry
from metadata.replica.protocol import ReplicaDown, Write
from metadata.replicated.admin import _position
from metadata.replicated.drive_copies import DriveCopy
from metadata.replicated.index import _upload_key

log = logging.getLogger(__name__)

BATCH = 500
PAGE = 1000


async def _records(source: Index) -> AsyncIterator[tuple[str, bytes, bytes]]:
    """(table, key, encoded record) for everything the source holds."""
    for bucket in await source.list_buckets():
        yield "buckets", bucket.name.encode(), encode(bucket)
        after = ""
        while True:
            page = await source.list_objects(bucket.name, start_after=after, max_keys=PAGE)
            for listed in page.objects:
                man = await source.get_object(bucket.name, listed.key)  # with its inline bytes
                if man is not None:
                    yield "objects", keys.composite(man.bucket, man.key), encode(man)
            if not page.truncated or not page.objects:
                break
            after = page.objects[-1].key
        key_marker = upload_marker = ""
        while True:
            ups = await source.list_uploads(
                bucket.name, key_marker=key_marker, upload_id_marker=upload_marker, max_uploads=PAGE
            )
            for up in ups.uploads:
                yield "uploads", up.upload_id.encode(), encode(up)
                yield "upload_keys", _upload_key(up), encode(up)
                marker = 0
                while True:
                    parts = await source.list_parts(up.upload_id, marker, PAGE)
                    for part in parts.parts:
                        yield "parts", keys.part_key(up.upload_id, part.number), encode(part)
                    if not parts.truncated:
                        break
                    marker = parts.next_marker
            if not ups.truncated or not ups.uploads:
                break
            key_marker, upload_marker = ups.uploads[-1].key, ups.uploads[-1].upload_id
    for user in await source.list_users():
        yield "users", user.name.encode(), encode(user)
    after_entry = None
    while repairs := await source.list_repairs(after_entry, PAGE):
        for e in repairs:
            yield "repairs", _position(e), encode(e)
        after_entry = repairs[-1]


async def migrate(source: Index, copies: Sequence[DriveCopy], quorum: int) -> tuple[int, list[DriveCopy]]:
    """Copy every record of `source` into every copy; returns (records, the copies that took all of them).

    Raises IndexUnavailable when fewer than `quorum` copies took everything (the source is left as it is).
    """
    ts = HLC().now()
    alive = [c for c in copies if c.store is not None]
    count = 0
    batch: list[Write] = []

    async def flush() -> None:
        nonlocal alive
        results = await asyncio.gather(*(c.put(batch) for c in alive), return_exceptions=True)
        for c, r in zip(alive, results, strict=True):
            if isinstance(r, ReplicaDown):
                log.warning("migration: index copy %s failed: %s", c.name, r)
            elif isinstance(r, BaseException):
                raise r
        alive = [c for c, r in zip(alive, results, strict=True) if not isinstance(r, BaseException)]
        if len(alive) < quorum:
            raise IndexUnavailable(f"only {len(alive)} copies of the index could be written ({quorum} needed)")
        batch.clear()

    async for table, key, value in _records(source):
        batch.append(Write(table, key, Entry(ts, False, value)))
        count += 1
        if len(batch) >= BATCH:
            await flush()
    await flush()
    return count, alive
