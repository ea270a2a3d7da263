"""LocalIndex's object lock (metadata/object_lock.py): a bucket's lock configuration, and in-place revisions of
one version's retention or legal hold. Like versions.py, each function is a transaction body run by LocalIndex."""

from __future__ import annotations

from collections.abc import Callable

import lmdb

from metadata import keys, object_lock, versioning
from metadata.index import NoSuchBucket
from metadata.local.versions import Dbs, get
from metadata.records import BucketRecord, ObjectManifest, decode, encode


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


def revise(
    txn: lmdb.Transaction,
    dbs: Dbs,
    bucket: str,
    key: str,
    s3_version_id: str,
    change: Callable[[ObjectManifest], ObjectManifest],
) -> ObjectManifest | None:
    """The version with this S3 id ("" null) as `change` makes it, written back where it is (current or not);
    None if there is no such version or it is a delete marker."""
    target = get(txn, dbs, bucket, key, s3_version_id)
    if target is None or target.delete_marker:
        return None
    current_key = keys.encode(keys.composite(bucket, key))
    data = txn.get(current_key, db=dbs["objects"])
    is_current = data is not None and decode(ObjectManifest, data, with_inline=False).version_id == target.version_id
    man = change(target)
    if is_current:
        txn.put(current_key, encode(man), db=dbs["objects"])
    else:
        txn.put(keys.encode(versioning.version_composite(man)), encode(man), db=dbs["versions"])
    return man
