"""LocalIndex's versions: noncurrent versions and delete markers (metadata/versioning.py), and the writes of
buckets whose versioning is configured.

Named database:
    versions   keys.encode(keys.version_composite(...)) -> ObjectManifest   (a key's versions, newest first)

Like admin_tables.py, each function is a transaction body run by LocalIndex with the environment's databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lmdb

from metadata import keys, object_lock, versioning
from metadata.index import check_condition
from metadata.records import Condition, LockGuard, ObjectManifest, decode, encode

DBS = ("versions",)

Dbs = dict[str, Any]


def full_key(_raw: bytes, value: bytes) -> bytes:
    """The versions-table composite of a stored version (for hashed, long keys)."""
    return versioning.version_composite(decode(ObjectManifest, value, with_inline=False))


def _get(txn: lmdb.Transaction, db: Any, k: bytes) -> ObjectManifest | None:
    data = txn.get(k, db=db)
    return None if data is None else decode(ObjectManifest, data)


def key_versions(txn: lmdb.Transaction, dbs: Dbs, bucket: str, key: str) -> Iterator[ObjectManifest]:
    """The key's versions-table entries, newest first, read lazily."""
    start = keys.versions_of(bucket, key)
    cur = keys.OrderedCursor(txn.cursor(dbs["versions"]), full_key, scope=keys.namespace(bucket))
    cur.seek(start, inclusive=True)
    while (entry := cur.next()) is not None and entry[0].startswith(start):
        yield decode(ObjectManifest, entry[1])


def _current_key(bucket: str, key: str) -> bytes:
    return keys.encode(keys.composite(bucket, key))


def _apply(
    txn: lmdb.Transaction,
    dbs: Dbs,
    bucket: str,
    key: str,
    plan: versioning.Plan,
    stored: tuple[ObjectManifest, bytes] | None = None,
) -> None:
    """The plan's writes; `stored` is a manifest read from the objects table with its bytes as stored, which
    move to the versions table as they are (not decoded and encoded again: a tenth of a small PUT's CPU)."""
    ck = _current_key(bucket, key)
    if plan.current is None:
        txn.delete(ck, db=dbs["objects"])
    else:
        txn.put(ck, encode(plan.current), db=dbs["objects"])
    for man in plan.drop:
        txn.delete(keys.encode(versioning.version_composite(man)), db=dbs["versions"])
    for man in plan.keep:
        value = stored[1] if stored is not None and man is stored[0] else encode(man)
        txn.put(keys.encode(versioning.version_composite(man)), value, db=dbs["versions"])


def put(txn: lmdb.Transaction, dbs: Dbs, man: ObjectManifest, cond: Condition | None) -> ObjectManifest | None:
    """Index.put_object in a bucket whose versioning is configured (the bucket is known to exist)."""
    raw = txn.get(_current_key(man.bucket, man.key), db=dbs["objects"])
    # Its inline bytes are not needed to decide: they move with the stored bytes.
    current = None if raw is None else decode(ObjectManifest, raw, with_inline=False)
    check_condition(cond, current)
    null = None
    if not man.s3_version_id:
        null = next((v for v in key_versions(txn, dbs, man.bucket, man.key) if not v.s3_version_id), None)
    plan = versioning.plan_put(man, current, null)
    _apply(txn, dbs, man.bucket, man.key, plan, None if raw is None or current is None else (current, raw))
    if plan.freed is not None and plan.freed is current and raw is not None:
        return decode(ObjectManifest, raw)  # whole, for whoever frees its data
    return plan.freed


def get(txn: lmdb.Transaction, dbs: Dbs, bucket: str, key: str, s3_version_id: str) -> ObjectManifest | None:
    """The version with this S3 id ("" for the null version)."""
    current = _get(txn, dbs["objects"], _current_key(bucket, key))
    if versioning.matches(current, s3_version_id):
        return current
    where = versioning.lookup_composite(bucket, key, s3_version_id)
    if where is None:
        return next((v for v in key_versions(txn, dbs, bucket, key) if not v.s3_version_id), None)
    found = _get(txn, dbs["versions"], keys.encode(where))
    return found if versioning.matches(found, s3_version_id) and found is not None and found.key == key else None


def latest(txn: lmdb.Transaction, dbs: Dbs, bucket: str, key: str) -> ObjectManifest | None:
    current = _get(txn, dbs["objects"], _current_key(bucket, key))
    return current if current is not None else next(key_versions(txn, dbs, bucket, key), None)


def delete(
    txn: lmdb.Transaction, dbs: Dbs, bucket: str, key: str, s3_version_id: str, guard: LockGuard | None
) -> ObjectManifest | None:
    target = get(txn, dbs, bucket, key, s3_version_id)
    if target is None:
        return None
    object_lock.check_delete(target, guard)
    current = _get(txn, dbs["objects"], _current_key(bucket, key))
    newest = []
    for v in key_versions(txn, dbs, bucket, key):
        newest.append(v)
        if len(newest) == 2:
            break
    plan = versioning.plan_delete_version(target, current, newest)
    _apply(txn, dbs, bucket, key, plan)
    return plan.freed


def any_in(txn: lmdb.Transaction, dbs: Dbs, bucket: str) -> bool:
    ns = keys.namespace(bucket)
    cur = txn.cursor(dbs["versions"])
    return bool(cur.set_range(ns) and cur.key().startswith(ns))


def rewrite(
    txn: lmdb.Transaction, dbs: Dbs, bucket: str, key: str, version_id: str, change: Callable[[ObjectManifest], bool]
) -> bool:
    """A rewrite in place (update_part, set_object_tags) of a noncurrent version; LocalIndex does the current one."""
    man = versioning.rewritten(key_versions(txn, dbs, bucket, key), version_id, change)
    if man is not None:
        txn.put(keys.encode(versioning.version_composite(man)), encode(man), db=dbs["versions"])
    return man is not None
