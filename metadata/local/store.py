"""LocalIndex: the Index seam on a local LMDB environment (the embedded server, and each metadata replica).

Named databases:
    buckets         name -> BucketRecord
    objects         keys.encode(bucket, key) -> ObjectManifest
    uploads         upload_id -> UploadRecord
    uploads_by_key  keys.encode(bucket, key) -> sortable(initiated) + upload_id   (DUPSORT: listing order)
    parts           upload_id + b"\\x00" + number (4 bytes, big-endian) -> PartRecord
    nodes, node_states, drive_owners   see metadata/local/membership.py
    repairs, users, leases   see metadata/local/admin_tables.py (their operations too)
    usage, notify_targets, events   see metadata/local/accounting.py (quotas and event notifications)
    versions        see metadata/local/versions.py (noncurrent versions and delete markers)

Every method is one LMDB transaction run by metadata/lmdb_env.py: off the event loop (LMDB calls
block), writes on one writer thread, group-committed, each on disk (sync on) when the method returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import lmdb

from metadata import keys, listing, lmdb_env, object_lock, versioning
from metadata.index import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Completed,
    NoSuchBucket,
    NoSuchUpload,
    ObjectPage,
    PartPage,
    UploadPage,
    VersionPage,
    check_condition,
    check_delete_condition,
)
from metadata.local import accounting, membership, updates, versions
from metadata.local import admin_tables as admin
from metadata.local import object_lock as lock
from metadata.local.accounting import LocalAccounting, account, forget_bucket
from metadata.object_acl import AclRewrites
from metadata.records import (
    NODE_STATES,
    NULL_VERSION,
    VERSIONING_STATES,
    BucketRecord,
    Condition,
    EventRecord,
    LockGuard,
    NodeRecord,
    ObjectManifest,
    PartRecord,
    UploadRecord,
    decode,
    encode,
)

T = TypeVar("T")
V = TypeVar("V")

_TABLES = ("buckets", "objects", "uploads", "uploads_by_key", "parts", "nodes", "node_states", "drive_owners")
_DBS = (*_TABLES, *admin.DBS, *versions.DBS, *accounting.DBS)
_DUPSORT = ("uploads_by_key",)


def _s3_id(version_id: str) -> str:
    return "" if version_id == NULL_VERSION else version_id


def _upload_dup(rec: UploadRecord) -> bytes:
    return keys.sortable(rec.initiated) + rec.upload_id.encode()


class _BucketCursor(Generic[V]):
    """listing.Cursor over one bucket: S3 keys as UTF-8 bytes, values mapped by `value`."""

    def __init__(
        self, txn: lmdb.Transaction, db: Any, bucket: str, full_key: keys.FullKey, value: Callable[[bytes], V]
    ) -> None:
        self._ns = keys.namespace(bucket)
        self._cur = keys.OrderedCursor(txn.cursor(db), full_key, scope=self._ns)
        self._value = value

    def seek(self, key: bytes, inclusive: bool = False) -> None:
        self._cur.seek(self._ns + key, inclusive)

    def next(self) -> tuple[bytes, V] | None:
        entry = self._cur.next()
        if entry is None:
            return None
        return entry[0][len(self._ns) :], self._value(entry[1])


READER_THREADS = 4


class LocalIndex(LocalAccounting, admin.AdminTables, object_lock.LockRewrites, AclRewrites):
    """The Index on an LMDB environment in a directory. Create it with LocalIndex.open()."""

    def __init__(self, env: lmdb_env.LmdbEnv) -> None:
        self._lmdb = env
        self._db = env.db

    @classmethod
    def open(cls, path: Path, map_size: int = lmdb_env.MAP_SIZE) -> LocalIndex:
        """Open (creating if needed) the index in directory `path`. Synchronous: opening is quick.

        map_size is the most the database may grow to (address space, not disk, is reserved).
        One process may open a given path only once at a time (an LMDB rule); close() first.
        Several processes may open it at once.
        """
        return cls(lmdb_env.LmdbEnv.open(Path(path), _DBS, "index", READER_THREADS, map_size, _DUPSORT))

    @staticmethod
    def prepare(path: Path) -> None:
        """Create the index if needed and check that it opens, keeping no handle: for a parent
        process that starts several others on it (LMDB handles must not cross a fork)."""
        lmdb_env.open_env(Path(path), _DBS, dupsort=_DUPSORT)[0].close()

    async def close(self) -> None:
        await self._lmdb.close()

    # -- plumbing

    async def _run(self, write: bool, fn: Callable[..., T], *args: Any) -> T:
        """fn(txn, *args) in a transaction of its own off the event loop (metadata/lmdb_env.py);
        a write is durable when this returns."""
        if write:
            return await self._lmdb.write(fn, *args)
        return await self._lmdb.read(fn, *args)

    def _get(self, txn: lmdb.Transaction, db: str, key: bytes, cls: type[T]) -> T | None:
        data = txn.get(key, db=self._db[db])
        return None if data is None else decode(cls, data)

    def _require_bucket(self, txn: lmdb.Transaction, name: str) -> BucketRecord:
        rec = self._get(txn, "buckets", name.encode(), BucketRecord)
        if rec is None:
            raise NoSuchBucket(name)
        return rec

    def _require_upload(self, txn: lmdb.Transaction, upload_id: str) -> UploadRecord:
        rec = self._get(txn, "uploads", upload_id.encode(), UploadRecord)
        if rec is None:
            raise NoSuchUpload(upload_id)
        return rec

    def _object_full_key(self, _key: bytes, value: bytes) -> bytes:
        man = decode(ObjectManifest, value)
        return keys.composite(man.bucket, man.key)

    def _upload_of_dup(self, txn: lmdb.Transaction, dup: bytes) -> UploadRecord:
        rec = self._get(txn, "uploads", dup[8:], UploadRecord)
        assert rec is not None, "uploads_by_key entry without its upload"
        return rec

    def _parts(self, txn: lmdb.Transaction, upload_id: str, delete: bool = False) -> list[PartRecord]:
        prefix = keys.parts_prefix(upload_id)
        cur = txn.cursor(self._db["parts"])
        out = []
        ok = cur.set_range(prefix)
        while ok and cur.key().startswith(prefix):
            out.append(decode(PartRecord, cur.value()))
            ok = cur.delete() if delete else cur.next()  # delete() moves to the next entry
        return out

    def _drop_upload(self, txn: lmdb.Transaction, rec: UploadRecord) -> list[PartRecord]:
        txn.delete(rec.upload_id.encode(), db=self._db["uploads"])
        txn.delete(keys.encode(keys.composite(rec.bucket, rec.key)), _upload_dup(rec), db=self._db["uploads_by_key"])
        return self._parts(txn, rec.upload_id, delete=True)

    # -- buckets

    async def create_bucket(self, rec: BucketRecord) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            current = self._get(txn, "buckets", rec.name.encode(), BucketRecord)
            if current is not None:
                raise BucketAlreadyExists(current.owner)
            txn.put(rec.name.encode(), encode(rec), db=self._db["buckets"])

        await self._run(True, tx)

    async def get_bucket(self, name: str) -> BucketRecord | None:
        return self._lmdb.read_here(self._get, "buckets", name.encode(), BucketRecord)

    async def delete_bucket(self, name: str) -> list[PartRecord]:
        def tx(txn: lmdb.Transaction) -> list[PartRecord]:
            self._require_bucket(txn, name)
            ns = keys.namespace(name)
            cur = txn.cursor(self._db["objects"])
            if (cur.set_range(ns) and cur.key().startswith(ns)) or versions.any_in(txn, self._db, name):
                raise BucketNotEmpty(name)
            uploads = txn.cursor(self._db["uploads_by_key"])
            if uploads.set_range(ns) and uploads.key().startswith(ns):  # uploads in progress: abort them first
                raise BucketNotEmpty(name)
            txn.delete(name.encode(), db=self._db["buckets"])
            forget_bucket(txn, self._db, name)
            return []

        return await self._run(True, tx)

    async def update_bucket(self, name: str, changes: dict[str, str | None]) -> BucketRecord:
        return await self._run(True, updates.update_bucket, self._db, name, changes)

    async def set_versioning(self, name: str, status: str) -> None:
        if status not in VERSIONING_STATES:
            raise ValueError(f"versioning must be one of {', '.join(VERSIONING_STATES)}, not {status!r}")

        def tx(txn: lmdb.Transaction) -> None:
            rec = self._require_bucket(txn, name)
            if rec.object_lock and status != "Enabled":
                raise ValueError("a bucket with object lock keeps versioning Enabled")
            rec.versioning = status
            txn.put(name.encode(), encode(rec), db=self._db["buckets"])

        await self._run(True, tx)

    async def set_bucket_lock(self, name: str, mode: str = "", days: int = 0, years: int = 0) -> None:
        await self._run(True, lock.set_bucket_lock, self._db, name, mode, days, years)

    async def list_buckets(self) -> list[BucketRecord]:
        def tx(txn: lmdb.Transaction) -> list[BucketRecord]:
            return [decode(BucketRecord, v) for _, v in txn.cursor(self._db["buckets"])]

        return await self._run(False, tx)

    async def set_bucket_tags(self, name: str, tags: dict[str, str]) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            rec = self._get(txn, "buckets", name.encode(), BucketRecord)
            if rec is None:
                raise NoSuchBucket(name)
            rec.tags = dict(tags)
            txn.put(name.encode(), encode(rec), db=self._db["buckets"])

        await self._run(True, tx)

    async def set_bucket_lifecycle(self, name: str, rules: str) -> None:
        await self._run(True, lock.set_bucket_fields, self._db, name, {"lifecycle": rules})

    async def set_lifecycle_cursor(self, name: str, cursor: str) -> None:
        await self._run(True, lock.set_bucket_fields, self._db, name, {"lifecycle_cursor": cursor})

    # -- objects

    async def put_object(
        self, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        def tx(txn: lmdb.Transaction) -> ObjectManifest | None:
            previous = self._put(txn, man, cond)
            account(txn, self._db, man.bucket, man, previous, events)
            return previous

        return await self._run(True, tx)

    async def get_object(self, bucket: str, key: str) -> ObjectManifest | None:
        k = keys.encode(keys.composite(bucket, key))
        return self._lmdb.read_here(self._get, "objects", k, ObjectManifest)

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectManifest | None:
        return await self._run(False, versions.get, self._db, bucket, key, _s3_id(version_id))

    async def latest_version(self, bucket: str, key: str) -> ObjectManifest | None:
        return await self._run(False, versions.latest, self._db, bucket, key)

    async def delete_version(
        self,
        bucket: str,
        key: str,
        version_id: str,
        guard: LockGuard | None = None,
        events: Sequence[EventRecord] = (),
    ) -> ObjectManifest | None:
        def tx(txn: lmdb.Transaction) -> ObjectManifest | None:
            self._require_bucket(txn, bucket)
            freed = versions.delete(txn, self._db, bucket, key, _s3_id(version_id), guard)
            if freed is not None:
                account(txn, self._db, bucket, None, freed, events)
            return freed

        return await self._run(True, tx)

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
    ) -> VersionPage:
        def tx(txn: lmdb.Transaction) -> VersionPage:
            self._require_bucket(txn, bucket)
            current = _BucketCursor(txn, self._db["objects"], bucket, self._object_full_key, bytes)
            older = _BucketCursor(txn, self._db["versions"], bucket, versions.full_key, bytes)
            return listing.list_versions(
                listing.TwoTables(current, older),
                lambda v: decode(ObjectManifest, v, with_inline=False),
                prefix,
                key_marker,
                version_id_marker,
                delimiter,
                max_keys,
            )

        return await self._run(False, tx)

    async def delete_object(
        self, bucket: str, key: str, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        def tx(txn: lmdb.Transaction) -> ObjectManifest | None:
            self._require_bucket(txn, bucket)
            k = keys.encode(keys.composite(bucket, key))
            previous = self._get(txn, "objects", k, ObjectManifest)
            check_delete_condition(cond, previous)
            if previous is not None:
                txn.delete(k, db=self._db["objects"])
                account(txn, self._db, bucket, None, previous, events)
            return previous

        return await self._run(True, tx)

    async def set_object_tags(self, bucket: str, key: str, version_id: str, tags: dict[str, str]) -> bool:
        def retag(man: ObjectManifest) -> bool:
            man.tags = dict(tags)
            return True

        return await self._rewrite(bucket, key, version_id, retag)

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ObjectPage:
        def tx(txn: lmdb.Transaction) -> ObjectPage:
            self._require_bucket(txn, bucket)
            cursor = _BucketCursor(txn, self._db["objects"], bucket, self._object_full_key, bytes)
            return listing.list_objects(
                cursor, lambda v: decode(ObjectManifest, v, with_inline=False), prefix, start_after, delimiter, max_keys
            )

        return await self._run(False, tx)

    # -- multipart uploads

    async def create_upload(self, rec: UploadRecord) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            self._require_bucket(txn, rec.bucket)
            existing = self._get(txn, "uploads", rec.upload_id.encode(), UploadRecord)
            if existing is not None:  # a retried create: keep the secondary key consistent
                k = keys.encode(keys.composite(existing.bucket, existing.key))
                txn.delete(k, _upload_dup(existing), db=self._db["uploads_by_key"])
            txn.put(rec.upload_id.encode(), encode(rec), db=self._db["uploads"])
            k = keys.encode(keys.composite(rec.bucket, rec.key))
            txn.put(k, _upload_dup(rec), db=self._db["uploads_by_key"])

        await self._run(True, tx)

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self._lmdb.read_here(self._get, "uploads", upload_id.encode(), UploadRecord)

    async def put_part(self, upload_id: str, part: PartRecord) -> PartRecord | None:
        def tx(txn: lmdb.Transaction) -> PartRecord | None:
            self._require_upload(txn, upload_id)
            k = keys.part_key(upload_id, part.number)
            previous = self._get(txn, "parts", k, PartRecord)
            txn.put(k, encode(part), db=self._db["parts"])
            return previous

        return await self._run(True, tx)

    async def list_parts(self, upload_id: str, marker: int = 0, max_parts: int = 1000) -> PartPage:
        def tx(txn: lmdb.Transaction) -> PartPage:
            self._require_upload(txn, upload_id)
            page = PartPage()
            if max_parts <= 0 or marker >= keys.MAX_PART:
                return page
            prefix = keys.parts_prefix(upload_id)
            cur = txn.cursor(self._db["parts"])
            ok = cur.set_range(keys.part_key(upload_id, max(marker, 0) + 1))
            while ok and cur.key().startswith(prefix):
                if len(page.parts) == max_parts:
                    page.truncated = True
                    page.next_marker = page.parts[-1].number
                    break
                page.parts.append(decode(PartRecord, cur.value()))
                ok = cur.next()
            return page

        return await self._run(False, tx)

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        delimiter: str = "",
        max_uploads: int = 1000,
    ) -> UploadPage:
        def tx(txn: lmdb.Transaction) -> UploadPage:
            self._require_bucket(txn, bucket)

            def full_key(_key: bytes, dup: bytes) -> bytes:
                rec = self._upload_of_dup(txn, dup)
                return keys.composite(rec.bucket, rec.key)

            cursor = _BucketCursor(
                txn, self._db["uploads_by_key"], bucket, full_key, lambda dup: self._upload_of_dup(txn, dup)
            )
            return listing.list_uploads(cursor, prefix, key_marker, upload_id_marker, delimiter, max_uploads)

        return await self._run(False, tx)

    def _put(self, txn: lmdb.Transaction, man: ObjectManifest, cond: Condition | None) -> ObjectManifest | None:
        """put_object's writes to the objects and versions tables; what they freed."""
        if self._require_bucket(txn, man.bucket).versioning:
            return versions.put(txn, self._db, man, cond)
        k = keys.encode(keys.composite(man.bucket, man.key))
        previous = self._get(txn, "objects", k, ObjectManifest)
        check_condition(cond, previous)
        txn.put(k, encode(man), db=self._db["objects"])
        return previous

    async def complete_upload(
        self, upload_id: str, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> Completed:
        def tx(txn: lmdb.Transaction) -> Completed:
            rec = self._require_upload(txn, upload_id)
            if (man.bucket, man.key) != (rec.bucket, rec.key):
                raise ValueError(f"upload {upload_id} is for {rec.bucket}/{rec.key}, not {man.bucket}/{man.key}")
            previous = self._put(txn, man, cond)
            account(txn, self._db, man.bucket, man, previous, events)
            used = {p.data_id for p in man.parts}
            unused = [p for p in self._drop_upload(txn, rec) if p.data_id not in used]
            return Completed(previous, unused)

        return await self._run(True, tx)

    async def abort_upload(self, upload_id: str) -> list[PartRecord]:
        def tx(txn: lmdb.Transaction) -> list[PartRecord]:
            return self._drop_upload(txn, self._require_upload(txn, upload_id))

        return await self._run(True, tx)

    # -- cluster membership

    async def upsert_node(self, rec: NodeRecord) -> NodeRecord:
        return await self._run(True, membership.upsert_node, self._db, rec)

    async def list_nodes(self) -> list[NodeRecord]:
        return await self._run(False, membership.list_nodes, self._db)

    async def remove_node(self, node_id: str) -> bool:
        return await self._run(True, membership.remove_node, self._db, node_id)

    async def set_node_state(self, node_id: str, state: str) -> NodeRecord:
        if state not in NODE_STATES:
            raise ValueError(f"node state must be one of {', '.join(NODE_STATES)}, not {state!r}")
        return await self._run(True, membership.set_node_state, self._db, node_id, state)

    # -- repair

    async def update_part(self, bucket: str, key: str, version_id: str, part: PartRecord) -> bool:
        return await self._rewrite(bucket, key, version_id, versioning.with_part(part))

    async def _rewrite(self, bucket: str, key: str, version_id: str, change: Callable[[ObjectManifest], bool]) -> bool:
        """Apply `change` to the version with internal id `version_id` in place (update_part, set_object_tags);
        False, changing nothing, if there is no such version any more or change says no."""

        def tx(txn: lmdb.Transaction) -> bool:
            # No bucket check: an object exists only in a bucket that does (delete_bucket needs it empty).
            k = keys.encode(keys.composite(bucket, key))
            man = self._get(txn, "objects", k, ObjectManifest)
            if man is None or man.version_id != version_id:
                # A noncurrent version; or overwritten or deleted since it was read: the newer write stands.
                return versions.rewrite(txn, self._db, bucket, key, version_id, change)
            if not change(man):
                return False
            txn.put(k, encode(man), db=self._db["objects"])
            return True

        return await self._run(True, tx)
