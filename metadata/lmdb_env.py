"""LmdbEnv: an LMDB environment with our durability settings, one writer thread with group commit, reader threads.

The two metadata stores run on it: LocalIndex (metadata/local/store.py) and ReplicaStore
(metadata/replica/store.py). Every call is a transaction body fn(txn, *args) run off the event loop.

Durability: the environment is opened with LMDB's defaults (sync and metasync on, no writemap), so
a commit is on disk when it returns; sync is never turned off (an index may be the only copy).
Writes are group-committed: the writer thread takes every write queued meanwhile and runs each in
a nested transaction of one outer transaction, so a batch costs one fsync while each write stays
atomic (a failing one is rolled back alone). No write is acknowledged before its batch is durable.

Environments written together (the embedded server's index copies) share a CommitGate, so that one of
their writer threads at a time runs its batch's writes (their commits, fsyncs mostly, overlap): py-lmdb
lets go of the GIL around every call, and five writers taking turns at it with the event loop spent more
CPU on the hand-overs than on the writes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from metadata.index import IndexFull
from metadata.lmdb_open import MAP_SIZE, no_room, open_env, run_batch, too_long

T = TypeVar("T")


def write_error(exc: Exception, path: str | None = None) -> Exception:
    """What a caller is told when its write failed (path: the environment's, to tell a full disk)."""
    if isinstance(exc, lmdb.BadValsizeError):
        return too_long()
    if isinstance(exc, lmdb.MapFullError) or no_room(exc, path):
        return IndexFull(f"no room for the write{f' in {path}' if path else ''}: {exc}")
    return exc


class CommitGate:
    """Lets `slots` of the writer threads that share it write at a time; the others wait their turn.

    A holder that has been inside for longer than `stuck` seconds (a hung drive) stops counting, so a drive
    that hangs never holds up the others' writes for longer than that.
    """

    def __init__(self, slots: int = 1, stuck: float = 0.25) -> None:
        self._slots = slots
        self._stuck = stuck
        self._cond = threading.Condition()
        self._inside: dict[int, float] = {}  # ticket -> when its commit began
        self._tickets = 0

    def enter(self) -> int:
        with self._cond:
            while True:
                now = time.monotonic()
                busy = [t for t in self._inside.values() if now - t < self._stuck]
                if len(busy) < self._slots:
                    self._tickets += 1
                    self._inside[self._tickets] = now
                    return self._tickets
                self._cond.wait(self._stuck - (now - min(busy)))

    def leave(self, ticket: int) -> None:
        with self._cond:
            del self._inside[ticket]
            self._cond.notify()


@dataclass(slots=True)
class _WriteJob:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: asyncio.Future[Any] | Settled
    loop: asyncio.AbstractEventLoop


# Told on the event loop whether a write submitted with submit_then() became durable: (True, its result) or
# (False, the exception).
Settled = Callable[[bool, Any], None]


def _settle(outcomes: list[tuple[asyncio.Future[Any] | Settled, bool, Any]]) -> None:
    for done, ok, value in outcomes:
        if not isinstance(done, asyncio.Future):
            done(ok, value)
        elif done.done():  # the caller was cancelled; the write itself is durable or rolled back all the same
            continue
        elif ok:
            done.set_result(value)
        else:
            done.set_exception(value)


class LmdbEnv:
    """An open environment and its named databases (`db`); `what` names it in errors and thread names."""

    def __init__(
        self, env: lmdb.Environment, dbs: dict[str, Any], what: str, readers: int, gate: CommitGate | None = None
    ) -> None:
        self.env = env
        self._gate = gate
        self.db = dbs
        self._what = what
        # One writer thread (LMDB has one writer at a time anyway); readers beside it, as LMDB's MVCC
        # allows, so a long scan never holds up writes.
        tag = what.replace(" ", "-")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lmdb-{tag}-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix=f"lmdb-{tag}-reader")
        self._pending: list[_WriteJob] = []
        self._lock = threading.Lock()
        self._flushing = False
        self._closed = False

    @classmethod
    def open(
        cls,
        path: Path,
        names: Iterable[str],
        what: str,
        readers: int,
        map_size: int = MAP_SIZE,
        dupsort: Iterable[str] = (),
        gate: CommitGate | None = None,
    ) -> LmdbEnv:
        return cls(*open_env(path, names, map_size, dupsort), what, readers, gate)

    async def close(self) -> None:
        """Finish the reads and writes already accepted, then close the environment. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        await asyncio.to_thread(self._readers.shutdown, True)  # no reader may outlive the environment
        await asyncio.get_running_loop().run_in_executor(self._writer, self.env.close)  # after any batch queued
        self._writer.shutdown(wait=False)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self._what} is closed")

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(txn, *args) in a read transaction on a reader thread."""
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, fn, args)

    def read_here(self, fn: Callable[..., T], *args: Any) -> T:
        """A one-key read, right here on the event loop: a lookup in LMDB's memory map takes
        microseconds, far less than the hop to a reader thread and back (measured: the hop was
        a fifth of a small GET's CPU). Scans and writes stay off the loop."""
        self._check_open()
        return self._read(fn, args)

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            with self.env.begin(write=False) as txn:
                return fn(txn, *args)
        except lmdb.BadValsizeError:
            raise too_long() from None

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(txn, *args) as one atomic write, durable when this returns; an exception rolls it back."""
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """write() without its coroutine: the future is done once the write is durable (or failed)."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue(fn, args, fut)
        return fut

    def submit_then(self, done: Settled, fn: Callable[..., Any], *args: Any) -> None:
        """submit() without a future: done(ok, result or exception) is called on the event loop once the
        write is durable or failed (a caller writing many stores at once, per request: no future and no
        callback handle each)."""
        self._queue(fn, args, done)

    def _queue(self, fn: Callable[..., Any], args: tuple[Any, ...], done: asyncio.Future[Any] | Settled) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check_open()
            self._pending.append(_WriteJob(fn, args, done, loop))
            if not self._flushing:
                self._flushing = True
                # Under the lock, so close() cannot queue the environment's close before this flush.
                self._writer.submit(self._flush)

    def _flush(self) -> None:
        """On the writer thread: commit batches until nothing is queued."""
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._flushing = False
                    return
            try:
                outcomes = self._commit(batch)
            except Exception as exc:  # the batch did not become durable: none of it is acknowledged
                outcomes = [(False, write_error(exc, self.env.path()))] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any] | Settled, bool, Any]]] = {}
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                by_loop.setdefault(job.loop, []).append((job.done, ok, value))
            for loop, settled in by_loop.items():
                loop.call_soon_threadsafe(_settle, settled)

    def _commit(self, batch: list[_WriteJob]) -> list[tuple[bool, Any]]:
        """Run and commit a batch in one transaction (one fsync): (ok, result or exception) per write.
        The writes pass the gate; the commit (fsyncs mostly, the GIL let go) runs beside the others' writes."""
        ticket = self._gate.enter() if self._gate is not None else 0
        try:
            outer, outcomes = run_batch(self.env, [(job.fn, job.args) for job in batch], write_error)
        finally:
            if self._gate is not None:
                self._gate.leave(ticket)
        outer.commit()
        return outcomes
