"""The embedded server's index: a ReplicatedIndex over copies of the index kept on the drives themselves.

`tessera server` keeps min(2m+1, drives) copies (metadata/replicated/drive_copies.py), each a ReplicaStore in a
directory on a different drive, called in-process (no msgpack, no HTTP: the store's methods are the
replica protocol's). Writes go to every copy and are acknowledged by a majority, reads merge a
majority, so any m copies may be lost, wiped or damaged with every acknowledged write still on a
quorum. A copy that is fresh (an adopted empty drive, a wiped directory) or that was set aside as
damaged comes back not initialized: it takes writes at once and answers reads once anti-entropy
(metadata/replica/anti_entropy.py) has pulled from enough initialized copies, while the server serves.

Reads from one copy (solo: this process is the only one writing the copies, no `--workers`): a read needs
every acknowledged write, and here the index sees every write to every copy. A copy is *complete* once
an anti-entropy round in this process pulled into it from enough initialized copies to meet every
quorum (so it holds what was acknowledged before this start) and no write has failed on it since; it
*owes* a write acknowledged by a quorum before it settled on it. A complete copy that owes nothing holds
every acknowledged write, and answers a read alone; otherwise reads ask a quorum and merge. Conditional
operations (ReplicatedIndex's per-key lock) then hold the key in this process instead of on a majority of
copies: nobody else writes them. Bucket records,
which every request reads, are then kept in memory as such a copy gave them, and dropped at any write
to the buckets table: none is kept while one is on its way. A bucket's usage is then that copy's running total
of the bucket's manifests (metadata/replica/packed.py), not a sum read over the bucket; the copies hold no usage
mirror (replicated/accounting.py), which only merged sums need.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from cluster.workers import Periodic
from metadata import keys
from metadata.index import IndexFull, IndexUnavailable, NoSuchBucket
from metadata.records import ObjectManifest, Usage
from metadata.replica.anti_entropy import REBUILD_RETRY, AntiEntropy
from metadata.replica.manifests import decode_manifest, stored_usage
from metadata.replica.merge import Entry, merge_all
from metadata.replica.packed import MANIFEST_TABLES
from metadata.replica.protocol import Head, ReplicaDown, ReplicaFull, Write
from metadata.replica.store import ReplicaStore
from metadata.replicated.accounting import summing
from metadata.replicated.copy_writer import CopyWriter
from metadata.replicated.drive_copies import FAILURES, DriveCopy, inode_of, set_aside
from metadata.replicated.index import ReplicatedIndex
from metadata.replicated.merged_scan import Merged, RunStream, Stream, first_live
from metadata.replicated.quorum import SCAN_BATCH
from metadata.replicated.versions import HEAD_RUN, versioned

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds between anti-entropy rounds once every copy is initialized: each round digests every table of every
# copy against each other copy, and copies that are all written together rarely differ (read repair fixes
# what a read meets).
HEAL_INTERVAL = 3600.0
PROVE_RETRY = 30.0  # seconds between rounds while a ready copy is not known complete (solo reads, see above)
WATCH_INTERVAL = 5.0  # seconds between checks that each copy's file is still on its drive


class EmbeddedIndex(ReplicatedIndex):
    """The Index over copies on the drives, with the worker that rebuilds and reconciles them (heal())."""

    def __init__(
        self,
        copies: Sequence[DriveCopy],
        renew: Callable[[Path], bool] | None = None,
        solo: bool = False,
        prove_retry: float = PROVE_RETRY,
    ) -> None:
        """renew: a copy found damaged or gone while serving is set aside and rebuilt here, once renew(its
        directory) says its drive is a member of the set again (an adopted drive, not a foreign one). None:
        only at the next start (other processes have the copies open and would go on writing to the old file).
        solo: no other process writes the copies, so a complete copy may answer reads alone (see above)."""
        super().__init__(list(copies))
        self.copies = list(copies)
        self._renew = renew
        self._heal = False
        n = len(copies)
        self._solo = solo
        self._prove_retry = prove_retry
        self._complete = [False] * n
        self._owed = [0] * n  # acknowledged writes not yet settled on each copy
        self._failures = [0] * n  # writes that failed on each copy
        self._held: dict[tuple[str, bytes], tuple[asyncio.Lock, int]] = {}  # solo: keys locked, and by how many
        self._buckets: dict[bytes, Entry] = {}  # solo: live bucket records as acknowledged
        self._bucket_writes = 0  # writes to the buckets table sent and not yet acknowledged (or failed)
        self._bucket_gen = 0  # writes to the buckets table sent so far
        self._writers: dict[int, CopyWriter] = {}  # copy -> the child process writing it (start_writers)
        self._seq = 0  # the last write sent to the writers
        # Without solo reads, copies all ready at start are first reconciled in an hour; with them, at once.
        self._last_heal = time.monotonic() - (prove_retry if solo else 0.0)
        self._entropy = {i: self._anti_entropy(i) for i, c in enumerate(copies) if c.store is not None}
        self.worker = Periodic(
            "index-copies",
            self._heal_round,
            lambda: REBUILD_RETRY if self._to_rebuild() else min(WATCH_INTERVAL, self._prove_retry),
            at_once=True,
            what="index copies' anti-entropy round",
            counters=self.counters,
        )

    def _anti_entropy(self, i: int) -> AntiEntropy:
        store = self.copies[i].store
        assert store is not None
        return AntiEntropy(store, [p for p in self.copies if p is not self.copies[i]])

    def _to_rebuild(self) -> bool:
        fresh = any(c.store is not None and not c.store.initialized for c in self.copies)
        return fresh or (self._renew is not None and any(c.damaged is not None for c in self.copies))

    async def _replace(self, i: int) -> None:
        """Close a copy switched off as damaged, set its directory aside and start it afresh (rebuilding)."""
        copy = self.copies[i]
        self._complete[i] = False
        old, copy.damaged = copy.damaged, None
        if old is not None:
            await old.close()
        writer = self._writers.pop(i, None)
        if writer is not None:
            await writer.close()
        try:
            if copy.path.exists():
                set_aside(copy.path, copy.why)
            copy.store = await asyncio.to_thread(ReplicaStore.open, copy.path, gate=copy.gate)
            copy.inode = inode_of(copy.path)
        except (lmdb.Error, OSError) as exc:
            copy.why = f"damaged, and cannot be rebuilt: {exc}"
            log.error("index copy %s: %s", copy.name, copy.why)
            return
        copy.why = ""
        self._entropy[i] = self._anti_entropy(i)
        if writer is not None:
            await self._start_writer(i)

    @property
    def ready(self) -> int:
        return sum(c.ready for c in self.copies)

    def copy_states(self) -> list[dict[str, Any]]:
        """Each copy as `admin status` lists the index's replicas: where it is, whether it serves, and if not why
        (switched off or set aside and why, or being rebuilt)."""
        states = []
        for c in self.copies:
            why = "" if c.ready else c.why or "rebuilding: answers reads once it holds what the others hold"
            states.append({"address": c.name, "ok": c.ready, "error": why})
        return states

    def counters(self) -> dict[str, Any]:
        rebuilding = [c.name for c in self.copies if c.store is not None and not c.store.initialized]
        return {
            "copies": len(self.copies),
            "quorum": self.quorum,
            "ready": self.ready,
            "rebuilding": rebuilding,
            "complete": sum(self._complete),
            "owed": sum(self._owed),
            "writers": sorted(w.pid for w in self._writers.values() if w.running and w.pid is not None),
        }

    # -- which copy may answer a read alone (solo; see the module's docstring)

    def _lost(self, i: int) -> None:
        """A write failed on copy i (or it failed a read): it may lack an acknowledged write from now on."""
        self._failures[i] += 1
        self._complete[i] = False

    def _trusted(self) -> int | None:
        """A copy that holds every acknowledged write, if one is known."""
        if self._solo:
            for i, c in enumerate(self.copies):
                if self._complete[i] and not self._owed[i] and c.ready:
                    return i
        return None

    def require_quorum(self) -> None:
        if self.ready < self.quorum:
            raise IndexUnavailable(
                f"only {self.ready} of {len(self.copies)} copies of the index are readable ({self.quorum} needed)"
            )

    # -- the quorum plumbing, without a task per copy: the stores are in this process

    async def _read_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]:
        """Read a copy known to hold every acknowledged write; else a quorum of copies one after the other (a
        few keys are read on the event loop: microseconds each), those that failed least recently first, and
        repair the copies that answered stale behind."""
        trusted = self._trusted()
        if trusted is not None:
            known, gen = self._buckets, self._bucket_gen
            missing = [r for r in reads if r[0] != "buckets" or r[1] not in known]
            try:
                got = await self.copies[trusted].get_many(missing) if missing else []
            except ReplicaDown as exc:
                self._note(trusted, exc)
                self._lost(trusted)
            else:
                fetched = dict(zip(missing, got, strict=True))
                # Kept only if no bucket write began meanwhile (a read of many keys waits for a reader thread).
                keep = not self._bucket_writes and gen == self._bucket_gen
                for (table, k), e in fetched.items():
                    if e is not None:
                        self._hlc.observe(e.hlc)
                        # Live ones only: names that do not exist are the client's to choose, without end.
                        if keep and table == "buckets" and not e.tombstone:
                            known[k] = e
                return [fetched[r] if r in fetched else known[r[1]] for r in reads]
        answers: list[tuple[int, list[Entry | None]]] = []
        down = []
        for i in sorted(range(len(self.copies)), key=lambda i: self._failed_at.get(i, 0.0)):
            try:
                answers.append((i, await self.copies[i].get_many(reads)))
            except ReplicaDown as exc:
                self._note(i, exc)
                down.append(str(exc))
                continue
            if len(answers) == self.quorum:
                break
        if len(answers) < self.quorum:
            n = len(self.copies)
            raise IndexUnavailable(f"only {len(answers)} of {n} index copies answered: {'; '.join(down)}")
        merged = [merge_all([a[j] for _, a in answers]) for j in range(len(reads))]
        for e in merged:
            if e is not None:
                self._hlc.observe(e.hlc)
        for i, got in answers:
            fix = [Write(t, k, m) for (t, k), m, g in zip(reads, merged, got, strict=True) if m is not None and g != m]
            if fix:
                log.info("read repair: %d record(s) on %s", len(fix), self.copies[i].name)
                self._spawn(self.copies[i].put(fix))
        return merged

    async def _alone(self, read: Callable[[DriveCopy], Awaitable[T]]) -> list[T]:
        """[read(copy)] of a copy known to hold every acknowledged write, which answers alone; [] when there is
        none, or when it failed (then it is taken as missing writes from now on)."""
        trusted = self._trusted()
        if trusted is None:
            return []
        try:
            return [await read(self.copies[trusted])]
        except ReplicaDown as exc:
            self._note(trusted, exc)
            self._lost(trusted)
            return []

    async def _scan(
        self, table: str, scope: bytes, use: Callable[[Merged], Awaitable[T]], batch: int = SCAN_BATCH
    ) -> T:
        """A scan of a copy known to hold every acknowledged write alone (listings walk one copy, not two merged);
        else of a quorum of copies merged (Coordinator._scan)."""
        got = await self._alone(lambda c: use(Merged([Stream(c, table, scope, batch)])))
        return got[0] if got else await super()._scan(table, scope, use, batch)

    async def _scan_latest(self, table: str, scope: bytes, use: Callable[[Merged], Awaitable[T]], batch: int) -> T:
        """Each S3 key's first live entry from a copy that holds every acknowledged write, read alone: the rest
        of a key's entries sought past in the copy, not read (else ReplicatedVersions._scan_latest)."""
        got = await self._alone(lambda c: use(Merged([RunStream(c, table, scope, batch)])))
        return got[0] if got else await super()._scan_latest(table, scope, use, batch)

    async def _read_latest(self, bucket: str, key: str) -> tuple[Entry | None, Entry | None, ObjectManifest | None]:
        """ReplicatedVersions._read_latest from a copy known to hold every acknowledged write, in the event loop:
        for a bucket known to be versioned (its record kept here), the key's entry and its versions' run in one
        read; else the two keys read as any others, then the key's newest version only if the bucket has
        versioning configured. Without one, as a cluster's gateway reads its replicas (each copy's head)."""
        if self._trusted() is None:
            return await super()._read_latest(bucket, key)
        reads = [("objects", keys.composite(bucket, key))]
        prefix, scope = keys.versions_of(bucket, key), keys.namespace(bucket)
        kept = self._buckets.get(bucket.encode())
        if kept is not None and versioned(kept.value):  # known versioned: the key's entry and run in one read
            got = await self._alone(lambda c: c.head(reads, "versions", prefix, scope, HEAD_RUN))
            if got:
                (held,) = got[0].entries
                if held is not None:
                    self._hlc.observe(held.hlc)
                newest = await self._first_of("versions", prefix, scope, got[0])
                return kept, held, decode_manifest(newest[1].value) if newest else None
        bucket_e, held = await self._read_many([("buckets", bucket.encode()), *reads])
        if bucket_e is None or bucket_e.tombstone or not versioned(bucket_e.value):
            return bucket_e, held, None
        newest = await self._first_live("versions", prefix, scope)
        return bucket_e, held, decode_manifest(newest[1].value) if newest else None

    async def _first_live(self, table: str, prefix: bytes, scope: bytes) -> tuple[bytes, Entry] | None:
        """A key's newest version (ReplicatedVersions._latest), from a copy known to hold every acknowledged
        write, read right here like a few keys; else by a merged scan."""
        got = await self._alone(lambda c: c.head([], table, prefix, scope, HEAD_RUN))
        if not got:
            return await super()._first_live(table, prefix, scope)
        return await self._first_of(table, prefix, scope, got[0])

    async def _first_of(self, table: str, prefix: bytes, scope: bytes, head: Head) -> tuple[bytes, Entry] | None:
        """The first live entry of a trusted copy's run of a key; by a merged scan if the run stops short of it
        (more tombstones than a head reads)."""
        known, first = first_live([(head.run, head.cut)])
        if not known:
            return await super()._first_live(table, prefix, scope)
        if first is not None:
            self._hlc.observe(first[1].hlc)
        return first

    async def bucket_usage(self, name: str) -> Usage:
        """A copy that holds every acknowledged write gives its running total of the bucket's manifests (kept in
        the transaction of each write to them, metadata/replica/packed.py): a write checked against a quota
        costs a read, not a scan of the bucket. Without one, the bucket's manifests summed over merged scans."""
        if await self.get_bucket(name) is None:
            raise NoSuchBucket(name)
        got = await self._alone(lambda c: c.total(name))
        return Usage(*got[0]) if got else await self._summed_usage(name)

    async def _summed_usage(self, name: str) -> Usage:
        def read(value: bytes) -> tuple[int, int]:
            u = stored_usage(value)
            return u.bytes, u.objects

        total = summing(read)
        parts = [await self._scan(table, keys.namespace(name), total) for table in MANIFEST_TABLES]
        return Usage(sum(u.bytes for u in parts), sum(u.objects for u in parts))

    def _expand(self, writes: list[Write]) -> list[Write]:
        """No usage mirror (replicated/accounting.py): each copy keeps its totals from the manifests themselves,
        and without a copy to trust the manifests are summed (bucket_usage). One entry less per copy per write."""
        return writes

    async def _write(self, writes: list[Write]) -> None:
        """Write to every copy; return when a quorum has the writes durable."""
        writes = self._expand(writes)  # with what they carry, as every coordinator's writes
        if not writes:
            return
        if any(w.table == "buckets" for w in writes):
            async with self._writing_buckets():
                await self._write_copies(writes)
        else:
            await self._write_copies(writes)

    @contextlib.asynccontextmanager
    async def _writing_buckets(self) -> AsyncIterator[None]:
        """Around a write to the buckets table: no bucket record is kept from its sending to its answer."""
        self._buckets.clear()
        self._bucket_writes += 1
        self._bucket_gen += 1
        try:
            yield
        finally:
            self._bucket_writes -= 1

    async def _locked(
        self, table: str, key: bytes, decide: Callable[[Entry | None, int], Awaitable[tuple[list[Write], T]]]
    ) -> T:
        """The per-key lock of conditional operations (Coordinator._locked): on a solo server, held here, the
        key read and the writes made like any others, without the prepare and commit rounds on the copies."""
        if not self._solo:
            return await super()._locked(table, key, decide)
        held = (table, key)
        lock, users = self._held.get(held) or (asyncio.Lock(), 0)
        self._held[held] = (lock, users + 1)
        try:
            async with lock:
                (current,) = await self._read_many([held])
                writes, result = await decide(current, self._hlc.now())
                if writes:
                    await self._write(writes)
                return result
        finally:
            lock, users = self._held[held]
            if users == 1:
                del self._held[held]
            else:
                self._held[held] = (lock, users - 1)

    async def _write_copies(self, writes: list[Write]) -> None:
        """Submit the writes to every copy's writer at once; return when a quorum has them durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tally = {"ok": 0, "down": 0}
        errors: list[str] = []
        failures: list[BaseException] = []
        n = len(self.copies)
        unsettled = set(range(n))
        owed: set[int] = set()  # copies that had not settled the write when a quorum acknowledged it

        def settled(i: int, ok: bool, value: Any) -> None:
            unsettled.discard(i)
            if i in owed:
                owed.discard(i)
                self._owed[i] -= 1
            exc = None if ok else value
            if exc is None:
                tally["ok"] += 1
            else:
                exc = self.copies[i].failure(exc)
                if not isinstance(exc, ReplicaDown):
                    if not done.done():
                        done.set_exception(exc)  # a refused argument: the same on every copy
                    return
                self._note(i, exc)
                self._lost(i)
                tally["down"] += 1
                errors.append(str(exc))
                failures.append(exc)
            if done.done():
                return
            if tally["ok"] >= self.quorum:
                done.set_result(None)
                for j in unsettled:
                    owed.add(j)
                    self._owed[j] += 1
            elif tally["down"] > n - self.quorum:
                # A disk with room again takes writes: then the client is to back off (IndexFull).
                kind = IndexFull if any(isinstance(e, ReplicaFull) for e in failures) else IndexUnavailable
                done.set_exception(kind(f"only {tally['ok']} of {n} index copies took the write: {'; '.join(errors)}"))

        frame = b""
        for i, c in enumerate(self.copies):
            then = functools.partial(settled, i)
            writer = self._writers.get(i)
            if writer is None or not writer.running or c.store is None:
                try:
                    c.put_then(writes, then)
                except ReplicaDown as exc:
                    settled(i, False, exc)
                continue
            if not frame:  # packed once for every copy's writer
                self._seq += 1
                frame = CopyWriter.frame(self._seq, writes)
            writer.send(self._seq, frame, then)
        await done

    async def _heal_round(self) -> None:
        """Switch off copies whose file is gone; then, in the process that heals, replace damaged and gone
        copies and run anti-entropy: at once while a copy is to be rebuilt, else every HEAL_INTERVAL."""
        for copy in self.copies:
            if copy.gone():
                copy.switch_off("lost its file (its drive was wiped or replaced while serving)")
        if not self._heal:
            return
        since = time.monotonic() - self._last_heal
        unproven = self._solo and any(c.ready and not self._complete[i] for i, c in enumerate(self.copies))
        if not self._to_rebuild() and since < HEAL_INTERVAL and not (unproven and since >= self._prove_retry):
            return
        self._last_heal = time.monotonic()
        for i, copy in enumerate(self.copies):
            if copy.damaged is not None and self._renew is not None and self._renew(copy.path):
                await self._replace(i)
            ae = self._entropy.get(i)
            if copy.store is None or ae is None:  # missing, or switched off
                continue
            was, store, failures = copy.store.initialized, copy.store, self._failures[i]
            try:
                await ae.round()
            except FAILURES as exc:  # this copy's own store failed: the others go on
                copy._down(exc)
                self._lost(i)
                log.warning("index copy %s: anti-entropy failed: %s", copy.name, exc)
                continue
            if copy.store is store and store.initialized and ae.vouched >= ae.vouching:
                # It holds what a quorum held when the round began, and every write since (none failed).
                self._complete[i] = self._failures[i] == failures
            if not was and copy.store.initialized:
                log.info("index copy %s rebuilt: %d of %d copies ready", copy.name, self.ready, len(self.copies))

    async def start_writers(self) -> None:
        """Solo: write each copy from a child process of its own from now on (metadata/replicated/copy_writer.py);
        a copy whose child cannot be started, or has ended, is written here."""
        await asyncio.gather(*(self._start_writer(i) for i, c in enumerate(self.copies) if c.store is not None))

    async def _start_writer(self, i: int) -> None:
        try:
            copy = self.copies[i]
            assert copy.inode is not None
            self._writers[i] = await CopyWriter.start(copy.path, copy.inode)
        except OSError as exc:
            log.error(
                "index copy %s: its writer process cannot be started (%s): written in-process", self.copies[i].name, exc
            )

    def start(self, heal: bool) -> None:
        """Watch the copies' files; heal (one process only): rebuild fresh, damaged and lost copies, and
        reconcile all of them now and then, in the background."""
        self._heal = heal
        self.worker.start()

    async def mark_all_initialized(self, copies: Sequence[DriveCopy] | None = None) -> None:
        for c in copies if copies is not None else self.copies:
            if c.store is not None:
                await c.store.mark_initialized()

    async def close(self) -> None:
        await self.worker.stop()
        await super().close()
        await asyncio.gather(*(w.close() for w in self._writers.values()))
        stores = [s for c in self.copies for s in (c.store, c.damaged) if s is not None]
        await asyncio.gather(*(s.close() for s in stores), return_exceptions=True)
