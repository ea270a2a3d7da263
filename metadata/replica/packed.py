"""A replica's records as LMDB holds them: its tables, and an entry packed into an LMDB key and value,

    value = hlc (8 bytes) | flags (1 byte: 1 tombstone, 2 full key follows) | [len (2) | full key] | record

(long record keys hashed by keys.encode, the full key kept in the value), and entries merged in packed. Light on
imports: an index copy's writer process uses it alone (metadata/replicated/copy_child.py).

Each store also keeps, per bucket, the running total of what its objects and versions tables hold (`totals`:
bucket -> bytes, objects, as usage_of counts a manifest), changed in the transaction of every merge that changes
one of their entries: the bucket's usage without reading its range. Not replicated: each store's totals are those
of its own entries (see EmbeddedIndex.bucket_usage). A merge needs the usage of the entry it replaces (read from
its stored bytes) and of the new one (given with the write by a writer that knows it, else read the same way).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import lmdb

from metadata import keys
from metadata.replica.manifests import stored_usage
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
MANIFEST_TABLES = ("objects", "versions")  # what a bucket's usage counts
HEADER = struct.Struct(">QB")
TOMB, FULL = 1, 2
TOTAL = struct.Struct(">qq")  # a bucket's bytes and objects in `totals`
# In `meta`: the totals are those of the manifests (a store whose totals followed its usage records, or were not
# kept at all, computes them once at open).
TOTALS_KEPT = b"totals-of-manifests"
# An item to merge: (table, LMDB key, packed value) and, optionally, the value's usage (bytes, objects) if the
# writer knows it (None: read from the value).
Item = tuple[str, bytes, bytes] | tuple[str, bytes, bytes, Sequence[int] | None]


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


def merge_packed(txn: lmdb.Transaction, dbs: dict[str, Any], items: Iterable[Item]) -> int:
    """Merge entries packed by pack_entry, (table, LMDB key, value[, usage]), in; return how many changed something.

    The comparison decodes nothing: of two packed values of one key, the greater is the newer entry (merge.merge), as
    the header's big-endian hlc, then its flags (the tombstone bit; the full-key bit and the full key are the
    same for one key), then the record compare in the order of Entry.rank(). A manifest that changes moves its
    bucket's total by the difference between its usage and the replaced one's."""
    changed = 0
    moved: dict[bytes, list[int]] = {}
    for item in items:
        name, raw, value = item[0], item[1], item[2]
        db = table_db(dbs, name)
        current = txn.get(raw, db=db)
        if current is None or value > current:
            txn.put(raw, value, db=db)
            changed += 1
            if name in MANIFEST_TABLES:
                given = item[3] if len(item) > 3 else None
                new = packed_usage(value) if given is None else (int(given[0]), int(given[1]))
                old = packed_usage(current)
                if new != old:
                    _count(moved, raw, new[0] - old[0], new[1] - old[1])
    _add_totals(txn, dbs, moved)
    return changed


def _count(moved: dict[bytes, list[int]], raw: bytes, size: int, objects: int) -> None:
    """Add a change of the manifest at LMDB key `raw` to its bucket's (a key is the bucket, 0, the rest)."""
    change = moved.setdefault(raw[: raw.index(b"\x00")], [0, 0])
    change[0] += size
    change[1] += objects


def _add_totals(txn: lmdb.Transaction, dbs: dict[str, Any], moved: dict[bytes, list[int]]) -> None:
    for bucket, (size, objects) in moved.items():
        add_total(txn, dbs["totals"], bucket, size, objects)


def packed_usage(value: bytes | None) -> tuple[int, int]:
    """(bytes, objects) of the manifest packed as `value` (none, a tombstone: nothing), read from its bytes."""
    if value is None:
        return 0, 0
    _, flags = HEADER.unpack_from(value)
    if flags & TOMB:
        return 0, 0
    pos = HEADER.size
    if flags & FULL:
        (n,) = struct.unpack_from(">H", value, pos)
        pos += 2 + n
    u = stored_usage(memoryview(value)[pos:])
    return u.bytes, u.objects


def add_total(txn: lmdb.Transaction, db: Any, bucket: bytes, size: int, objects: int) -> None:
    was = txn.get(bucket, db=db)
    old_size, old_objects = TOTAL.unpack(was) if was is not None else (0, 0)
    txn.put(bucket, TOTAL.pack(old_size + size, old_objects + objects), db=db)


def read_total(txn: lmdb.Transaction, db: Any, bucket: bytes) -> tuple[int, int]:
    """(bytes, objects) of `bucket`'s usage records in this store."""
    was = txn.get(bucket, db=db)
    return TOTAL.unpack(was) if was is not None else (0, 0)


def keep_totals(env: lmdb.Environment, dbs: dict[str, Any]) -> bool:
    """Make the totals those of the manifests if they are not kept so yet (a store from before): sum the objects
    and versions tables once. True if it did."""
    with env.begin(write=True) as txn:
        if txn.get(TOTALS_KEPT, db=dbs["meta"]) is not None:
            return False
        moved: dict[bytes, list[int]] = {}
        for name in MANIFEST_TABLES:
            for raw, value in txn.cursor(dbs[name]):
                size, objects = packed_usage(value)
                if size or objects:
                    _count(moved, raw, size, objects)
        txn.drop(dbs["totals"], delete=False)
        _add_totals(txn, dbs, moved)
        txn.put(TOTALS_KEPT, b"1", db=dbs["meta"])
    return True
