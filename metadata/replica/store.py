"""ReplicaStore: one metadata replica's versioned records on LMDB.

Each table is a named LMDB database mapping a record key to the record's newest known version, an Entry
(metadata/replica/merge.py), packed as metadata/replica/packed.py says.

Writes are merges (merge.merge): applying the same entries in any order, any number of times,
leaves the same state. A put is one LMDB transaction, synced before put() returns.

Besides the tables: `locks` holds the per-key prepare records of conditional operations (see
metadata/replicated/index.py): never replicated, durable so a restart cannot grant a second holder.
`meta` holds whether this replica is initialized: a fresh (empty or wiped) replica refuses to answer
reads and prepares until anti-entropy has copied what its peers hold (metadata/replica/anti_entropy.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import struct
import time
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from metadata import keys, lmdb_env
from metadata.replica.merge import Entry
from metadata.replica.packed import (
    HEADER,
    STORE_TABLES,
    TABLES,
    TOMB,
    keep_totals,
    merge_packed,
    pack_entry,
    read_total,
    table_db,
    unpack_entry,
)
from metadata.replica.protocol import Head, NotInitialized, Prepared, Write

log = logging.getLogger(__name__)

_INITIALIZED = b"initialized"
READERS = 2
HERE_MAX = 8  # reads of up to this many keys run on the event loop (see _lookup)


def _full_key(raw: bytes, value: bytes) -> bytes:
    return unpack_entry(raw, value)[0]


class ReplicaStore:
    """A replica's tables. Open with ReplicaStore.open(); every method is a transaction run by metadata/lmdb_env.py."""

    def __init__(self, env: lmdb_env.LmdbEnv, fresh: bool) -> None:
        self._lmdb = env
        self._db = env.db
        self.initialized = (
            not fresh and env.read_here(lambda txn: txn.get(_INITIALIZED, db=self._db["meta"])) is not None
        )
        self.name = "local"

    @classmethod
    def open(
        cls, path: Path, map_size: int = lmdb_env.MAP_SIZE, gate: lmdb_env.CommitGate | None = None
    ) -> ReplicaStore:
        path = Path(path)
        fresh = not (path / "data.mdb").exists()
        # Durable commits: a write is acknowledged to a coordinator only once synced here. Reads (quorum
        # reads, listings, anti-entropy digests of whole tables) run beside the writer, never blocking it.
        env = lmdb_env.LmdbEnv.open(path, STORE_TABLES, "replica store", READERS, map_size, gate=gate)
        try:
            if keep_totals(env.env, env.db) and not fresh:
                log.info("%s: usage totals computed from its manifests (kept from now on)", path)
        except BaseException:
            env.env.close()
            raise
        return cls(env, fresh)

    async def close(self) -> None:
        await self._lmdb.close()

    def _table(self, table: str) -> Any:
        return table_db(self._db, table)

    async def mark_initialized(self) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            txn.put(_INITIALIZED, str(time.time()).encode(), db=self._db["meta"])

        await self._lmdb.write(tx)
        self.initialized = True

    async def status(self) -> bool:
        if not self.initialized:
            with contextlib.suppress(NotInitialized):
                self._require_initialized()  # looks again: another process may have finished the rebuild
        return self.initialized

    def verify(self) -> None:
        """Read every key of every table (blocking): LMDB's structural checks find a damaged page on the way."""

        def tx(txn: lmdb.Transaction) -> None:
            for name in (*TABLES, "meta"):
                for _ in txn.cursor(self._db[name]).iternext(values=False):
                    pass

        self._lmdb.read_here(tx)

    def _require_initialized(self) -> None:
        if not self.initialized:
            # Another process on the same store (`tessera server --workers`) may have finished the rebuild.
            self.initialized = self._lmdb.read_here(lambda txn: txn.get(_INITIALIZED, db=self._db["meta"])) is not None
        if not self.initialized:
            raise NotInitialized("this replica is rebuilding from its peers")

    # -- records

    def _read(self, txn: lmdb.Transaction, table: str, key: bytes) -> Entry | None:
        value = txn.get(keys.encode(key), db=self._table(table))
        return None if value is None else unpack_entry(keys.encode(key), value)[1]

    def _apply(self, txn: lmdb.Transaction, writes: list[Write]) -> int:
        return merge_packed(txn, self._db, [(w.table, *pack_entry(w.key, w.entry)) for w in writes])

    async def total(self, bucket: str) -> tuple[int, int]:
        """(bytes, objects) summed over this replica's usage records of `bucket` (packed.py keeps the sum)."""
        self._require_initialized()
        return self._lmdb.read_here(lambda txn: read_total(txn, self._db["totals"], bucket.encode()))

    async def get(self, table: str, key_list: list[bytes]) -> list[Entry | None]:
        self._require_initialized()

        def tx(txn: lmdb.Transaction) -> list[Entry | None]:
            return [self._read(txn, table, k) for k in key_list]

        return await self._lookup(tx, len(key_list))

    async def _lookup(self, tx: Any, n: int) -> list[Entry | None]:
        # A few keys are read right here: microseconds in LMDB's map, less than the hop to a reader thread.
        return self._lmdb.read_here(tx) if n <= HERE_MAX else await self._lmdb.read(tx)

    async def get_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]:
        """The entries of (table, key) pairs, read in one transaction."""
        self._require_initialized()

        def tx(txn: lmdb.Transaction) -> list[Entry | None]:
            return [self._read(txn, table, k) for table, k in reads]

        return await self._lookup(tx, len(reads))

    async def head(self, reads: list[tuple[str, bytes]], table: str, prefix: bytes, scope: bytes, limit: int) -> Head:
        """get_many(reads) and the run of entries under `prefix` (in `scope`, a namespace) up to and including the
        first live one, at most `limit`, in one transaction (protocol.Head): a GET's reads in one request."""
        self._require_initialized()
        if limit < 1:
            raise ValueError("a head's limit is 1 or more")

        def tx(txn: lmdb.Transaction) -> Head:
            entries = [self._read(txn, t, k) for t, k in reads]
            cur = self._cursor(txn, table, prefix, True, scope)
            run: list[tuple[bytes, Entry]] = []
            while (item := cur.next()) is not None and item[0].startswith(prefix):
                if len(run) == limit:
                    return Head(entries, run, True)
                run.append(unpack_entry(item[0], item[1]))
                if not run[-1][1].tombstone:
                    return Head(entries, run, True)
            return Head(entries, run, False)

        # A GET's few reads and short run, read right here as in _lookup; anything longer on a reader thread.
        return self._lmdb.read_here(tx) if max(len(reads), limit) <= HERE_MAX else await self._lmdb.read(tx)

    async def put(self, writes: list[Write]) -> int:
        """Merge the entries in, synced before returning; return how many changed something.

        Group commit (metadata/lmdb_env.py): puts that arrive while a transaction is being synced
        share the next one, so a replica's write rate is not one fsync per write.
        """
        return await self._lmdb.write(self._apply, writes)

    def put_then(self, writes: list[Write], done: lmdb_env.Settled) -> None:
        """put() for a caller in this process writing to many stores at once: done(ok, changed or exception)."""
        self._lmdb.submit_then(done, self._apply, writes)

    async def scan(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        """Entries (tombstones too) with key > start (>= if inclusive) and starting with scope, in key order.

        Returns (entries, more): more is True when the limit cut the scan short.
        """
        return await self._scan(table, start, inclusive, scope, limit, runs=False)

    async def scan_runs(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        """scan() giving each S3 key's run (the record keys up to the NUL after `scope`, a namespace): its entries
        up to and including its first live one (in the versions table, the key's newest version, after the
        tombstones of removed ones), seeking past the rest of the key. A run the limit cuts goes on in the
        next call (from its last key, exclusive); a run ending in a tombstone holds all of its key's entries.
        What ListObjects of a versioned bucket reads (merged_scan.RunsMerged: a quorum's runs merged as far as
        every one reaches; ReplicatedVersions._scan_latest)."""
        return await self._scan(table, start, inclusive, scope, limit, runs=True)

    async def _scan(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int, runs: bool
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        self._require_initialized()
        if limit < 1:
            raise ValueError("a scan's limit is 1 or more")

        def tx(txn: lmdb.Transaction) -> tuple[list[tuple[bytes, Entry]], bool]:
            cur = self._cursor(txn, table, start, inclusive, scope)
            out: list[tuple[bytes, Entry]] = []
            while (item := cur.next()) is not None:
                if len(out) == limit:
                    return out, True
                full, e = unpack_entry(item[0], item[1])
                out.append((full, e))
                if runs and not e.tombstone:
                    cur.seek(keys.past_key(full, scope), inclusive=True)
            return out, False

        return await self._lmdb.read(tx)

    def _cursor(self, txn: lmdb.Transaction, table: str, start: bytes, inclusive: bool, scope: bytes) -> Any:
        cur = keys.OrderedCursor(txn.cursor(self._table(table)), _full_key, scope=scope)
        if start < scope:
            cur.seek(scope, inclusive=True)
        else:
            cur.seek(start, inclusive)
        return cur

    # -- conditional operations: a per-key prepare, then a commit or a release

    @staticmethod
    def _lock_key(table: str, key: bytes) -> bytes:
        return table.encode() + b"\x00" + keys.encode(key)

    async def prepare(self, table: str, key: bytes, txn_id: str, ts: int, lease: float) -> Prepared:
        """Grant `txn_id` the key if no other live holder has it and ts is above every promise and the record.

        The ts rule makes a later holder's commit outrank an earlier holder's that slipped in just
        before its lease ran out, and makes the commit outrank the record it replaces.
        """
        self._require_initialized()

        def tx(txn: lmdb.Transaction) -> Prepared:
            lk = self._lock_key(table, key)
            entry = self._read(txn, table, key)
            raw = txn.get(lk, db=self._db["locks"])
            holder, expiry, promised = msgpack.unpackb(raw) if raw else (None, 0.0, 0)
            floor = max(promised, entry.hlc if entry else 0)
            if (holder not in (None, txn_id) and expiry > time.time()) or ts <= floor:
                return Prepared(False, entry, floor)
            txn.put(lk, msgpack.packb((txn_id, time.time() + lease, ts)), db=self._db["locks"])
            return Prepared(True, entry, ts)

        return await self._lmdb.write(tx)

    async def commit(self, table: str, key: bytes, txn_id: str, writes: list[Write]) -> bool:
        """Apply the writes and release the key, if txn_id still holds it (its lease unexpired)."""

        def tx(txn: lmdb.Transaction) -> bool:
            lk = self._lock_key(table, key)
            raw = txn.get(lk, db=self._db["locks"])
            if raw is None:
                return False
            holder, expiry, _ = msgpack.unpackb(raw)
            if holder != txn_id or expiry <= time.time():
                return False
            self._apply(txn, writes)
            txn.delete(lk, db=self._db["locks"])
            return True

        return await self._lmdb.write(tx)

    async def release(self, table: str, key: bytes, txn_id: str) -> None:
        def tx(txn: lmdb.Transaction) -> None:
            lk = self._lock_key(table, key)
            raw = txn.get(lk, db=self._db["locks"])
            if raw is not None and msgpack.unpackb(raw)[0] == txn_id:
                txn.delete(lk, db=self._db["locks"])

        await self._lmdb.write(tx)

    # -- anti-entropy: digests of ranges of LMDB keys, and the entries of a range

    async def chunk_digests(self, table: str, chunk: int) -> list[tuple[bytes, bytes]]:
        """Split the table into runs of `chunk` entries: [(first LMDB key of the run, digest of the run)].

        The first run starts at b"" (the whole key space is covered); empty table: [(b"", digest of nothing)].
        """

        def tx(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            out: list[tuple[bytes, bytes]] = []
            h = hashlib.blake2b(digest_size=16)
            n = 0
            start = b""
            for raw, value in txn.cursor(self._table(table)):
                if n == chunk:
                    out.append((start, h.digest()))
                    h, n, start = hashlib.blake2b(digest_size=16), 0, bytes(raw)
                _feed(h, raw, value)
                n += 1
            out.append((start, h.digest()))
            return out

        return await self._lmdb.read(tx)

    async def range_digests(self, table: str, starts: list[bytes]) -> list[bytes]:
        """The digest of each range [starts[i], starts[i+1]) (the last one open-ended), starts sorted."""

        def tx(txn: lmdb.Transaction) -> list[bytes]:
            out: list[bytes] = []
            cur = txn.cursor(self._table(table))
            ok = cur.set_range(starts[0]) if starts[0] else cur.first()
            for i in range(len(starts)):
                end = starts[i + 1] if i + 1 < len(starts) else None
                h = hashlib.blake2b(digest_size=16)
                while ok and (end is None or cur.key() < end):
                    _feed(h, cur.key(), cur.value())
                    ok = cur.next()
                out.append(h.digest())
            return out

        return await self._lmdb.read(tx)

    async def pull(
        self, table: str, start: bytes, end: bytes | None, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bytes | None]:
        """Entries with LMDB key in [start, end), up to limit; and the LMDB key to continue from (None: done)."""

        def tx(txn: lmdb.Transaction) -> tuple[list[tuple[bytes, Entry]], bytes | None]:
            cur = txn.cursor(self._table(table))
            ok = cur.set_range(start) if start else cur.first()
            out: list[tuple[bytes, Entry]] = []
            while ok and (end is None or cur.key() < end):
                if len(out) == limit:
                    return out, bytes(cur.key())
                out.append(unpack_entry(bytes(cur.key()), cur.value()))
                ok = cur.next()
            return out, None

        return await self._lmdb.read(tx)

    # -- tombstone collection

    async def tombstones(self, table: str, before: int, limit: int) -> list[tuple[bytes, Entry]]:
        """Up to `limit` tombstones with a timestamp below `before`."""

        def tx(txn: lmdb.Transaction) -> list[tuple[bytes, Entry]]:
            out = []
            for raw, value in txn.cursor(self._table(table)):
                hlc, flags = HEADER.unpack_from(value)
                if flags & TOMB and hlc < before:
                    out.append(unpack_entry(bytes(raw), value))
                    if len(out) == limit:
                        break
            return out

        return await self._lmdb.read(tx)

    async def purge(self, table: str, items: list[tuple[bytes, Entry]]) -> int:
        """Drop the tombstones given, where each is still the version held (nothing newer arrived)."""

        def tx(txn: lmdb.Transaction) -> int:
            n = 0
            for key, e in items:
                if self._read(txn, table, key) == e:
                    txn.delete(keys.encode(key), db=self._table(table))
                    n += 1
            return n

        return await self._lmdb.write(tx)

    async def count(self, table: str) -> int:
        def tx(txn: lmdb.Transaction) -> int:
            return int(txn.stat(self._table(table))["entries"])

        return await self._lmdb.read(tx)


def _feed(h: Any, raw: bytes, value: bytes) -> None:
    h.update(struct.pack(">HI", len(raw), len(value)))
    h.update(raw)
    h.update(value)
