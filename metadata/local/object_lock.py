"""LocalIndex's object lock (metadata/object_lock.py): a bucket's lock configuration, a transaction body run by
LocalIndex like those of versions.py. Retention and legal hold are LocalIndex._rewrite's, as tags are."""

from __future__ import annotations

import lmdb

from metadata import object_lock
from metadata.index import NoSuchBucket
from metadata.local.versions import Dbs
from metadata.records import BucketRecord, decode, encode


def set_bucket_lock(txn: lmdb.Transaction, dbs: Dbs, name: str, mode: str, days: int, years: int) -> None:
    object_lock.check_rule(mode, days, years)
    data = txn.get(name.encode(), db=dbs["buckets"])
    if data is None:
        raise NoSuchBucket(name)
    rec = decode(BucketRecord, data)
    if rec.versioning != "Enabled":
        raise ValueError("object lock needs versioning Enabled")
    rec.object_lock, rec.lock_mode, rec.lock_days, rec.lock_years = True, mode, days, years
    txn.put(name.encode(), encode(rec), db=dbs["buckets"])
