"""A replica's records as LMDB holds them: its tables, and an entry packed into an LMDB key and value,

    value = hlc (8 bytes) | flags (1 byte: 1 tombstone, 2 full key follows) | [len (2) | full key] | record

(long record keys hashed by keys.encode, the full key kept in the value), and entries merged in packed. Light on
imports: an index copy's writer process uses it alone (metadata/replicated/copy_child.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import lmdb

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
STORE_TABLES = (*TABLES, "locks", "meta")  # the store's LMDB databases: the tables and its own two
HEADER = struct.Struct(">QB")
TOMB, FULL = 1, 2


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


def merge_packed(txn: lmdb.Transaction, table: Callable[[str], Any], items: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Merge entries packed by pack_entry, (table, LMDB key, value), in; return how many changed something.

    No entry is decoded: of two packed values of one key, the greater is the newer entry (merge.merge), as
    the header's big-endian hlc, then its flags (the tombstone bit; the full-key bit and the full key are the
    same for one key), then the record compare in the order of Entry.rank()."""
    changed = 0
    for name, raw, value in items:
        db = table(name)
        current = txn.get(raw, db=db)
        if current is None or value > current:
            txn.put(raw, value, db=db)
            changed += 1
    return changed
