"""LocalIndex's update of a bucket's access configurations (metadata/local/store.py runs it in a write
transaction of its own)."""

from __future__ import annotations

from typing import Any

import lmdb

from metadata.index import NoSuchBucket
from metadata.records import BUCKET_CHANGEABLE, BucketRecord, apply_changes, decode, encode

Dbs = dict[str, Any]


def update_bucket(txn: lmdb.Transaction, dbs: Dbs, name: str, changes: dict[str, str | None]) -> BucketRecord:
    data = txn.get(name.encode(), db=dbs["buckets"])
    if data is None:
        raise NoSuchBucket(name)
    rec = apply_changes(decode(BucketRecord, data), changes, BUCKET_CHANGEABLE)
    txn.put(name.encode(), encode(rec), db=dbs["buckets"])
    return rec
