"""ReplicatedIndex: the Index over three metadata replicas, leaderless (Dynamo/Garage style).

Records live in the replicas' tables (metadata/replica_store.py) as versions stamped by a hybrid
logical clock (metadata/hlc.py); replicas reconcile with one rule, metadata/merge.py (newest wins).

- Writes go to all three replicas and succeed once two have them synced. The third gets them too
  unless it is down; read repair and anti-entropy (metadata/anti_entropy.py) bring it up to date.
- Reads ask all three, answer from the first two and merge them: any two replicas share one with
  every acknowledged write, so a read sees every write acknowledged before it began. Replicas that
  answered with an older version (the third one included, when it answers) are repaired behind the
  read. Listings merge the sorted ranges of two replicas through metadata/listing.py.
- A write that reads first (put_object returning what it replaced, delete_object) stamps its version
  after everything it read, so it supersedes it whatever the machines' clocks say.
- Conditional operations (create_bucket, delete_bucket, put_object with a condition, complete_upload,
  abort_upload) take a per-key lock on a majority first: each replica grants a key to one holder at a
  time (for a lease) and only with a timestamp above everything it has promised or holds. A holder of
  two grants reads the key from them, checks its condition, and commits: the commit carries all the
  operation's writes and each granting replica applies them atomically with the release, and only if
  it still holds the grant. Two racing holders cannot both have two of three grants; a 1-1-1 split
  releases everything and retries after a jittered backoff. See docs/consistency.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from metadata import keys, listing
from metadata.hlc import HLC
from metadata.index import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Completed,
    DriveClaimed,
    IndexUnavailable,
    NoSuchBucket,
    NoSuchUpload,
    ObjectPage,
    PartPage,
    UploadPage,
)
from metadata.lmdb_store import check_condition
from metadata.merge import Entry, merge_all
from metadata.merged_scan import Decoding, Merged, Stream, SyncCursor
from metadata.records import (
    BucketRecord,
    Condition,
    NodeRecord,
    ObjectManifest,
    PartRecord,
    UploadRecord,
    decode,
    encode,
)
from metadata.replica_protocol import Replica, ReplicaDown
from metadata.replica_store import Write

log = logging.getLogger(__name__)
T = TypeVar("T")

QUORUM = 2
LEASE = 10.0  # seconds a prepare grant lasts: a coordinator that dies holding it blocks the key this long
LOCK_ATTEMPTS = 12
BACKOFF_BASE, BACKOFF_CAP = 0.02, 1.0
REPAIR_WAIT = 5.0  # seconds to wait for the slowest replica's answer before repairing it
SCAN_BATCH = 1000


def _okey(bucket: str, key: str) -> bytes:
    return keys.composite(bucket, key)


def _upload_key(rec: UploadRecord) -> bytes:
    # Entries of one S3 key are contiguous and in (initiated, upload id) order: S3 keys hold no NUL.
    return keys.composite(rec.bucket, rec.key) + b"\x00" + keys.sortable(rec.initiated) + rec.upload_id.encode()


def _tomb(ts: int) -> Entry:
    return Entry(ts, True)


class ReplicatedIndex:
    """The Index over `replicas` (three: any two of them are a quorum)."""

    def __init__(self, replicas: list[Replica], *, lease: float = LEASE, closers: list[Any] | None = None) -> None:
        if len(replicas) != 3:
            raise ValueError("the replicated index needs exactly three replicas")
        self._replicas = replicas
        self._lease = lease
        self._hlc = HLC()
        self._failed_at: dict[int, float] = {}  # replica index -> when it last failed: asked last for scans
        self._background: set[asyncio.Task[Any]] = set()
        self._closers = closers or []
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._background:
            await asyncio.wait(set(self._background), timeout=REPAIR_WAIT)
        for t in set(self._background):
            t.cancel()
        for c in self._closers:
            await c.close()

    # -- plumbing: quorums

    def _spawn(self, aw: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, ReplicaDown):
            log.warning("background replica call failed: %r", exc)

    def _note(self, i: int, exc: BaseException) -> None:
        self._failed_at[i] = time.monotonic()
        log.debug("replica %s: %r", self._replicas[i].name, exc)

    async def _gather(
        self, fn: Callable[[Replica], Awaitable[T]], need: int = QUORUM
    ) -> tuple[list[tuple[int, T]], list[tuple[int, asyncio.Task[T]]]]:
        """Call fn on every replica at once; return once `need` answered (and the calls still running).

        The calls still running carry on (a write reaches the third replica); errors other than a
        replica being down (a refused argument) are raised at once.
        """
        tasks = {asyncio.ensure_future(fn(r)): i for i, r in enumerate(self._replicas)}
        pending = set(tasks)
        answers: list[tuple[int, T]] = []
        down: list[str] = []
        try:
            while pending and len(answers) < need:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        answers.append((tasks[t], t.result()))
                    elif isinstance(exc, ReplicaDown):
                        self._note(tasks[t], exc)
                        down.append(str(exc))
                    else:
                        raise exc
        finally:
            for t in pending:
                self._spawn(t)
        if len(answers) < need:
            raise IndexUnavailable(f"only {len(answers)} of 3 metadata replicas answered: {'; '.join(down)}")
        return answers, [(tasks[t], t) for t in pending]

    async def _read(self, table: str, key_list: list[bytes]) -> list[Entry | None]:
        return await self._read_many([(table, k) for k in key_list])

    async def _read_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]:
        """The newest version of each (table, key) among the first two replicas to answer (one request each)."""
        answers, rest = await self._gather(lambda r: r.get_many(reads))
        merged = [merge_all([a[j] for _, a in answers]) for j in range(len(reads))]
        for e in merged:
            if e is not None:
                self._hlc.observe(e.hlc)
        self._spawn(self._repair_reads(reads, merged, answers, rest))
        return merged

    async def _repair_reads(
        self,
        reads: list[tuple[str, bytes]],
        merged: list[Entry | None],
        answers: list[tuple[int, list[Entry | None]]],
        rest: list[tuple[int, asyncio.Task[list[Entry | None]]]],
    ) -> None:
        if rest:
            await asyncio.wait([t for _, t in rest], timeout=REPAIR_WAIT)
        late = [(i, t.result()) for i, t in rest if t.done() and not t.cancelled() and t.exception() is None]
        for i, got in answers + late:
            fix = [Write(t, k, m) for (t, k), m, g in zip(reads, merged, got, strict=True) if m is not None and g != m]
            if fix:
                log.info("read repair: %d record(s) on %s", len(fix), self._replicas[i].name)
                await self._replicas[i].put(fix)

    async def _write(self, writes: list[Write]) -> None:
        if writes:
            await self._gather(lambda r: r.put(writes))

    def _pairs(self) -> list[list[int]]:
        order = sorted(range(3), key=lambda i: self._failed_at.get(i, 0.0))
        return [[order[0], order[1]], [order[0], order[2]], [order[1], order[2]]]

    async def _scan(
        self, table: str, scope: bytes, use: Callable[[Merged], Awaitable[T]], batch: int = SCAN_BATCH
    ) -> T:
        """Run `use` over a merged scan of two replicas, falling back to another pair if one fails."""
        errors = []
        for pair in self._pairs():
            merged = Merged([Stream(self._replicas[i], table, scope, batch) for i in pair])
            try:
                result = await use(merged)
            except ReplicaDown as exc:
                failed = [i for i in pair if self._replicas[i] is merged.failed]
                self._note(failed[0] if failed else pair[1], exc)
                errors.append(str(exc))
                continue
            self._repair_scan(table, merged)
            return result
        raise IndexUnavailable(f"no two metadata replicas could be listed: {'; '.join(errors)}")

    def _repair_scan(self, table: str, merged: Merged) -> None:
        by_replica: dict[int, list[Write]] = {}
        for replica, key, e in merged.stale:
            self._hlc.observe(e.hlc)
            by_replica.setdefault(id(replica), []).append(Write(table, key, e))
        for replica in self._replicas:
            fix = by_replica.get(id(replica))
            if fix:
                log.info("read repair: %d record(s) of %s on %s", len(fix), table, replica.name)
                self._spawn(replica.put(fix))

    async def _live(self, table: str, scope: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        return await self._scan(table, scope, lambda m: m.live(limit), batch=min(SCAN_BATCH, (limit or SCAN_BATCH) + 1))

    # -- plumbing: conditional operations

    async def _locked(
        self, table: str, key: bytes, decide: Callable[[Entry | None, int], Awaitable[tuple[list[Write], T]]]
    ) -> T:
        """Hold `key` on a majority, let decide(current version, timestamp) check and plan, commit its writes.

        decide returns the writes (the locked key's own one stamped with the timestamp given) and the
        result; if it raises, nothing is written. Raises IndexUnavailable if the lock cannot be had or
        the commit is not confirmed by two replicas (then it may or may not have happened).
        """
        for attempt in range(LOCK_ATTEMPTS):
            txn = uuid.uuid4().hex
            ts = self._hlc.now()
            answers = await self._prepare(table, key, txn, ts)
            granted = [i for i, a in enumerate(answers) if not isinstance(a, BaseException) and a.granted]
            for i, a in enumerate(answers):
                if isinstance(a, ReplicaDown):
                    self._note(i, a)
                elif isinstance(a, BaseException):
                    await self._release(table, key, txn, granted)
                    raise a
                else:
                    self._hlc.observe(a.promised)
            if len(granted) >= QUORUM:
                current = merge_all([a.entry for a in answers if not isinstance(a, BaseException)])
                try:
                    writes, result = await decide(current, ts)
                except BaseException:
                    await self._release(table, key, txn, granted)
                    raise
                await self._commit(table, key, txn, granted, writes)
                return result
            await self._release(table, key, txn, granted)
            if sum(1 for a in answers if isinstance(a, ReplicaDown)) >= 2:
                raise IndexUnavailable("fewer than two metadata replicas answered")
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        raise IndexUnavailable(f"could not lock {table} record {key[:60]!r}: too much contention")

    async def _prepare(self, table: str, key: bytes, txn: str, ts: int) -> list[Any]:
        """Ask all three for the key; stop waiting once two granted (a paused replica must not stall us).

        Answers not waited for count as ReplicaDown here; if such a late answer is a grant, it is released.
        """
        tasks = [asyncio.ensure_future(r.prepare(table, key, txn, ts, self._lease)) for r in self._replicas]
        pending = set(tasks)
        while pending:
            done = [t for t in tasks if t.done()]
            if sum(1 for t in done if t.exception() is None and t.result().granted) >= QUORUM:
                break
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        answers: list[Any] = []
        for i, t in enumerate(tasks):
            if t.done():
                answers.append(t.exception() or t.result())
            else:
                answers.append(ReplicaDown(f"{self._replicas[i].name}: no answer yet"))
                self._spawn(self._release_late(table, key, txn, i, t))
        return answers

    async def _release_late(self, table: str, key: bytes, txn: str, i: int, task: asyncio.Future[Any]) -> None:
        with contextlib.suppress(Exception):
            if (await task).granted:
                await self._replicas[i].release(table, key, txn)

    async def _release(self, table: str, key: bytes, txn: str, granted: list[int]) -> None:
        for i in granted:
            self._spawn(self._replicas[i].release(table, key, txn))

    async def _commit(self, table: str, key: bytes, txn: str, granted: list[int], writes: list[Write]) -> None:
        async def one(i: int) -> bool:
            if i in granted:
                return await self._replicas[i].commit(table, key, txn, writes)
            await self._replicas[i].put(writes)  # not a voter: an ordinary write, for durability
            return False

        tasks = [asyncio.ensure_future(one(i)) for i in range(3)]
        ok = 0
        for fut in asyncio.as_completed(tasks):
            with contextlib.suppress(ReplicaDown):
                if await fut:
                    ok += 1
            if ok >= QUORUM:
                break
        for t in tasks:
            if not t.done():
                self._spawn(t)
        if ok < QUORUM:
            raise IndexUnavailable("the metadata replicas did not confirm the commit: it may or may not have happened")

    # -- buckets

    async def _bucket(self, name: str) -> BucketRecord | None:
        (e,) = await self._read("buckets", [name.encode()])
        return None if e is None or e.tombstone else decode(BucketRecord, e.value)

    async def _require_bucket(self, name: str) -> None:
        if await self._bucket(name) is None:
            raise NoSuchBucket(name)

    async def create_bucket(self, rec: BucketRecord) -> None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is not None and not current.tombstone:
                raise BucketAlreadyExists(decode(BucketRecord, current.value).owner)
            # Records a put racing an earlier delete of this name left behind must not reappear in it.
            ns = keys.namespace(rec.name)
            stale = [k for k, _ in await self._live("objects", ns)]
            stale_uploads = [k for k, _ in await self._live("upload_keys", ns)]
            ts2 = self._hlc.now()
            writes = [Write("buckets", rec.name.encode(), Entry(ts, False, encode(rec)))]
            writes += [Write("objects", k, _tomb(ts2)) for k in stale]
            writes += [Write("upload_keys", k, _tomb(ts2)) for k in stale_uploads]
            return writes, None

        await self._locked("buckets", rec.name.encode(), decide)

    async def get_bucket(self, name: str) -> BucketRecord | None:
        return await self._bucket(name)

    async def delete_bucket(self, name: str) -> list[PartRecord]:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], list[PartRecord]]:
            if current is None or current.tombstone:
                raise NoSuchBucket(name)
            ns = keys.namespace(name)
            if await self._live("objects", ns, limit=1):
                raise BucketNotEmpty(name)
            writes = [Write("buckets", name.encode(), _tomb(ts))]
            parts: list[PartRecord] = []
            for k, v in await self._live("upload_keys", ns):
                up = decode(UploadRecord, v)
                ups, up_parts = await self._drop_upload_writes(up, k)
                writes += ups
                parts += up_parts
            return writes, parts

        return await self._locked("buckets", name.encode(), decide)

    async def list_buckets(self) -> list[BucketRecord]:
        return [decode(BucketRecord, v) for _, v in await self._live("buckets", b"")]

    # -- objects

    async def put_object(self, man: ObjectManifest, cond: Condition | None = None) -> ObjectManifest | None:
        k = _okey(man.bucket, man.key)
        if cond is None or (cond.if_match is None and not cond.if_none_match_star):
            bucket, current = await self._read_many([("buckets", man.bucket.encode()), ("objects", k)])
            if bucket is None or bucket.tombstone:
                raise NoSuchBucket(man.bucket)
            await self._write([Write("objects", k, Entry(self._hlc.now(), False, encode(man)))])
            return _manifest(current)

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], ObjectManifest | None]:
            await self._require_bucket(man.bucket)
            previous = _manifest(current)
            check_condition(cond, previous)
            return [Write("objects", k, Entry(ts, False, encode(man)))], previous

        return await self._locked("objects", k, decide)

    async def get_object(self, bucket: str, key: str) -> ObjectManifest | None:
        (e,) = await self._read("objects", [_okey(bucket, key)])
        return _manifest(e)

    async def delete_object(self, bucket: str, key: str) -> ObjectManifest | None:
        k = _okey(bucket, key)
        bucket_e, current = await self._read_many([("buckets", bucket.encode()), ("objects", k)])
        if bucket_e is None or bucket_e.tombstone:
            raise NoSuchBucket(bucket)
        previous = _manifest(current)
        if previous is not None:
            await self._write([Write("objects", k, _tomb(self._hlc.now()))])
        return previous

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ObjectPage:
        await self._require_bucket(bucket)
        ns = keys.namespace(bucket)
        loop = asyncio.get_running_loop()

        async def use(merged: Merged) -> ObjectPage:
            cursor = SyncCursor(merged, loop, ns, lambda k, _v: k[len(ns) :])
            return await asyncio.to_thread(
                listing.list_objects,
                cursor,
                lambda v: decode(ObjectManifest, v, with_inline=False),  # listings never carry object bytes
                prefix,
                start_after,
                delimiter,
                max_keys,
            )

        return await self._scan("objects", ns, use, batch=min(SCAN_BATCH, max(max_keys, 0) + 1))

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
            Write("uploads", rec.upload_id.encode(), _tomb(ts)),
            Write("upload_keys", ukey or _upload_key(rec), _tomb(ts)),
        ]
        writes += [Write("parts", keys.part_key(rec.upload_id, p.number), _tomb(ts)) for p in parts]
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
            writes.append(Write("upload_keys", _upload_key(existing), _tomb(ts)))
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

    async def complete_upload(self, upload_id: str, man: ObjectManifest, cond: Condition | None = None) -> Completed:
        k = _okey(man.bucket, man.key)

        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], Completed]:
            rec = await self._require_upload(upload_id)
            if (man.bucket, man.key) != (rec.bucket, rec.key):
                raise ValueError(f"upload {upload_id} is for {rec.bucket}/{rec.key}, not {man.bucket}/{man.key}")
            await self._require_bucket(man.bucket)
            previous = _manifest(current)
            check_condition(cond, previous)
            drops, parts = await self._drop_upload_writes(rec)
            used = {p.data_id for p in man.parts}
            writes = [Write("objects", k, Entry(ts, False, encode(man))), *drops]
            return writes, Completed(previous, [p for p in parts if p.data_id not in used])

        return await self._locked("objects", k, decide)

    async def abort_upload(self, upload_id: str) -> list[PartRecord]:
        rec = await self._require_upload(upload_id)
        k = _okey(rec.bucket, rec.key)

        # Under the object key's lock, so it cannot interleave with a completion of the same upload.
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], list[PartRecord]]:
            await self._require_upload(upload_id)
            writes, parts = await self._drop_upload_writes(rec)
            live = _manifest(current)
            used = {p.data_id for p in live.parts} if live else set()
            return writes, [p for p in parts if p.data_id not in used]

        return await self._locked("objects", k, decide)

    # -- cluster membership (a quorum read, then a write: no lock; see docs/consistency.md)

    async def upsert_node(self, rec: NodeRecord) -> NodeRecord:
        claimed = [d.drive_id for d in rec.drives]
        if len(set(claimed)) != len(claimed):
            raise ValueError(f"node {rec.node_id} lists a drive twice")
        node = rec.node_id.encode()
        previous_e, *owners = await self._read_many([("nodes", node)] + [("drives", d.encode()) for d in claimed])
        for drive_id, owner in zip(claimed, owners, strict=True):
            if owner is not None and not owner.tombstone and owner.value != node:
                raise DriveClaimed(drive_id, owner.value.decode())
        previous = None if previous_e is None or previous_e.tombstone else decode(NodeRecord, previous_e.value)
        ts = self._hlc.now()
        stored = dataclasses.replace(rec, last_seen=time.time())
        writes = [Write("nodes", node, Entry(ts, False, encode(stored)))]
        writes += [Write("drives", d.encode(), Entry(ts, False, node)) for d in claimed]
        writes += [
            Write("drives", d.drive_id.encode(), _tomb(ts))
            for d in (previous.drives if previous else [])
            if d.drive_id not in claimed
        ]
        await self._write(writes)
        return decode(NodeRecord, encode(stored))

    async def list_nodes(self) -> list[NodeRecord]:
        return [decode(NodeRecord, v) for _, v in await self._live("nodes", b"")]

    async def remove_node(self, node_id: str) -> bool:
        node = node_id.encode()
        (e,) = await self._read("nodes", [node])
        if e is None or e.tombstone:
            return False
        rec = decode(NodeRecord, e.value)
        owners = await self._read("drives", [d.drive_id.encode() for d in rec.drives])
        ts = self._hlc.now()
        writes = [Write("nodes", node, _tomb(ts))]
        writes += [
            Write("drives", d.drive_id.encode(), _tomb(ts))
            for d, o in zip(rec.drives, owners, strict=True)
            if o is not None and not o.tombstone and o.value == node
        ]
        await self._write(writes)
        return True


def _manifest(e: Entry | None) -> ObjectManifest | None:
    return None if e is None or e.tombstone else decode(ObjectManifest, e.value)
