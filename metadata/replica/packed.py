"""A replica's records as LMDB holds them: its tables, and an entry packed into an LMDB key and value,

    value = hlc (8 bytes) | flags (1 byte: 1 tombstone, 2 full key follows) | [len (2) | full key] | record

(long record keys hashed by keys.encode, the full key kept in the value), and entries merged in packed. Light on
imports: an index copy's writer process uses it alone (metadata/replicated/copy_child.py).

Each store also keeps, per bucket, the running total of its `usage` records (`totals`: bucket -> bytes, objects),
changed in the transaction of every merge that changes one: the sum over the bucket's range of `usage` without
reading it. Not replicated: each store's totals are those of its own records (see EmbeddedIndex.bucket_usage).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import lmdb
import msgpack

from metadata import keys
from metadata.replica.merge import Entry

# Replicated tables (anti-entropy covers each). A data directory from before a table existed gets it,
# empty, when opened: the writes it missed arrive by anti-entropy like any others.
TABLES = (
    "buckets",
    "objects",
    "uploads",
    "upload_keys",
    "parts",
    "nodes",
    "drives",
    "node_states",
    "repairs",
    "users",
    "leases",
    "versions",
    "usage",
    "notify_targets",
    "events",
)
STORE_TABLES = (*TABLES, "locks", "meta", "totals")  # the store's LMDB databases: the tables and its own three
HEADER = struct.Struct(">QB")
TOMB, FULL = 1, 2
TOTAL = struct.Struct(">qq")  # a bucket's bytes and objects in `totals`
TOTALS_KEPT = b"totals"  # in `meta`: the totals are complete (a store made before they were kept computes them once)


def table_db(dbs: dict[str, Any], name: str) -> Any:
    """The LMDB database of replicated table `name`; ValueError for a name that is not one (from the network)."""
    if name not in TABLES:
        raise ValueError(f"no table {name!r}")
    return dbs[name]


def pack_entry(full: bytes, e: Entry) -> tuple[bytes, bytes]:
    """(LMDB key, LMDB value) for an entry of record key `full`."""
    raw = keys.encode(full)
    flags = (TOMB if e.tombstone else 0) | (FULL if raw != full else 0)
    head = HEADER.pack(e.hlc, flags)
    if raw != full:
        head += struct.pack(">H", len(full)) + full
    return raw, head + e.value


def unpack_entry(raw: bytes, value: bytes) -> tuple[bytes, Entry]:
    hlc, flags = HEADER.unpack_from(value)
    pos = HEADER.size
    full = raw
    if flags & FULL:
        (n,) = struct.unpack_from(">H", value, pos)
        full = bytes(value[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return full, Entry(hlc, bool(flags & TOMB), bytes(value[pos:]))


def merge_packed(txn: lmdb.Transaction, dbs: dict[str, Any], items: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Merge entries packed by pack_entry, (table, LMDB key, value), in; return how many changed something.

    No entry is decoded: of two packed values of one key, the greater is the newer entry (merge.merge), as
    the header's big-endian hlc, then its flags (the tombstone bit; the full-key bit and the full key are the
    same for one key), then the record compare in the order of Entry.rank(). Usage records that change move
    their bucket's total."""
    changed = 0
    moved: dict[bytes, list[int]] = {}
    for name, raw, value in items:
        db = table_db(dbs, name)
        current = txn.get(raw, db=db)
        if current is None or value > current:
            txn.put(raw, value, db=db)
            changed += 1
            if name == "usage":
                _move(moved, raw, current, -1)
                _move(moved, raw, value, 1)
    for bucket, (size, objects) in moved.items():
        add_total(txn, dbs["totals"], bucket, size, objects)
    return changed


def _move(moved: dict[bytes, list[int]], raw: bytes, value: bytes | None, sign: int) -> None:
    """Count packed usage record `value` (none, a tombstone: nothing) into its bucket's change, `sign` times."""
    if value is None:
        return
    _, e = unpack_entry(raw, value)
    if e.tombstone:
        return
    size, objects = msgpack.unpackb(e.value)
    change = moved.setdefault(raw[: raw.index(b"\x00")], [0, 0])  # a usage key is the bucket, 0, the rest
    change[0] += sign * size
    change[1] += sign * objects


def add_total(txn: lmdb.Transaction, db: Any, bucket: bytes, size: int, objects: int) -> None:
    was = txn.get(bucket, db=db)
    old_size, old_objects = TOTAL.unpack(was) if was is not None else (0, 0)
    txn.put(bucket, TOTAL.pack(old_size + size, old_objects + objects), db=db)


def read_total(txn: lmdb.Transaction, db: Any, bucket: bytes) -> tuple[int, int]:
    """(bytes, objects) of `bucket`'s usage records in this store."""
    was = txn.get(bucket, db=db)
    return TOTAL.unpack(was) if was is not None else (0, 0)


def keep_totals(env: lmdb.Environment, dbs: dict[str, Any]) -> bool:
    """Make the totals complete if they are not kept yet (a store from before them): sum the usage table once.
    True if it did."""
    with env.begin(write=True) as txn:
        if txn.get(TOTALS_KEPT, db=dbs["meta"]) is not None:
            return False
        moved: dict[bytes, list[int]] = {}
        for raw, value in txn.cursor(dbs["usage"]):
            _move(moved, bytes(raw), bytes(value), 1)
        txn.drop(dbs["totals"], delete=False)
        for bucket, (size, objects) in moved.items():
            add_total(txn, dbs["totals"], bucket, size, objects)
        txn.put(TOTALS_KEPT, b"1", db=dbs["meta"])
    return True
