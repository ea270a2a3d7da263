"""The one rule replicas use to reconcile versions of a record: the newest wins.

An Entry is one version of a record: its hybrid-logical-clock timestamp, whether it is a tombstone
(a delete), and the encoded record. merge() picks the greater of two entries by (hlc, tombstone,
value): a total order, so merge is commutative, associative and idempotent, and any delivery order
of the same writes converges (tests/test_merge.py). Equal timestamps (two coordinators in the same
millisecond with the same counter) are broken deterministically: a delete beats a put, then the
greater encoded value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    hlc: int
    tombstone: bool
    value: bytes = b""  # the encoded record; empty for a tombstone

    def rank(self) -> tuple[int, bool, bytes]:
        return (self.hlc, self.tombstone, self.value)


def merge(a: Entry | None, b: Entry | None) -> Entry | None:
    """The version that wins; None (never written) loses to anything."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a.rank() >= b.rank() else b


def merge_all(entries: list[Entry | None]) -> Entry | None:
    out: Entry | None = None
    for e in entries:
        out = merge(out, e)
    return out


def live(e: Entry | None) -> bytes | None:
    """The record's value if the entry holds one (not absent, not deleted)."""
    return None if e is None or e.tombstone else e.value
