"""The coordinator's plumbing under ReplicatedIndex (metadata/replicated/index.py, where the design is told):
quorum reads with read repair, quorum writes, merged scans of a quorum of replicas, and the per-key majority
lock of conditional operations. N replicas, quorum a majority (N//2+1): three in a cluster, up to 2m+1 copies on
the drives of the embedded server (metadata/replicated/on_drives.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from metadata.hlc import HLC
from metadata.index import IndexFull, IndexUnavailable
from metadata.replica.merge import Entry, merge_all
from metadata.replica.protocol import Replica, ReplicaDown, ReplicaFull, Write
from metadata.replicated.merged_scan import Merged, Stream

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE = 10.0  # seconds a prepare grant lasts: a coordinator that dies holding it blocks the key this long
LOCK_ATTEMPTS = 12
BACKOFF_BASE, BACKOFF_CAP = 0.02, 1.0
REPAIR_WAIT = 5.0  # seconds to wait for the slowest replica's answer before repairing it
SCAN_BATCH = 1000


def tomb(ts: int) -> Entry:
    return Entry(ts, True)


class Coordinator:
    """Quorum access to `replicas` (N of them: any majority, N//2+1, is a quorum; three in a cluster)."""

    def __init__(self, replicas: list[Replica], *, lease: float = LEASE, closers: list[Any] | None = None) -> None:
        if not replicas:
            raise ValueError("the replicated index needs at least one replica")
        self._replicas = replicas
        self.quorum = len(replicas) // 2 + 1
        # Every quorum-sized subset, for scans: any one of them meets every acknowledged write.
        self._subsets = list(itertools.combinations(range(len(replicas)), self.quorum))
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
        self, fn: Callable[[Replica], Awaitable[T]], need: int = 0
    ) -> tuple[list[tuple[int, T]], list[tuple[int, asyncio.Task[T]]]]:
        """Call fn on every replica at once; return once `need` answered (and the calls still running).

        The calls still running carry on (a write reaches the other replicas); errors other than a
        replica being down (a refused argument) are raised at once. need 0: a quorum.
        """
        need = need or self.quorum
        tasks = {asyncio.ensure_future(fn(r)): i for i, r in enumerate(self._replicas)}
        pending = set(tasks)
        answers: list[tuple[int, T]] = []
        down: list[str] = []
        full = False
        try:
            while pending and len(answers) < need:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    exc = t.exception()
                    if exc is None:
                        answers.append((tasks[t], t.result()))
                    elif isinstance(exc, ReplicaDown | IndexFull):  # IndexFull: this process's own store
                        self._note(tasks[t], exc)
                        down.append(str(exc))
                        full = full or isinstance(exc, ReplicaFull | IndexFull)
                    else:
                        raise exc
        finally:
            for t in pending:
                self._spawn(t)
        if len(answers) < need and full:  # a disk with room again takes writes: the client is to back off
            raise IndexFull(f"only {len(answers)} of {len(tasks)} metadata replicas took the write: {'; '.join(down)}")
        if len(answers) < need:
            raise IndexUnavailable(f"only {len(answers)} of {len(tasks)} metadata replicas answered: {'; '.join(down)}")
        return answers, [(tasks[t], t) for t in pending]

    async def _read(self, table: str, key_list: list[bytes]) -> list[Entry | None]:
        return await self._read_many([(table, k) for k in key_list])

    async def _read_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]:
        """The newest version of each (table, key) among the first quorum of replicas to answer (one request each)."""
        answers, rest = await self._gather(lambda r: r.get_many(reads))
        return self._merge_reads(reads, answers, rest)

    def _merge_reads(
        self,
        reads: list[tuple[str, bytes]],
        answers: list[tuple[int, list[Entry | None]]],
        rest: list[tuple[int, asyncio.Task[list[Entry | None]]]],
    ) -> list[Entry | None]:
        """The newest entry of each read among the replicas' answers; the ones behind repaired in the background
        (with the late answers in `rest`)."""
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

    def _expand(self, writes: list[Write]) -> list[Write]:
        """The writes an operation's writes carry with them (the usage mirror: replicated/accounting.py)."""
        return writes

    async def _write(self, writes: list[Write]) -> None:
        writes = self._expand(writes)
        if writes:
            await self._gather(lambda r: r.put(writes))

    def _quorums(self) -> list[tuple[int, ...]]:
        """Quorum-sized subsets, those of the replicas that failed least recently first."""
        order = sorted(range(len(self._replicas)), key=lambda i: self._failed_at.get(i, 0.0))
        rank = {i: r for r, i in enumerate(order)}
        return sorted(self._subsets, key=lambda s: sorted(rank[i] for i in s))

    async def _scan(
        self, table: str, scope: bytes, use: Callable[[Merged], Awaitable[T]], batch: int = SCAN_BATCH
    ) -> T:
        """Run `use` over a merged scan of a quorum of replicas, falling back to another subset if one fails."""
        return await self._over_quorums(
            table, lambda pair: Merged([Stream(self._replicas[i], table, scope, batch) for i in pair]), use
        )

    async def _over_quorums(
        self, table: str, merge: Callable[[Sequence[int]], Merged], use: Callable[[Merged], Awaitable[T]]
    ) -> T:
        """Run `use` over merge(a quorum's replica indexes), falling back to another quorum if a replica fails;
        then read-repair what the merge found stale."""
        errors = []
        for pair in self._quorums():
            merged = merge(pair)
            try:
                result = await use(merged)
            except ReplicaDown as exc:
                failed = [i for i in pair if self._replicas[i] is merged.failed]
                self._note(failed[0] if failed else pair[1], exc)
                errors.append(str(exc))
                continue
            self._repair_scan(table, merged)
            return result
        raise IndexUnavailable(f"no {self.quorum} metadata replicas could be listed: {'; '.join(errors)}")

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

        decide returns the writes (the locked key's own one usually stamped with the timestamp given) and
        the result; if it raises or returns no writes, nothing is written. Raises IndexUnavailable if the
        lock cannot be had or the commit is not confirmed by a quorum (then it may or may not have happened).
        """
        for attempt in range(LOCK_ATTEMPTS):
            txn = uuid.uuid4().hex
            ts = self._hlc.now()
            answers = await self._prepare(table, key, txn, ts)
            granted = [i for i, a in enumerate(answers) if not isinstance(a, BaseException) and a.granted]
            for i, a in enumerate(answers):
                if isinstance(a, ReplicaDown | IndexFull):
                    self._note(i, a)
                elif isinstance(a, BaseException):
                    await self._release(table, key, txn, granted)
                    raise a
                else:
                    self._hlc.observe(a.promised)
            if len(granted) >= self.quorum:
                current = merge_all([a.entry for a in answers if not isinstance(a, BaseException)])
                try:
                    writes, result = await decide(current, ts)
                except BaseException:
                    await self._release(table, key, txn, granted)
                    raise
                if not writes:  # the condition decided against writing: nothing to confirm
                    await self._release(table, key, txn, granted)
                    return result
                await self._commit(table, key, txn, granted, writes)
                return result
            await self._release(table, key, txn, granted)
            if sum(1 for a in answers if isinstance(a, ReplicaDown | IndexFull)) > len(self._replicas) - self.quorum:
                if any(isinstance(a, ReplicaFull | IndexFull) for a in answers):
                    raise IndexFull(f"fewer than {self.quorum} metadata replicas had room for the lock")
                raise IndexUnavailable(f"fewer than {self.quorum} metadata replicas answered")
            await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        raise IndexUnavailable(f"could not lock {table} record {key[:60]!r}: too much contention")

    async def _prepare(self, table: str, key: bytes, txn: str, ts: int) -> list[Any]:
        """Ask every replica for the key; stop waiting once a quorum granted (a paused replica must not stall us).

        Answers not waited for count as ReplicaDown here; if such a late answer is a grant, it is released.
        """
        tasks = [asyncio.ensure_future(r.prepare(table, key, txn, ts, self._lease)) for r in self._replicas]
        pending = set(tasks)
        while pending:
            done = [t for t in tasks if t.done()]
            if sum(1 for t in done if t.exception() is None and t.result().granted) >= self.quorum:
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
        writes = self._expand(writes)

        async def one(i: int) -> bool:
            if i in granted:
                return await self._replicas[i].commit(table, key, txn, writes)
            await self._replicas[i].put(writes)  # not a voter: an ordinary write, for durability
            return False

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(self._replicas))]
        ok = 0
        for fut in asyncio.as_completed(tasks):
            with contextlib.suppress(ReplicaDown, IndexFull):
                if await fut:
                    ok += 1
            if ok >= self.quorum:
                break
        for t in tasks:
            if not t.done():
                self._spawn(t)
        if ok < self.quorum:
            raise IndexUnavailable("the metadata replicas did not confirm the commit: it may or may not have happened")
