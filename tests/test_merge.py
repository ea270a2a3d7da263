"""The merge rule (metadata/replica/merge.py) and the hybrid logical clock (metadata/hlc.py), by their properties."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metadata import hlc
from metadata.hlc import HLC
from metadata.lmdb_open import open_env
from metadata.records import ObjectManifest, encode, usage_of
from metadata.replica.manifests import decode_manifest, revised
from metadata.replica.merge import Entry, merge
from metadata.replica.packed import (
    STORE_TABLES,
    TOTALS_KEPT,
    keep_totals,
    merge_packed,
    pack_entry,
    read_total,
    unpack_entry,
)

# Few distinct timestamps and values, so ties (the deterministic tie-break) come up often.
entries = st.builds(
    Entry,
    hlc=st.integers(0, 4),
    tombstone=st.booleans(),
    value=st.sampled_from([b"", b"a", b"b", b"ab"]),
)
maybe = st.none() | entries


@given(maybe, maybe)
def test_commutative(a: Entry | None, b: Entry | None) -> None:
    assert merge(a, b) == merge(b, a)


@given(maybe, maybe, maybe)
def test_associative(a: Entry | None, b: Entry | None, c: Entry | None) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(maybe, maybe)
def test_idempotent(a: Entry | None, b: Entry | None) -> None:
    assert merge(a, a) == a
    assert merge(merge(a, b), b) == merge(a, b)


@given(maybe)
def test_absent_is_the_identity(a: Entry | None) -> None:
    assert merge(None, a) == a


@given(st.lists(entries, max_size=8), st.randoms(use_true_random=False))
def test_any_delivery_order_converges(writes: list[Entry], rnd: object) -> None:
    """Three replicas get the same writes in different orders, some twice: they end up equal."""
    states = []
    for _ in range(3):
        order = list(writes) + [w for w in writes if rnd.random() < 0.3]  # type: ignore[attr-defined]
        rnd.shuffle(order)  # type: ignore[attr-defined]
        states.append(functools.reduce(merge, order, None))
    assert states[0] == states[1] == states[2]
    if writes:
        assert states[0] == max(writes, key=Entry.rank)


@given(st.lists(entries, min_size=1, max_size=6))
def test_newest_timestamp_wins(writes: list[Entry]) -> None:
    got = functools.reduce(merge, writes, None)
    assert got is not None and got.hlc == max(w.hlc for w in writes)


def test_hlc_is_monotonic_when_the_wall_clock_stalls_or_steps_back() -> None:
    wall = iter([1000, 1000, 999, 1001, 1001])
    clock = HLC(lambda: next(wall))
    stamps = [clock.now() for _ in range(5)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert hlc.millis(stamps[0]) == 1000 and hlc.millis(stamps[3]) == 1001


@given(st.integers(0, 1 << 60))
def test_hlc_after_observing_issues_larger(ts: int) -> None:
    clock = HLC(lambda: 5)
    clock.observe(ts)
    assert clock.now() > ts


@given(maybe, entries, st.sampled_from([b"k", b"bucket\x00" + b"k" * 300]))
def test_packed_entries_merge_as_entries_do(current: Entry | None, new: Entry, key: bytes) -> None:
    """The copies' writers compare packed entries (store.merge_packed) without decoding them: the same outcome as
    merge(), for short keys and for hashed long ones (whose full key the value carries). (A table of records other
    than manifests: a manifest's usage is read from it, tested below.)"""
    raw, value = pack_entry(key, new)
    with tempfile.TemporaryDirectory() as tmp:
        env, dbs = open_env(Path(tmp), ["users"], map_size=1 << 20)
        try:
            with env.begin(write=True) as txn:
                if current is not None:
                    txn.put(*pack_entry(key, current), db=dbs["users"])
                changed = merge_packed(txn, dbs, [("users", raw, value)])
                stored = txn.get(raw, db=dbs["users"])
        finally:
            env.close()
    winner = merge(current, new)
    assert changed == (winner != current)
    assert unpack_entry(raw, stored) == (key, winner)


# Manifests of two buckets in both tables (one key long enough to be hashed): (key, stamp, tombstone, size,
# delete marker, rewritten by update_part, usage given with the write).
manifest_writes = st.lists(
    st.tuples(
        st.sampled_from([b"b1\x00x", b"b1\x00y\x00v1", b"b2\x00x", b"b1\x00" + b"z" * 600]),
        st.integers(0, 3),
        st.booleans(),
        st.integers(0, 1000),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=30,
)


def _stored(key: bytes, size: int, marker: bool, rewritten: bool) -> bytes:
    bucket, name = key.decode().split("\x00")[:2]
    man = ObjectManifest(bucket, name, "0" * 32, size, "e" * 32, 1.0, "owner", [], delete_marker=marker)
    return revised(Entry(0, False, encode(man)), man) if rewritten else encode(man)


@given(manifest_writes, st.integers(1, 5))
def test_totals_are_the_usage_of_the_manifests_kept(writes: list, batch: int) -> None:
    """Each store's running total of a bucket's manifests (merge_packed keeps it) is always the usage of the
    entries it holds, whatever the order and grouping of the writes, stale and repeated ones included, whether
    the writer gave each manifest's usage or the store read it; and a store from before (totals kept from its
    usage records, or not at all) computes the same once, at open (keep_totals)."""
    packed, winners = [], {}
    for key, ts, tomb, size, marker, rewritten, give in writes:
        e = Entry(ts, tomb, b"" if tomb else _stored(key, size, marker, rewritten))
        table = "versions" if key.count(b"\x00") == 2 else "objects"
        counted = (0, 0) if tomb or marker else (size, 1)
        packed.append((table, *pack_entry(key, e), counted if give else None))
        winners[key] = merge(winners.get(key), e)
    expect = {b"b1": [0, 0], b"b2": [0, 0]}
    for key, e in winners.items():
        if not e.tombstone:
            u = usage_of(decode_manifest(e.value))
            expect[key.split(b"\x00")[0]][0] += u.bytes
            expect[key.split(b"\x00")[0]][1] += u.objects
    with tempfile.TemporaryDirectory() as tmp:
        env, dbs = open_env(Path(tmp), STORE_TABLES, map_size=1 << 22)
        try:
            for i in range(0, len(packed), batch):
                with env.begin(write=True) as txn:
                    merge_packed(txn, dbs, packed[i : i + batch])
            with env.begin() as txn:
                assert {b: list(read_total(txn, dbs["totals"], b)) for b in expect} == expect
            with env.begin(write=True) as txn:  # as a store made before the totals were kept from the manifests
                txn.put(b"b1", b"\x00" * 16, db=dbs["totals"])
                txn.delete(TOTALS_KEPT, db=dbs["meta"])
            assert keep_totals(env, dbs) and not keep_totals(env, dbs)
            with env.begin() as txn:
                assert {b: list(read_total(txn, dbs["totals"], b)) for b in expect} == expect
        finally:
            env.close()


@given(st.sampled_from([b"", b"\x05", b"\x92\x01\x02", b"\xc1\x00\x00\x00\xff\x81", b"\xff\x00", b"\x81\xa4size\xa1x"]))
def test_a_manifest_table_merges_only_manifests(value: bytes) -> None:
    """A replica reads the size of every manifest it merges (for its totals): what is not one, from a peer, is a
    refused argument (ValueError, a 400), never another error."""
    item = ("objects", *pack_entry(b"b1\x00k", Entry(1, False, value)))
    with tempfile.TemporaryDirectory() as tmp:
        env, dbs = open_env(Path(tmp), STORE_TABLES, map_size=1 << 20)
        try:
            with env.begin(write=True) as txn, pytest.raises(ValueError):
                merge_packed(txn, dbs, [item])
        finally:
            env.close()
