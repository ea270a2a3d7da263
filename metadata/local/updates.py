"""LocalIndex's in-place updates: a bucket's configurations and an object's ACL (metadata/local/store.py runs
these, each in a write transaction of its own)."""

from __future__ import annotations

from typing import Any

import lmdb

from metadata import keys
from metadata.index import NoSuchBucket
from metadata.records import BUCKET_FIXED, BucketRecord, ObjectManifest, apply_changes, decode, encode

Dbs = dict[str, Any]


def update_bucket(txn: lmdb.Transaction, dbs: Dbs, name: str, changes: dict[str, str | None]) -> BucketRecord:
    data = txn.get(name.encode(), db=dbs["buckets"])
    if data is None:
        raise NoSuchBucket(name)
    rec = apply_changes(decode(BucketRecord, data), changes, BUCKET_FIXED)
    txn.put(name.encode(), encode(rec), db=dbs["buckets"])
    return rec


def update_object(
    txn: lmdb.Transaction, dbs: Dbs, bucket: str, key: str, version_id: str, changes: dict[str, str | None]
) -> ObjectManifest | None:
    k = keys.encode(keys.composite(bucket, key))
    data = txn.get(k, db=dbs["objects"])
    man = decode(ObjectManifest, data) if data is not None else None
    if man is None or man.version_id != version_id:
        return None  # overwritten or deleted since it was read: the newer write stands
    man = apply_changes(man, changes, frozenset())
    txn.put(k, encode(man), db=dbs["objects"])
    return man
