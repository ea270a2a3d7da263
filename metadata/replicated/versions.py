"""ReplicatedIndex's versions (metadata/versioning.py): the versions table on the replicas, and the writes of
buckets whose versioning is configured.

Versions are kept apart (metadata/versioning.py): a version with an id is written once, to the versions table,
and never moves; the objects table holds the key's null version (or, in a store written before, the version
current then). So a PUT in a versioned bucket writes one entry, unlocked, like one in an unversioned bucket,
and a GET reads the key's entry there and its newest in the versions table. The other writes to a key of such
a bucket (a null version, a removal, a rewrite in place, a conditional write) hold the key's lock in the
objects table. Reads are quorum reads and merged scans, as for current objects; read repair and anti-entropy
cover the versions table like every other table.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from metadata import keys, listing, object_lock, versioning
from metadata.index import NoSuchBucket, VersionPage, check_condition
from metadata.records import (
    NULL_VERSION,
    VERSIONING_STATES,
    BucketRecord,
    Condition,
    EventRecord,
    LockGuard,
    ObjectManifest,
    decode,
    encode,
    stored_fields,
)
from metadata.replica.manifests import decode_manifest, manifest
from metadata.replica.merge import Entry
from metadata.replica.protocol import Head, Write
from metadata.replicated.accounting import event_writes
from metadata.replicated.admin import ReplicatedAdmin
from metadata.replicated.merged_scan import Merged, RunsMerged, RunStream, Stream, SyncCursor, first_live
from metadata.replicated.quorum import SCAN_BATCH, tomb

T = TypeVar("T")

KEY_BATCH = 64  # entries per fetch when reading one key's versions
BUCKETS_REMEMBERED = 4096  # buckets whose versioning _read_latest remembers (forgotten all at once past it)
HEAD_RUN = 8  # entries of a key's versions a GET reads on each replica at most (tombstones, then its newest)
FIRST_BATCH = 4  # entries per fetch when reading a key's newest version (a few tombstones may come first)


def _s3_id(version_id: str) -> str:
    return "" if version_id == NULL_VERSION else version_id


@functools.lru_cache(maxsize=1024)
def versioned(bucket: bytes) -> bool:
    """Whether the bucket record stored as `bucket` has versioning configured: read by every PUT and GET, so
    not decoded whole, and remembered (a bucket record read from the cache is the same bytes each time)."""
    return bool(stored_fields(bucket).get("versioning"))


async def _entries(head: Awaitable[Head]) -> list[Entry | None]:
    """A late replica's answer to a head, as a get_many's (for read repair)."""
    return (await head).entries


def apart(current: SyncCursor, older: SyncCursor) -> listing.TwoTables[bytes]:
    """A bucket's two tables as one cursor of versions kept apart: an objects-table entry takes its place among
    its key's versions by its stamp."""
    return listing.TwoTables(current, older, lambda v: versioning.order(decode_manifest(v, with_inline=False)))


def plan_writes(bucket: str, key: str, plan: versioning.Plan, before: ObjectManifest | None, ts: int) -> list[Write]:
    writes = []
    if plan.current is not before:
        current = Entry(ts, False, encode(plan.current)) if plan.current is not None else tomb(ts)
        writes.append(Write("objects", keys.composite(bucket, key), current))
    writes += [Write("versions", versioning.version_composite(m), tomb(ts)) for m in plan.drop]
    writes += [Write("versions", versioning.version_composite(m), Entry(ts, False, encode(m))) for m in plan.keep]
    return writes


