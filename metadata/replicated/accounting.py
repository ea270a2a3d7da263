"""ReplicatedIndex's quotas, usage, webhook targets and event queue (docs/quotas.md, docs/notifications.md).

Tables (metadata/replica/store.py):
    usage           the objects and versions tables' keys -> msgpack [bytes, objects] of the record written there
    notify_targets  name -> NotifyTarget
    events          seq -> EventRecord   (the queue)

Usage is a mirror, not a counter: every write to the objects or versions table carries, in the same batch and
with the same timestamp, a write of the same key to `usage` holding only that record's size (a tombstone for a
tombstone). Merge then picks the same winner in both tables, whatever the order writes arrive in, so two gateways
writing the same key at once (unlocked puts) or different keys cannot lose or double an update, and anti-entropy
and read repair keep it like any table. A bucket's usage is the sum of its range of `usage`: a merged scan of
small entries, read when a write to a bucket with a quota is checked and for `admin bucket info`. The embedded
server's copies of its index carry no mirror (EmbeddedIndex._expand): each copy's totals of its manifests serve.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import msgpack

from metadata import keys
from metadata.index import NoSuchBucket
from metadata.records import BucketRecord, EventRecord, NotifyTarget, Usage, UserRecord, decode, encode
from metadata.replica.manifests import stored_usage
from metadata.replica.merge import Entry
from metadata.replica.packed import MANIFEST_TABLES
from metadata.replica.protocol import Write
from metadata.replicated.merged_scan import Merged
from metadata.replicated.quorum import SCAN_BATCH, Coordinator, tomb


def mirror(writes: list[Write]) -> list[Write]:
    """`writes` with, for each write to the objects or versions table, its usage entry (same key, same stamp)."""
    extra = []
    for w in writes:
        if w.table not in MANIFEST_TABLES:
            continue
        if w.entry.tombstone:
            extra.append(Write("usage", w.key, tomb(w.entry.hlc)))
        else:
            u = stored_usage(w.entry.value)
            extra.append(Write("usage", w.key, Entry(w.entry.hlc, False, msgpack.packb([u.bytes, u.objects]))))
    return writes + extra if extra else writes


def summing(read: Callable[[bytes], Sequence[int]]) -> Callable[[Merged], Awaitable[Usage]]:
    """A merged scan's use: the (bytes, objects) that read() gives of each live entry, summed."""

    async def total(merged: Merged) -> Usage:
        u = Usage()
        while (item := await merged.next()) is not None:
            if not item[1].tombstone:
                size, objects = read(item[1].value)
                u.bytes += size
                u.objects += objects
        return u

    return total


def event_writes(events: Sequence[EventRecord], ts: int) -> list[Write]:
    return [Write("events", ev.seq.encode(), Entry(ts, False, encode(ev))) for ev in events]


def _check(max_size: int, max_objects: int) -> None:
    if max_size < 0 or max_objects < 0:
        raise ValueError("a quota is 0 (none) or more")


class ReplicatedAccounting(Coordinator):
    def _expand(self, writes: list[Write]) -> list[Write]:
        return mirror(writes)

    async def _change_bucket(self, name: str, change: Callable[[BucketRecord], None]) -> None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            rec = decode(BucketRecord, current.value)
            change(rec)
            return [Write("buckets", name.encode(), Entry(ts, False, encode(rec)))], None

        await self._locked("buckets", name.encode(), decide)

    async def set_bucket_quota(self, name: str, max_size: int, max_objects: int) -> None:
        _check(max_size, max_objects)

        def change(rec: BucketRecord) -> None:
            rec.quota_size, rec.quota_objects = max_size, max_objects

        await self._change_bucket(name, change)

    async def set_notifications(self, name: str, config: str) -> None:
        def change(rec: BucketRecord) -> None:
            rec.notifications = config

        await self._change_bucket(name, change)

    async def set_user_quota(self, name: str, max_size: int, max_objects: int) -> UserRecord | None:
        _check(max_size, max_objects)

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], UserRecord | None]:
            if current is None or current.tombstone:
                return [], None
            rec = decode(UserRecord, current.value)
            rec.quota_size, rec.quota_objects = max_size, max_objects
            return [Write("users", name.encode(), Entry(ts, False, encode(rec)))], rec

        return await self._locked("users", name.encode(), decide)

    async def bucket_usage(self, name: str) -> Usage:
        (e,) = await self._read("buckets", [name.encode()])
        if e is None or e.tombstone:
            raise NoSuchBucket(name)
        return await self._scan("usage", keys.namespace(name), summing(lambda v: msgpack.unpackb(v)))

    async def put_notify_target(self, rec: NotifyTarget) -> None:
        rec.created = rec.created or time.time()
        await self._write([Write("notify_targets", rec.name.encode(), Entry(self._hlc.now(), False, encode(rec)))])

    async def list_notify_targets(self) -> list[NotifyTarget]:
        return [decode(NotifyTarget, v) for _, v in await self._live("notify_targets", b"")]

    async def remove_notify_target(self, name: str) -> bool:
        (e,) = await self._read("notify_targets", [name.encode()])
        if e is None or e.tombstone:
            return False
        await self._write([Write("notify_targets", name.encode(), tomb(self._hlc.now()))])
        return True

    async def list_events(self, limit: int = 1000) -> list[EventRecord]:
        if limit <= 0:
            return []
        got = await self._scan("events", b"", lambda m: m.live(limit), batch=min(SCAN_BATCH, limit + 1))
        return [decode(EventRecord, v) for _, v in got]

    async def update_events(self, done: Sequence[str], retry: Sequence[EventRecord]) -> None:
        ts = self._hlc.now()
        writes = [Write("events", seq.encode(), tomb(ts)) for seq in done]
        if retry:
            still = await self._read("events", [ev.seq.encode() for ev in retry])
            writes += [
                Write("events", ev.seq.encode(), Entry(ts, False, encode(ev)))
                for ev, e in zip(retry, still, strict=True)
                if e is not None and not e.tombstone
            ]
        await self._write(writes)

    async def event_backlog(self) -> int:
        async def count(merged: Merged) -> int:
            n = 0
            while (item := await merged.next()) is not None:
                n += not item[1].tombstone
            return n

        return await self._scan("events", b"", count)
