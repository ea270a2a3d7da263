"""ReplicatedIndex: the Index over three metadata replicas, leaderless (Dynamo/Garage style).

Records live in the replicas' tables (metadata/replica/store.py) as versions stamped by a hybrid
logical clock (metadata/hlc.py); replicas reconcile with one rule, metadata/replica/merge.py (newest wins).

- Writes go to all three replicas and succeed once two have them synced. The third gets them too
  unless it is down; read repair and anti-entropy (metadata/replica/anti_entropy.py) bring it up to date.
- Reads ask all three, answer from the first two and merge them: any two replicas share one with
  every acknowledged write, so a read sees every write acknowledged before it began. Replicas that
  answered with an older version (the third one included, when it answers) are repaired behind the
  read. Listings merge the sorted ranges of two replicas through metadata/listing.py.
- A write that reads first (put_object returning what it replaced, delete_object) stamps its version
  after everything it read, so it supersedes it whatever the machines' clocks say.
- Conditional operations (create_bucket, delete_bucket, set_bucket_tags, put_object and delete_object with
  a condition, complete_upload, abort_upload, update_part, set_object_tags; create_user, delete_user and the
  leases' operations) take a per-key lock on a majority first: each replica grants a key to one holder at a
  time (for a lease) and only with a timestamp above everything it has promised or holds. A holder of two
  grants reads the key from them, checks its condition, and commits: the commit carries all the operation's
  writes and each granting replica applies them atomically with the release, and only if it still holds the
  grant. Two racing holders cannot both have two of three grants; a 1-1-1 split releases everything and
  retries after a jittered backoff. See docs/consistency.md.
- update_part (a repair's new placement for a part), set_object_tags, set_retention and set_legal_hold rewrite
  a version without superseding it, so that an overwrite or delete racing it, which takes no lock, still wins:
  the argument is in update_part's docstring.

The plumbing (quorums, scans, the lock) is metadata/replicated/quorum.py; membership, node states, the
repair queue, users and leases are metadata/replicated/admin.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from metadata import keys, listing, object_lock, versioning
from metadata.index import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Completed,
    NoSuchBucket,
    NoSuchUpload,
    ObjectPage,
    PartPage,
    UploadPage,
    check_condition,
    check_delete_condition,
)
from metadata.object_acl import AclRewrites
from metadata.records import (
    BUCKET_CHANGEABLE,
    BucketRecord,
    Condition,
    EventRecord,
    ObjectManifest,
    PartRecord,
    UploadRecord,
    apply_changes,
    decode,
    encode,
)
from metadata.replica.manifests import decode_manifest, manifest, revised, stored_marker
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from metadata.replicated.accounting import ReplicatedAccounting, event_writes
from metadata.replicated.merged_scan import Decoding, Merged, SyncCursor
from metadata.replicated.quorum import SCAN_BATCH, tomb
from metadata.replicated.versions import ReplicatedVersions, apart, versioned


def _okey(bucket: str, key: str) -> bytes:
    return keys.composite(bucket, key)


def _upload_key(rec: UploadRecord) -> bytes:
    # Entries of one S3 key are contiguous and in (initiated, upload id) order: S3 keys hold no NUL.
    return keys.composite(rec.bucket, rec.key) + b"\x00" + keys.sortable(rec.initiated) + rec.upload_id.encode()


class ReplicatedIndex(ReplicatedVersions, ReplicatedAccounting, object_lock.LockRewrites, AclRewrites):
    """The Index over `replicas` (three: any two of them are a quorum)."""

    # -- buckets

    async def _require_bucket(self, name: str) -> None:
        if await self.get_bucket(name) is None:
            raise NoSuchBucket(name)

    async def create_bucket(self, rec: BucketRecord) -> None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is not None and not current.tombstone:
                raise BucketAlreadyExists(decode(BucketRecord, current.value).owner)
            # Records a put racing an earlier delete of this name left behind must not reappear in it.
            ns = keys.namespace(rec.name)
            stale = [k for k, _ in await self._live("objects", ns)]
            stale_uploads = [k for k, _ in await self._live("upload_keys", ns)]
            stale_versions = [k for k, _ in await self._live("versions", ns)]
            ts2 = self._hlc.now()
            writes = [Write("buckets", rec.name.encode(), Entry(ts, False, encode(rec)))]
            writes += [Write("objects", k, tomb(ts2)) for k in stale]
            writes += [Write("upload_keys", k, tomb(ts2)) for k in stale_uploads]
            writes += [Write("versions", k, tomb(ts2)) for k in stale_versions]
            return writes, None

        await self._locked("buckets", rec.name.encode(), decide)

    async def delete_bucket(self, name: str) -> list[PartRecord]:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], list[PartRecord]]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            ns = keys.namespace(name)
            for table in ("objects", "versions", "upload_keys"):  # uploads in progress: abort them first
                if await self._live(table, ns, limit=1):
                    raise BucketNotEmpty(name)
            return [Write("buckets", name.encode(), tomb(ts))], []

        return await self._locked("buckets", name.encode(), decide)

    async def list_buckets(self) -> list[BucketRecord]:
        return [decode(BucketRecord, v) for _, v in await self._live("buckets", b"")]

    async def update_bucket(self, name: str, changes: dict[str, str | None]) -> BucketRecord:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], BucketRecord]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            rec = apply_changes(decode(BucketRecord, current.value), changes, BUCKET_CHANGEABLE)
            return [Write("buckets", name.encode(), Entry(ts, False, encode(rec)))], rec

        return await self._locked("buckets", name.encode(), decide)

    async def set_bucket_tags(self, name: str, tags: dict[str, str]) -> None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            rec = decode(BucketRecord, current.value)
            rec.tags = dict(tags)
            return [Write("buckets", name.encode(), Entry(ts, False, encode(rec)))], None

        await self._locked("buckets", name.encode(), decide)

    async def set_bucket_lifecycle(self, name: str, rules: str) -> None:
        await self._set_bucket_fields(name, {"lifecycle": rules})

    async def set_lifecycle_cursor(self, name: str, cursor: str) -> None:
        await self._set_bucket_fields(name, {"lifecycle_cursor": cursor})

    async def _set_bucket_fields(self, name: str, fields: dict[str, str]) -> None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            rec = decode(BucketRecord, current.value)
            for field, value in fields.items():
                setattr(rec, field, value)
            return [Write("buckets", name.encode(), Entry(ts, False, encode(rec)))], None

        await self._locked("buckets", name.encode(), decide)

    # -- objects

    async def put_object(
        self, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        k = _okey(man.bucket, man.key)
        known: BucketRecord | None = None  # read just now, before the lock: not read again under it
        if cond is None or (cond.if_match is None and not cond.if_none_match_star):
            bucket_e, current = await self._read_many([("buckets", man.bucket.encode()), ("objects", k)])
            if bucket_e is None or bucket_e.tombstone:
                raise NoSuchBucket(man.bucket)
            if not versioned(bucket_e.value):
                ts = self._hlc.now()
                await self._write([Write("objects", k, Entry(ts, False, encode(man))), *event_writes(events, ts)])
                return manifest(current)
            known = decode(BucketRecord, bucket_e.value)
            if man.s3_version_id:  # a version of its own, kept apart: one entry, nothing read or locked (versions.py)
                ts = self._hlc.now()
                version = Write("versions", versioning.version_composite(man), Entry(ts, False, encode(man)))
                await self._write([version, *event_writes(events, ts)])
                return None

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], ObjectManifest | None]:
            bucket = known or await self.get_bucket(man.bucket)
            if bucket is None:
                raise NoSuchBucket(man.bucket)
            if bucket.versioning:
                writes, freed = await self._versioned_put(man, cond, current, ts)
                return [*writes, *event_writes(events, ts)], freed
            previous = manifest(current)
            check_condition(cond, previous)
            return [Write("objects", k, Entry(ts, False, encode(man))), *event_writes(events, ts)], previous

        return await self._locked("objects", k, decide)

    async def get_object(self, bucket: str, key: str) -> ObjectManifest | None:
        _, held, newest = await self._read_latest(bucket, key)
        latest = versioning.newest(manifest(held), newest)  # versions kept apart: the newer of the two tables
        return None if latest is None or latest.delete_marker else latest

    async def delete_object(
        self, bucket: str, key: str, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        k = _okey(bucket, key)
        if cond is None or (cond.if_match is None and not cond.if_none_match_star):
            bucket_e, current = await self._read_many([("buckets", bucket.encode()), ("objects", k)])
            if bucket_e is None or bucket_e.tombstone:
                raise NoSuchBucket(bucket)
            previous = manifest(current)
            if previous is not None:
                ts = self._hlc.now()
                await self._write([Write("objects", k, tomb(ts)), *event_writes(events, ts)])
            return previous

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], ObjectManifest | None]:
            await self._require_bucket(bucket)
            previous = manifest(current)
            check_delete_condition(cond, previous)
            gone = [Write("objects", k, tomb(ts)), *event_writes(events, ts)]
            return (gone if previous is not None else []), previous

        return await self._locked("objects", k, decide)

    async def set_object_tags(self, bucket: str, key: str, version_id: str, tags: dict[str, str]) -> bool:
        """Tags are rewritten in place, as update_part rewrites a part (see there): never above a newer write."""

        def retag(man: ObjectManifest) -> bool:
            man.tags = dict(tags)
            return True

        return await self._rewrite(bucket, key, version_id, retag)

    async def update_part(self, bucket: str, key: str, version_id: str, part: PartRecord) -> bool:
        """Rewrite the current version with `part` in place, under the key's lock, never superseding anything.

        put_object and delete_object take no lock: they stamp their write after the version they read,
        by their own gateway's clock, and it may reach the replicas after we read. A rewrite stamped with
        our lock's timestamp could then outrank an overwrite or delete and bring the old version back.
        So the rewrite keeps the timestamp h of the version it rewrites and differs only in its bytes,
        which merge ranks above that version's and above its earlier rewrites' (equal timestamps are
        ordered by value; see manifests.py). On every replica, in any order of arrival, it then beats exactly
        the version it rewrites and loses to every write stamped after h: any write that read that
        version (its clock has seen h) and any concurrent one that beat it. A delete stamped h wins the
        tie too (tombstones first). Conditional writes are ordered with this one by the lock. Left over:
        a put from another gateway stamped exactly h (same millisecond and counter), concurrent with the
        version and on fewer than two replicas when we read, loses to the rewrite although it beat the
        version: stamp ties are already broken arbitrarily (docs/consistency.md).
        """

        def repair(man: ObjectManifest) -> bool:
            at = [i for i, p in enumerate(man.parts) if p.number == part.number]
            if not at or man.parts[at[0]].data_id != part.data_id:
                return False
            man.parts[at[0]] = part
            return True

        return await self._rewrite(bucket, key, version_id, repair)

    async def _rewrite(self, bucket: str, key: str, version_id: str, change: Callable[[ObjectManifest], bool]) -> bool:
        """Apply `change` to version `version_id` of the object, if it is still current, as a revision of that
        version (same timestamp; see update_part); False, changing nothing, if it is not or change says no."""
        k = _okey(bucket, key)

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], bool]:
            man = manifest(current)
            if current is None or man is None or man.version_id != version_id:
                # A noncurrent version; or overwritten or deleted since it was read: the newer write stands.
                writes = await self._rewrite_noncurrent(bucket, key, version_id, change, ts)
                return writes, bool(writes)
            if not change(man) or await self.get_bucket(bucket) is None:
                return [], False
            value = revised(current, man)
            return [Write("objects", k, Entry(current.hlc, False, value))], True

        return await self._locked("objects", k, decide)

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ObjectPage:
        rec = await self.get_bucket(bucket)
        if rec is None:
            raise NoSuchBucket(bucket)
        ns = keys.namespace(bucket)
        loop = asyncio.get_running_loop()
        batch = min(SCAN_BATCH, max(max_keys, 0) + 1)

        def raw(k: bytes, _v: bytes) -> bytes:
            return k[len(ns) :]

        async def use(cursor: listing.Cursor[bytes]) -> ObjectPage:
            return await asyncio.to_thread(
                listing.list_objects,
                cursor,
                lambda v: decode_manifest(v, with_inline=False),  # listings never carry object bytes
                prefix,
                start_after,
                delimiter,
                max_keys,
            )

        if not rec.versioning:
            return await self._scan("objects", ns, lambda merged: use(SyncCursor(merged, loop, ns, raw)), batch)

        async def current(held: Merged, older: Merged) -> ObjectPage:  # versions kept apart: each key's latest
            both = apart(SyncCursor(held, loop, ns, raw), SyncCursor(older, loop, ns, raw))
            return await use(listing.Current(both, stored_marker))

        return await self._scan(
            "objects",
            ns,
            lambda held: self._scan_latest("versions", ns, lambda older: current(held, older), batch),
            batch,
        )

    # -- multipart uploads

    async def _upload(self, upload_id: str) -> UploadRecord | None:
        (e,) = await self._read("uploads", [upload_id.encode()])
        return None if e is None or e.tombstone else decode(UploadRecord, e.value)

    async def _require_upload(self, upload_id: str) -> UploadRecord:
        rec = await self._upload(upload_id)
        if rec is None:
            raise NoSuchUpload(upload_id)
        return rec

    async def _parts(self, upload_id: str) -> list[PartRecord]:
        return [decode(PartRecord, v) for _, v in await self._live("parts", keys.parts_prefix(upload_id))]

    async def _drop_upload_writes(
        self, rec: UploadRecord, ukey: bytes | None = None
    ) -> tuple[list[Write], list[PartRecord]]:
        parts = await self._parts(rec.upload_id)
        ts = self._hlc.now()
        writes = [
            Write("uploads", rec.upload_id.encode(), tomb(ts)),
            Write("upload_keys", ukey or _upload_key(rec), tomb(ts)),
        ]
        writes += [Write("parts", keys.part_key(rec.upload_id, p.number), tomb(ts)) for p in parts]
        return writes, parts

    async def create_upload(self, rec: UploadRecord) -> None:
        bucket, existing_e = await self._read_many(
            [("buckets", rec.bucket.encode()), ("uploads", rec.upload_id.encode())]
        )
        if bucket is None or bucket.tombstone:
            raise NoSuchBucket(rec.bucket)
        existing = None if existing_e is None or existing_e.tombstone else decode(UploadRecord, existing_e.value)
        ts = self._hlc.now()
        writes = []
        if existing is not None and _upload_key(existing) != _upload_key(rec):  # a retried create
            writes.append(Write("upload_keys", _upload_key(existing), tomb(ts)))
        value = encode(rec)
        writes += [Write("uploads", rec.upload_id.encode(), Entry(ts, False, value))]
        writes += [Write("upload_keys", _upload_key(rec), Entry(ts, False, value))]
        await self._write(writes)

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        return await self._upload(upload_id)

    async def put_part(self, upload_id: str, part: PartRecord) -> PartRecord | None:
        pk = keys.part_key(upload_id, part.number)
        up, current = await self._read_many([("uploads", upload_id.encode()), ("parts", pk)])
        if up is None or up.tombstone:
            raise NoSuchUpload(upload_id)
        await self._write([Write("parts", pk, Entry(self._hlc.now(), False, encode(part)))])
        return None if current is None or current.tombstone else decode(PartRecord, current.value)

    async def list_parts(self, upload_id: str, marker: int = 0, max_parts: int = 1000) -> PartPage:
        await self._require_upload(upload_id)
        page = PartPage()
        if max_parts <= 0 or marker >= keys.MAX_PART:
            return page
        start = keys.part_key(upload_id, max(marker, 0) + 1)

        async def use(merged: Merged) -> list[tuple[bytes, bytes]]:
            merged.seek(start, True)
            return await merged.live(max_parts + 1)

        got = await self._scan("parts", keys.parts_prefix(upload_id), use, batch=min(SCAN_BATCH, max_parts + 1))
        page.parts = [decode(PartRecord, v) for _, v in got[:max_parts]]
        if len(got) > max_parts:
            page.truncated = True
            page.next_marker = page.parts[-1].number
        return page

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        delimiter: str = "",
        max_uploads: int = 1000,
    ) -> UploadPage:
        await self._require_bucket(bucket)
        ns = keys.namespace(bucket)
        loop = asyncio.get_running_loop()

        def s3_key(_k: bytes, v: bytes) -> bytes:
            return decode(UploadRecord, v).key.encode()

        async def use(merged: Merged) -> UploadPage:
            cursor = SyncCursor(merged, loop, ns, s3_key, exclusive_suffix=b"\x01")
            decoded = Decoding(cursor)
            return await asyncio.to_thread(
                listing.list_uploads, decoded, prefix, key_marker, upload_id_marker, delimiter, max_uploads
            )

        return await self._scan("upload_keys", ns, use, batch=min(SCAN_BATCH, max(max_uploads, 0) + 1))

    async def complete_upload(
        self, upload_id: str, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> Completed:
        k = _okey(man.bucket, man.key)

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], Completed]:
            rec = await self._require_upload(upload_id)
            if (man.bucket, man.key) != (rec.bucket, rec.key):
                raise ValueError(f"upload {upload_id} is for {rec.bucket}/{rec.key}, not {man.bucket}/{man.key}")
            bucket = await self.get_bucket(man.bucket)
            if bucket is None:
                raise NoSuchBucket(man.bucket)
            if bucket.versioning:
                writes, previous = await self._versioned_put(man, cond, current, ts)
            else:
                previous = manifest(current)
                check_condition(cond, previous)
                writes = [Write("objects", k, Entry(ts, False, encode(man)))]
            drops, parts = await self._drop_upload_writes(rec)
            used = {p.data_id for p in man.parts}
            done = Completed(previous, [p for p in parts if p.data_id not in used])
            return [*writes, *drops, *event_writes(events, ts)], done

        return await self._locked("objects", k, decide)

    async def abort_upload(self, upload_id: str) -> list[PartRecord]:
        rec = await self._require_upload(upload_id)
        k = _okey(rec.bucket, rec.key)

        # Under the object key's lock, so it cannot interleave with a completion of the same upload.
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], list[PartRecord]]:
            await self._require_upload(upload_id)
            writes, parts = await self._drop_upload_writes(rec)
            live = manifest(current)
            used = {p.data_id for p in live.parts} if live else set()
            return writes, [p for p in parts if p.data_id not in used]

        return await self._locked("objects", k, decide)