class ReplicatedVersions(ReplicatedAdmin):
    def __init__(self, replicas: list[Any], **kw: Any) -> None:
        super().__init__(replicas, **kw)
        self._versioned_buckets: dict[str, bool] = {}  # bucket -> versioning configured, as last read (a guess)

    async def set_versioning(self, name: str, status: str) -> None:
        if status not in VERSIONING_STATES:
            raise ValueError(f"versioning must be one of {', '.join(VERSIONING_STATES)}, not {status!r}")

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            rec = decode(BucketRecord, current.value)
            if rec.object_lock and status != "Enabled":
                raise ValueError("a bucket with object lock keeps versioning Enabled")
            rec.versioning = status
            return [Write("buckets", name.encode(), Entry(ts, False, encode(rec)))], None

        await self._locked("buckets", name.encode(), decide)

    async def set_bucket_lock(self, name: str, mode: str = "", days: int = 0, years: int = 0) -> None:
        object_lock.check_rule(mode, days, years)

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            rec = decode(BucketRecord, current.value)
            if rec.versioning != "Enabled":
                raise ValueError("object lock needs versioning Enabled")
            rec.object_lock, rec.lock_mode, rec.lock_days, rec.lock_years = True, mode, days, years
            return [Write("buckets", name.encode(), Entry(ts, False, encode(rec)))], None

        await self._locked("buckets", name.encode(), decide)

    async def _key_versions(self, bucket: str, key: str) -> list[ObjectManifest]:
        """The key's versions-table entries, newest first."""
        start = keys.versions_of(bucket, key)

        async def use(merged: Merged) -> list[ObjectManifest]:
            merged.seek(start, True)
            out: list[ObjectManifest] = []
            while (item := await merged.next()) is not None:
                if not item[0].startswith(start):
                    break
                if not item[1].tombstone:
                    out.append(decode_manifest(item[1].value))
            return out

        return await self._scan("versions", keys.namespace(bucket), use, batch=KEY_BATCH)

    async def _scan_latest(self, table: str, scope: bytes, use: Callable[[Merged], Awaitable[T]], batch: int) -> T:
        """A scan for each S3 key's latest entry (ListObjects in a versioned bucket): a quorum's runs of each key
        (its entries up to its first live one) merged, the key's entries read in full where a replica's run stops
        short of the merged first live one (merged_scan.RunsMerged)."""

        def runs(pair: Sequence[int]) -> Merged:
            streams: list[Stream] = [RunStream(self._replicas[i], table, scope, batch) for i in pair]
            return RunsMerged(streams, scope, lambda prefix: self._first_live(table, prefix, scope))

        return await self._over_quorums(table, runs, use)

    async def _first_live(self, table: str, prefix: bytes, scope: bytes) -> tuple[bytes, Entry] | None:
        """The first live entry whose key starts with `prefix` (in `scope`, a namespace), by a merged scan."""

        async def use(merged: Merged) -> tuple[bytes, Entry] | None:
            merged.seek(prefix, True)
            while (item := await merged.next()) is not None and item[0].startswith(prefix):
                if not item[1].tombstone:
                    return item
            return None

        return await self._scan(table, scope, use, batch=FIRST_BATCH)

    async def _read_latest(self, bucket: str, key: str) -> tuple[Entry | None, Entry | None, ObjectManifest | None]:
        """What a GET reads, in one request to each replica of a quorum: the bucket's record, the key's entry in
        the objects table, and its newest in the versions table (None unless the bucket has versioning
        configured). The replicas' runs of versions are merged as far as all of them reach; if that is short
        of the first live one (a replica stale there), a merged scan reads it. The versions are asked for
        with the rest when the bucket had versioning configured when last read here, else read after if it has
        (a guess that only saves the replicas a cursor per GET: what the bucket's record says decides)."""
        reads = [("buckets", bucket.encode()), ("objects", keys.composite(bucket, key))]
        prefix, scope = keys.versions_of(bucket, key), keys.namespace(bucket)
        runs: list[tuple[list[tuple[bytes, Entry]], bool]] | None = None
        if self._versioned_buckets.get(bucket, True):
            heads, late = await self._gather(lambda r: r.head(reads, "versions", prefix, scope, HEAD_RUN))
            answers = [(i, h.entries) for i, h in heads]
            runs = [(h.run, h.cut) for _, h in heads]
            rest = [(i, self._spawn(_entries(t))) for i, t in late]
        else:
            answers, rest = await self._gather(lambda r: r.get_many(reads))
        bucket_e, held = self._merge_reads(reads, answers, rest)
        configured = bucket_e is not None and not bucket_e.tombstone and versioned(bucket_e.value)
        if len(self._versioned_buckets) >= BUCKETS_REMEMBERED:
            self._versioned_buckets.clear()
        self._versioned_buckets[bucket] = configured
        if not configured:
            return bucket_e, held, None
        known, newest = first_live(runs) if runs is not None else (False, None)
        if not known:
            newest = await self._first_live("versions", prefix, scope)
        return bucket_e, held, decode_manifest(newest[1].value) if newest else None

    async def _latest(self, bucket: str, key: str, held: Entry | None) -> ObjectManifest | None:
        """The key's latest version, a delete marker included: the newer of its entry in the objects table
        (`held`, read by the caller) and its newest in the versions table."""
        newest = await self._first_live("versions", keys.versions_of(bucket, key), keys.namespace(bucket))
        return versioning.newest(manifest(held), decode_manifest(newest[1].value) if newest else None)

    async def _null_noncurrent(self, bucket: str, key: str) -> ObjectManifest | None:
        return next((v for v in await self._key_versions(bucket, key) if not v.s3_version_id), None)

    async def _versioned_put(
        self, man: ObjectManifest, cond: Condition | None, held_e: Entry | None, ts: int
    ) -> tuple[list[Write], ObjectManifest | None]:
        """The writes of a put in a bucket with versioning configured, under the key's lock (`held_e`: its entry
        in the objects table); and what it frees."""
        if cond is not None:
            latest = await self._latest(man.bucket, man.key, held_e)
            check_condition(cond, None if latest is None or latest.delete_marker else latest)
        held = manifest(held_e)
        elsewhere = None
        if not man.s3_version_id and (held is None or held.s3_version_id):
            elsewhere = await self._null_noncurrent(man.bucket, man.key)  # only in a store from before
        plan = versioning.plan_put_apart(man, held, elsewhere)
        return plan_writes(man.bucket, man.key, plan, held, ts), plan.freed

    async def _find_version(
        self, bucket: str, key: str, s3_id: str, held: ObjectManifest | None
    ) -> ObjectManifest | None:
        if versioning.matches(held, s3_id):
            return held
        where = versioning.lookup_composite(bucket, key, s3_id)
        if where is None:
            return await self._null_noncurrent(bucket, key)
        (e,) = await self._read("versions", [where])
        found = manifest(e)
        return found if found is not None and versioning.matches(found, s3_id) and found.key == key else None

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectManifest | None:
        (e,) = await self._read("objects", [keys.composite(bucket, key)])
        return await self._find_version(bucket, key, _s3_id(version_id), manifest(e))

    async def latest_version(self, bucket: str, key: str) -> ObjectManifest | None:
        _, held, newest = await self._read_latest(bucket, key)
        return versioning.newest(manifest(held), newest)

    async def delete_version(
        self,
        bucket: str,
        key: str,
        version_id: str,
        guard: LockGuard | None = None,
        events: Sequence[EventRecord] = (),
    ) -> ObjectManifest | None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], ObjectManifest | None]:
            if await self.get_bucket(bucket) is None:
                raise NoSuchBucket(bucket)
            held = manifest(current)
            target = await self._find_version(bucket, key, _s3_id(version_id), held)
            if target is None:
                return [], None
            object_lock.check_delete(target, guard)
            plan = versioning.plan_delete_apart(target, held)
            return [*plan_writes(bucket, key, plan, held, ts), *event_writes(events, ts)], plan.freed

        return await self._locked("objects", keys.composite(bucket, key), decide)

    async def _rewrite_noncurrent(
        self, bucket: str, key: str, version_id: str, change: Callable[[ObjectManifest], bool], ts: int
    ) -> list[Write]:
        """The writes of a rewrite in place of a noncurrent version, under the key's lock ([] if there is none:
        every write to a key of a versioned bucket holds that lock, so this one may take a new timestamp)."""
        man = versioning.rewritten(await self._key_versions(bucket, key), version_id, change)
        if man is None:
            return []
        return [Write("versions", versioning.version_composite(man), Entry(ts, False, encode(man)))]

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
    ) -> VersionPage:
        if await self.get_bucket(bucket) is None:
            raise NoSuchBucket(bucket)
        ns = keys.namespace(bucket)
        loop = asyncio.get_running_loop()
        batch = min(SCAN_BATCH, max(max_keys, 0) + 1)

        def raw(k: bytes, _v: bytes) -> bytes:
            return k[len(ns) :]

        async def use(current: Merged, older: Merged) -> VersionPage:
            both = apart(SyncCursor(current, loop, ns, raw), SyncCursor(older, loop, ns, raw))
            return await asyncio.to_thread(
                listing.list_versions,
                both,
                lambda v: decode_manifest(v, with_inline=False),
                prefix,
                key_marker,
                version_id_marker,
                delimiter,
                max_keys,
            )

        return await self._scan(
            "objects", ns, lambda current: self._scan("versions", ns, lambda older: use(current, older), batch), batch
        )

    async def get_bucket(self, name: str) -> BucketRecord | None:
        (e,) = await self._read("buckets", [name.encode()])
        return None if e is None or e.tombstone else decode(BucketRecord, e.value)
