"""One copy of the embedded server's index on a drive: DriveCopy, a ReplicaStore called in-process as a
Replica whose drive's failures count it out; opening the copies (one CommitGate for their writers), and
setting a damaged one aside. The index over them is metadata/replicated/on_drives.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lmdb

from metadata.index import IndexFull
from metadata.lmdb_env import CommitGate, Settled
from metadata.lmdb_open import inode_of
from metadata.replica.merge import Entry
from metadata.replica.protocol import Head, Prepared, ReplicaDown, ReplicaFull, Write
from metadata.replica.store import ReplicaStore

log = logging.getLogger(__name__)

# How many copies' writers write at once: taking turns costs less CPU than GIL hand-overs (lmdb_env.py).
COMMITTING = 1
# What a copy's store raises when its drive or its file fails: count the copy out, never fail the request.
FAILURES = (lmdb.Error, OSError, IndexFull, RuntimeError)
# What says the file itself is damaged (LMDB keeps no checksums: these are the structural checks it makes).
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.VersionMismatchError)


def copy_count(m: int, drives: int) -> int:
    """How many copies: a majority of them survives any m drives lost (2m+1), at most one per drive."""
    return max(1, min(2 * m + 1, drives))


class DriveCopy:
    """One copy, as a Replica: its store's failures are ReplicaDown, so a failing drive is counted out."""

    def __init__(self, path: Path, store: ReplicaStore | None, why: str = "", gate: CommitGate | None = None) -> None:
        self.name = str(path)
        self.path = path
        self.store = store
        self.gate = gate  # shared with the other copies (metadata/lmdb_env.py): also for a rebuilt store
        self.why = why  # why there is no store (or why it was switched off)
        self.damaged: ReplicaStore | None = None  # the store switched off as damaged, until it is replaced
        self.inode = inode_of(path) if store is not None else None  # of data.mdb as opened

    def gone(self) -> bool:
        """Whether the file this copy writes to was deleted or replaced under it (its drive wiped while
        serving): what it takes would vanish at the next start, so it must not count for a quorum."""
        if self.store is None:
            return False
        try:
            return inode_of(self.path) != self.inode
        except OSError:
            return True

    def switch_off(self, why: str) -> None:
        if self.store is not None:
            log.error("index copy %s %s: switched off until it is rebuilt", self.name, why)
            self.damaged, self.store, self.why = self.store, None, why

    @property
    def ready(self) -> bool:
        return self.store is not None and self.store.initialized

    def _live(self) -> ReplicaStore:
        if self.store is None:
            raise ReplicaDown(f"{self.name}: {self.why}")
        return self.store

    def _down(self, exc: BaseException) -> ReplicaDown:
        if isinstance(exc, IndexFull):  # its disk is full: counted out, and said so if no quorum (503 SlowDown)
            return ReplicaFull(f"{self.name}: {exc}")
        if isinstance(exc, _DAMAGE):
            # Set aside and rebuilt by the healing worker (EmbeddedIndex) or the next start.
            self.switch_off(f"is damaged: {exc}")
        return ReplicaDown(f"{self.name}: {exc}")

    async def get(self, table: str, key_list: list[bytes]) -> list[Entry | None]:
        try:
            return await self._live().get(table, key_list)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def get_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]:
        try:
            return await self._live().get_many(reads)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def total(self, bucket: str) -> tuple[int, int]:
        try:
            return await self._live().total(bucket)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def head(self, reads: list[tuple[str, bytes]], table: str, prefix: bytes, scope: bytes, limit: int) -> Head:
        try:
            return await self._live().head(reads, table, prefix, scope, limit)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def put(self, writes: list[Write]) -> int:
        try:
            return await self._live().put(writes)
        except FAILURES as exc:
            raise self._down(exc) from None

    def put_then(self, writes: list[Write], done: Settled) -> None:
        """put() with done(ok, changed or exception) called once it settles (EmbeddedIndex._write); its
        failures are mapped by failure()."""
        try:
            self._live().put_then(writes, done)
        except FAILURES as exc:
            raise self._down(exc) from None

    def failure(self, exc: BaseException) -> BaseException:
        """What a failed call's exception counts as: ReplicaDown for the drive's failures, else itself."""
        return self._down(exc) if isinstance(exc, FAILURES) else exc

    async def scan(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        try:
            return await self._live().scan(table, start, inclusive, scope, limit)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def scan_runs(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        try:
            return await self._live().scan_runs(table, start, inclusive, scope, limit)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def prepare(self, table: str, key: bytes, txn_id: str, ts: int, lease: float) -> Prepared:
        try:
            return await self._live().prepare(table, key, txn_id, ts, lease)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def commit(self, table: str, key: bytes, txn_id: str, writes: list[Write]) -> bool:
        try:
            return await self._live().commit(table, key, txn_id, writes)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def release(self, table: str, key: bytes, txn_id: str) -> None:
        try:
            await self._live().release(table, key, txn_id)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def chunk_digests(self, table: str, chunk: int) -> list[tuple[bytes, bytes]]:
        try:
            return await self._live().chunk_digests(table, chunk)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def range_digests(self, table: str, starts: list[bytes]) -> list[bytes]:
        try:
            return await self._live().range_digests(table, starts)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def pull(
        self, table: str, start: bytes, end: bytes | None, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bytes | None]:
        try:
            return await self._live().pull(table, start, end, limit)
        except FAILURES as exc:
            raise self._down(exc) from None

    async def status(self) -> bool:
        try:
            return await self._live().status()
        except FAILURES as exc:
            raise self._down(exc) from None


def set_aside(path: Path, why: str) -> str:
    aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
    path.rename(aside)
    log.warning("index copy %s is damaged (%s): set aside as %s, rebuilding it from the others", path, why, aside)
    return str(aside)


async def open_copy(path: Path | None, verify: bool, gate: CommitGate | None = None) -> DriveCopy:
    """Open the copy in `path` (None: its drive is missing), creating it empty if absent. verify (at start,
    once for all processes): walk it first, and set a damaged one aside to start it afresh (not initialized)."""
    if path is None:
        return DriveCopy(Path("(missing drive)"), None, "its drive is missing", gate)
    for attempt in range(2):
        store = None
        try:
            store = await asyncio.to_thread(ReplicaStore.open, path, gate=gate)
            if verify:
                await asyncio.to_thread(store.verify)
            return DriveCopy(path, store, gate=gate)
        except _DAMAGE as exc:
            if store is not None:
                await store.close()
            if attempt == 0 and verify:
                try:
                    set_aside(path, str(exc))
                    continue
                except OSError as err:
                    return DriveCopy(path, None, f"damaged, and cannot be set aside: {err}", gate)
            return DriveCopy(path, None, f"damaged: {exc}", gate)
        except (lmdb.Error, OSError) as exc:
            return DriveCopy(path, None, f"cannot open: {exc}", gate)
    raise AssertionError("unreachable")


async def open_copies(paths: Sequence[Path | None], verify: bool) -> list[DriveCopy]:
    """The copies, their writers sharing one CommitGate (metadata/lmdb_env.py)."""
    gate = CommitGate(COMMITTING)
    return list(await asyncio.gather(*(open_copy(p, verify, gate) for p in paths)))
