"""LocalIndex's quotas, usage counters, webhook targets and event queue (docs/quotas.md, docs/notifications.md).

Named databases:
    usage           bucket name -> Usage   (one counter per bucket, changed in the transaction of each write)
    notify_targets  name -> NotifyTarget
    events          seq -> EventRecord     (the queue: seq order is arrival order)

LMDB has one writer at a time, so a counter read and rewritten inside a write's transaction is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import lmdb

from metadata.index import NoSuchBucket
from metadata.records import (
    BucketRecord,
    EventRecord,
    NotifyTarget,
    ObjectManifest,
    Usage,
    UserRecord,
    decode,
    encode,
    usage_of,
)

DBS = ("usage", "notify_targets", "events")

Dbs = dict[str, Any]
T = TypeVar("T")


def check_quota_values(max_size: int, max_objects: int) -> None:
    if max_size < 0 or max_objects < 0:
        raise ValueError("a quota is 0 (none) or more")


def _usage(txn: lmdb.Transaction, dbs: Dbs, bucket: str) -> Usage:
    data = txn.get(bucket.encode(), db=dbs["usage"])
    return Usage() if data is None else decode(Usage, data)


def account(
    txn: lmdb.Transaction,
    dbs: Dbs,
    bucket: str,
    added: ObjectManifest | None,
    removed: ObjectManifest | None,
    events: Sequence[EventRecord] = (),
) -> None:
    """A write's side effects, in its transaction: `added` now stored, `removed` gone for good; events queued."""
    plus, minus = usage_of(added), usage_of(removed)
    if plus != minus:
        u = _usage(txn, dbs, bucket)
        u.bytes += plus.bytes - minus.bytes
        u.objects += plus.objects - minus.objects
        txn.put(bucket.encode(), encode(u), db=dbs["usage"])
    for ev in events:
        txn.put(ev.seq.encode(), encode(ev), db=dbs["events"])


def forget_bucket(txn: lmdb.Transaction, dbs: Dbs, bucket: str) -> None:
    txn.delete(bucket.encode(), db=dbs["usage"])


class LocalAccounting:
    """The Index's quota, usage and notification operations for LocalIndex (mixed into it)."""

    _db: Dbs
    _run: Callable[..., Any]

    def _require(self, txn: lmdb.Transaction, name: str) -> BucketRecord:
        data = txn.get(name.encode(), db=self._db["buckets"])
        if data is None:
            raise NoSuchBucket(name)
        return decode(BucketRecord, data)

    async def _update_bucket(self, name: str, change: Callable[[BucketRecord], None]) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            rec = self._require(txn, name)
            change(rec)
            txn.put(name.encode(), encode(rec), db=self._db["buckets"])

        await self._run(True, tx)

    async def set_bucket_quota(self, name: str, max_size: int, max_objects: int) -> None:
        check_quota_values(max_size, max_objects)

        def change(rec: BucketRecord) -> None:
            rec.quota_size, rec.quota_objects = max_size, max_objects

        await self._update_bucket(name, change)

    async def set_notifications(self, name: str, config: str) -> None:
        def change(rec: BucketRecord) -> None:
            rec.notifications = config

        await self._update_bucket(name, change)

    async def set_user_quota(self, name: str, max_size: int, max_objects: int) -> UserRecord | None:
        check_quota_values(max_size, max_objects)

        def tx(txn: lmdb.Transaction) -> UserRecord | None:
            data = txn.get(name.encode(), db=self._db["users"])
            if data is None:
                return None
            rec = decode(UserRecord, data)
            rec.quota_size, rec.quota_objects = max_size, max_objects
            txn.put(name.encode(), encode(rec), db=self._db["users"])
            return rec

        return await self._run(True, tx)

    async def bucket_usage(self, name: str) -> Usage:
        def tx(txn: lmdb.Transaction) -> Usage:
            self._require(txn, name)
            return _usage(txn, self._db, name)

        return await self._run(False, tx)

    async def put_notify_target(self, rec: NotifyTarget) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            txn.put(rec.name.encode(), encode(rec), db=self._db["notify_targets"])

        await self._run(True, tx)

    async def list_notify_targets(self) -> list[NotifyTarget]:
        def tx(txn: lmdb.Transaction) -> list[NotifyTarget]:
            return [decode(NotifyTarget, v) for _, v in txn.cursor(self._db["notify_targets"])]

        return await self._run(False, tx)

    async def remove_notify_target(self, name: str) -> bool:
        def tx(txn: lmdb.Transaction) -> bool:
            return bool(txn.delete(name.encode(), db=self._db["notify_targets"]))

        return await self._run(True, tx)

    async def list_events(self, limit: int = 1000) -> list[EventRecord]:
        def tx(txn: lmdb.Transaction) -> list[EventRecord]:
            out: list[EventRecord] = []
            for _, v in txn.cursor(self._db["events"]):
                if len(out) >= limit:
                    break
                out.append(decode(EventRecord, v))
            return out

        return await self._run(False, tx)

    async def update_events(self, done: Sequence[str], retry: Sequence[EventRecord]) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            db = self._db["events"]
            for seq in done:
                txn.delete(seq.encode(), db=db)
            for ev in retry:
                if txn.get(ev.seq.encode(), db=db) is not None:
                    txn.put(ev.seq.encode(), encode(ev), db=db)

        await self._run(True, tx)

    async def event_backlog(self) -> int:
        def tx(txn: lmdb.Transaction) -> int:
            return int(txn.stat(self._db["events"])["entries"])

        return await self._run(False, tx)
