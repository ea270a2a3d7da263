"""EmbeddedIndex in this process over five copies (the Index contract, then copies lost, wiped and rebuilt);
the processes around it are in tests/test_embedded_index.py."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import lmdb
import pytest

from metadata import keys
from metadata.index import IndexFull, IndexUnavailable, PreconditionFailed
from metadata.lmdb_env import CommitGate
from metadata.records import Condition, ObjectManifest, Usage, encode, usage_of
from metadata.replica.anti_entropy import AntiEntropy
from metadata.replica.manifests import revised, stored_usage
from metadata.replica.merge import Entry
from metadata.replicated.drive_copies import DriveCopy, copy_count, open_copies
from metadata.replicated.on_drives import EmbeddedIndex
from tests.accounting_contract import AccountingContract
from tests.index_contract import IndexContract
from tests.index_records import make_manifest, make_part, new_bucket
from tests.lock_contract import LockContract
from tests.test_replicated_index import until
from tests.version_contract import VersionContract, version

N = 5


async def _open(base: Path, new: bool = False, verify: bool = False) -> EmbeddedIndex:
    index = EmbeddedIndex(await open_copies([base / f"c{i}" for i in range(N)], verify=verify))
    if new:
        await index.mark_all_initialized()
    return index


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[EmbeddedIndex]:
    index = await _open(tmp_path, new=True)
    yield index
    await index.close()


class TestEmbeddedIndex(IndexContract, VersionContract, AccountingContract, LockContract):
    @pytest.fixture
    async def index(self, embedded: EmbeddedIndex) -> EmbeddedIndex:
        return embedded


async def _solo(base: Path) -> EmbeddedIndex:
    """A solo server's index (the only process writing the copies), its copies proven complete."""
    copies = await open_copies([base / f"c{i}" for i in range(N)], verify=False)
    index = EmbeddedIndex(copies, solo=True, prove_retry=0.5)
    await index.mark_all_initialized()
    index.start(heal=True)
    await until(lambda: index.counters()["complete"] == N)
    return index


@pytest.fixture
async def solo(tmp_path: Path) -> AsyncIterator[EmbeddedIndex]:
    index = await _solo(tmp_path)
    yield index
    await index.close()


class TestSoloEmbeddedIndex(IndexContract, VersionContract, AccountingContract, LockContract):
    """The same contract with reads from one complete copy (a key's newest version too), bucket records kept,
    the lock held in process, and a bucket's usage read from that copy's running total."""

    @pytest.fixture
    async def index(self, solo: EmbeddedIndex) -> EmbeddedIndex:
        return solo


async def test_solo_reads_never_miss_an_acknowledged_write(solo: EmbeddedIndex) -> None:
    """A copy that failed a write is not read alone until a round of anti-entropy proves it complete again."""
    name = await new_bucket(solo)
    first = solo.copies[0]
    store = first.store
    first.store, first.why = None, "taken out"
    await solo.put_object(make_manifest(name, "k"))  # acknowledged by the four others
    assert solo.counters()["complete"] == N - 1
    first.store, first.why = store, ""  # back, without the write
    for _ in range(20):
        assert await solo.get_object(name, "k") is not None
    await until(lambda: solo.counters()["complete"] == N)  # a round later: pulled, and proven again
    assert first.store is not None
    (e,) = await first.store.get("objects", [keys.composite(name, "k")])
    assert e is not None and not e.tombstone


async def test_solo_usage_is_a_complete_copys_total_never_a_stale_ones(solo: EmbeddedIndex) -> None:
    """A bucket's usage is the running total of a copy that holds every acknowledged write: never of one that
    missed a write; and if that copy fails to answer, the manifests are summed instead."""
    name = await new_bucket(solo)
    one, two = make_manifest(name, "one"), make_manifest(name, "two")
    await solo.put_object(one)
    first = solo.copies[0]
    store = first.store
    first.store, first.why = None, "taken out"
    await solo.put_object(two)  # acknowledged by the four others; copy 0's total misses it
    first.store, first.why = store, ""
    assert store is not None and await store.total(name) == (one.size, 1)
    want = Usage(one.size + two.size, 2)
    assert await solo.bucket_usage(name) == want
    trusted = solo._trusted()
    assert trusted is not None and trusted != 0
    broken = solo.copies[trusted].store
    assert broken is not None
    await broken.close()  # its next read fails: the manifests are summed over a quorum of the others
    assert await solo.bucket_usage(name) == want


async def test_solo_versioned_get_survives_its_trusted_copy_failing(solo: EmbeddedIndex) -> None:
    """A GET in a bucket known versioned reads the key and its versions in one read of the trusted copy; if that
    copy fails, the GET reads a quorum of the others and gets the same newest version."""
    name = await new_bucket(solo)
    await solo.set_versioning(name, "Enabled")
    older, newer = version(name, "k"), version(name, "k")
    await solo.put_object(older)
    await solo.put_object(newer)
    assert await solo.get_bucket(name) is not None  # the record kept: the one-read path
    got = await solo.get_object(name, "k")
    assert got is not None and got.s3_version_id == newer.s3_version_id
    trusted = solo._trusted()
    assert trusted is not None
    broken = solo.copies[trusted].store
    assert broken is not None
    await broken.close()  # its next read fails
    got = await solo.get_object(name, "k")
    assert got is not None and got.s3_version_id == newer.s3_version_id
    assert solo._trusted() != trusted


async def test_the_copies_keep_their_totals_without_a_usage_mirror(solo: EmbeddedIndex) -> None:
    """The copies hold no usage records (a cluster's replicas do, for merged sums): each copy's totals follow its
    manifests, through overwrites, new versions, delete markers and removals, as a merged sum reads them."""
    name = await new_bucket(solo)
    await solo.put_object(make_manifest(name, "a", parts=[make_part(0, size=10)]))
    await solo.put_object(make_manifest(name, "a", parts=[make_part(0, size=30)]))  # replaces it
    await solo.put_object(make_manifest(name, "gone", parts=[make_part(0, size=50)]))
    await solo.delete_object(name, "gone")
    await solo.set_versioning(name, "Enabled")
    for size in (5, 7):
        man = version(name, "v")
        man.parts, man.size = [make_part(0, size=size)], size
        await solo.put_object(man)
    await solo.put_object(version(name, "v", marker=True))  # counts nothing; the versions below it stay
    want = Usage(30 + 5 + 7, 3)
    assert await solo.bucket_usage(name) == want
    assert await solo._summed_usage(name) == want
    # A write is answered once three copies have it: the other two may still be taking the last ones.
    await until(lambda: solo.counters()["owed"] == 0)
    for copy in solo.copies:
        assert copy.store is not None
        assert await copy.store.total(name) == (want.bytes, want.objects)
        entries, _ = await copy.store.scan("usage", b"", True, b"", 100)
        assert entries == []


async def test_solo_bucket_records_follow_every_change(solo: EmbeddedIndex) -> None:
    name = await new_bucket(solo)
    for status in ("Enabled", "Suspended"):
        assert (await solo.get_bucket(name)) is not None
        await solo.set_versioning(name, status)
        rec = await solo.get_bucket(name)
        assert rec is not None and rec.versioning == status
    await solo.delete_bucket(name)
    assert await solo.get_bucket(name) is None


async def test_solo_conditional_writes_on_one_key_never_both_win(solo: EmbeddedIndex) -> None:
    """The key's lock is held in this process: of racing If-None-Match: * writes exactly one wins."""
    name = await new_bucket(solo)
    cond = Condition(if_none_match_star=True)
    results = await asyncio.gather(
        *(solo.put_object(make_manifest(name, "race"), cond) for _ in range(8)), return_exceptions=True
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, PreconditionFailed) for r in results if isinstance(r, BaseException))
    assert not solo._held  # every key's lock given back


def test_copy_count() -> None:
    assert [copy_count(m, 6) for m in (0, 1, 2, 3)] == [1, 3, 5, 6]
    assert copy_count(2, 4) == 4


async def test_any_two_copies_down_change_nothing_three_stop_it(embedded: EmbeddedIndex) -> None:
    name = await new_bucket(embedded)
    man = make_manifest(name, "k")
    await embedded.put_object(man)
    stores = [c.store for c in embedded.copies]
    for down in ((0, 1), (3, 4), (0, 4)):
        for i, c in enumerate(embedded.copies):
            c.store, c.why = (None, "taken out") if i in down else (stores[i], "")
        assert await embedded.get_object(name, "k") == man
        await embedded.put_object(make_manifest(name, f"k{down}"))
        assert [m.key for m in (await embedded.list_objects(name)).objects][:1] == ["k"]
    for i, c in enumerate(embedded.copies):
        c.store, c.why = (None, "taken out") if i < 3 else (stores[i], "")
    with pytest.raises(IndexUnavailable):
        await embedded.get_object(name, "k")
    with pytest.raises(IndexUnavailable):
        await embedded.put_object(make_manifest(name, "late"))
    for i, c in enumerate(embedded.copies):
        c.store = stores[i]


async def test_wiped_copies_are_rebuilt_while_serving(tmp_path: Path) -> None:
    index = await _open(tmp_path, new=True)
    name = await new_bucket(index)
    mans = [make_manifest(name, f"k{i:04}") for i in range(300)]
    for m in mans:
        await index.put_object(m)
    await index.close()
    for i in (0, 2):
        shutil.rmtree(tmp_path / f"c{i}")
    index = await _open(tmp_path)
    try:
        assert index.ready == 3
        assert await index.get_object(name, "k0123") == mans[123]  # served by the three left
        index.start(heal=True)
        await until(lambda: index.ready == N)
        for i in (0, 2):  # each rebuilt copy alone holds everything
            store = index.copies[i].store
            assert store is not None
            assert await store.count("objects") == len(mans)
    finally:
        await index.close()


async def test_a_fresh_copy_waits_for_enough_initialized_peers(tmp_path: Path) -> None:
    """Of five copies, a fresh one needs three initialized peers: two could both lack an acknowledged write."""
    index = await _open(tmp_path, new=True)
    await index.close()
    shutil.rmtree(tmp_path / "c0")
    index = await _open(tmp_path)
    try:
        copies = index.copies
        fresh = copies[0].store
        assert fresh is not None and not fresh.initialized
        peers = [copies[1], copies[2], DriveCopy(tmp_path / "x", None, "gone"), DriveCopy(tmp_path / "y", None, "gone")]
        await AntiEntropy(fresh, peers).round()
        assert not fresh.initialized
        await AntiEntropy(fresh, [copies[1], copies[2], copies[3], DriveCopy(tmp_path / "y", None, "gone")]).round()
        assert fresh.initialized
    finally:
        await index.close()


def _overwrite_header(path: Path) -> None:
    with open(path, "r+b") as f:  # both LMDB meta pages
        f.write(b"\0" * 16384)


def _set_aside(base: Path, name: str) -> list[Path]:
    return list(base.glob(f"{name}.damaged-*"))


async def test_a_damaged_copy_is_set_aside_at_open(tmp_path: Path) -> None:
    index = await _open(tmp_path, new=True)
    await new_bucket(index)
    await index.close()
    _overwrite_header(tmp_path / "c3" / "data.mdb")
    index = await _open(tmp_path, verify=True)
    try:
        assert index.ready == 4 and not index.copies[3].ready and index.copies[3].store is not None
        assert _set_aside(tmp_path, "c3")
    finally:
        await index.close()


async def _renewing_with_objects(base: Path) -> tuple[EmbeddedIndex, str, list[ObjectManifest]]:
    """Five new copies that replace a lost one while serving, holding fifty objects."""
    index = EmbeddedIndex((await _open(base, new=True)).copies, renew=lambda _: True)
    name = await new_bucket(index)
    mans = [make_manifest(name, f"k{i}") for i in range(50)]
    for m in mans:
        await index.put_object(m)
    return index, name, mans


async def test_a_copy_damaged_while_serving_is_replaced_and_rebuilt(tmp_path: Path) -> None:
    index, name, mans = await _renewing_with_objects(tmp_path)
    try:
        # What a read through a damaged page raises (lmdb's own error), met by a request:
        index.copies[2]._down(lmdb.CorruptedError("mdb_cursor_get: MDB_CORRUPTED: Located page was wrong type"))
        assert index.ready == N - 1
        assert await index.get_object(name, "k7") == mans[7]  # served by the others
        index.start(heal=True)
        await until(lambda: index.ready == N)
        assert _set_aside(tmp_path, "c2")
        store = index.copies[2].store
        assert store is not None and await store.count("objects") == len(mans)
    finally:
        await index.close()


async def test_a_copy_whose_drive_is_wiped_while_serving_is_rebuilt(tmp_path: Path) -> None:
    """The file is gone but still open: what the copy takes would vanish at the next start."""
    index, _, mans = await _renewing_with_objects(tmp_path)
    try:
        old = index.copies[1].store
        shutil.rmtree(tmp_path / "c1")
        index.start(heal=True)
        await until(lambda: index.copies[1].store not in (old, None) and index.ready == N)  # made again, rebuilt
        store = index.copies[1].store
        assert store is not None and await store.count("objects") == len(mans)
        assert await asyncio.to_thread((tmp_path / "c1" / "data.mdb").exists)
    finally:
        await index.close()


async def test_copy_states_say_which_copies_serve_and_why_the_others_do_not(tmp_path: Path) -> None:
    """What `admin status` lists as the index's replicas: every copy by its directory; one switched off with its
    reason, one not yet rebuilt as such, until the heal makes them whole again."""
    index, name, mans = await _renewing_with_objects(tmp_path)
    try:
        states = index.copy_states()
        assert [s["address"] for s in states] == [str(tmp_path / f"c{i}") for i in range(N)]
        assert all(s["ok"] and s["error"] == "" for s in states)
        index.copies[2]._down(lmdb.CorruptedError("mdb_cursor_get: MDB_CORRUPTED: Located page was wrong type"))
        fresh = index.copies[4].store
        assert fresh is not None
        fresh.initialized = False  # as a copy made again on an adopted drive is, until anti-entropy filled it
        states = index.copy_states()
        assert [s["ok"] for s in states] == [True, True, False, True, False]
        assert "MDB_CORRUPTED" in states[2]["error"] and states[4]["error"].startswith("rebuilding")
        index.start(heal=True)
        await until(lambda: all(s["ok"] for s in index.copy_states()))
        assert await index.get_object(name, "k7") == mans[7]
    finally:
        await index.close()


async def test_copies_out_of_room_answer_index_full(embedded: EmbeddedIndex) -> None:
    """Full disks under a quorum of copies: IndexFull (503 SlowDown to the client), not unavailable."""
    name = await new_bucket(embedded)
    real = [c.store for c in embedded.copies]

    class Full:  # a store whose disk is full: it reads, but takes no write
        def __init__(self, store: Any) -> None:
            self.get_many = store.get_many
            self.initialized = True

        def put_then(self, writes: object, done: Callable[[bool, Any], None]) -> None:
            full = IndexFull("no room for the write: No space left on device")
            asyncio.get_running_loop().call_soon(done, False, full)

    try:
        for c in embedded.copies[:3]:
            c.store = Full(c.store)
        with pytest.raises(IndexFull):
            await embedded.put_object(make_manifest(name, "k"))
    finally:
        for c, s in zip(embedded.copies, real, strict=True):
            c.store = s


def test_the_usage_mirror_reads_what_decoding_would_give() -> None:
    """stored_usage reads two fields of the stored bytes: the same as usage_of the decoded manifest, for inline
    objects, delete markers, empty objects and revisions (update_part's rewrites)."""
    big = make_manifest("b", "big", parts=[make_part(1)])
    empty = make_manifest("b", "empty", parts=[])
    marker = make_manifest("b", "marker", parts=[])
    marker.delete_marker = True
    inline = make_manifest("b", "inline")
    inline.parts[0].inline = b"x" * inline.size
    for man in (big, empty, marker, inline):
        stored = encode(man)
        assert stored_usage(stored) == usage_of(man)
        assert stored_usage(revised(Entry(1, False, stored), man)) == usage_of(man)


def test_a_writer_stuck_at_the_gate_holds_the_others_up_no_longer_than_stuck() -> None:
    """A hung drive's writer never leaves the gate: the next writer gets in once `stuck` has passed."""
    gate = CommitGate(slots=1, stuck=1.0)
    gate.enter()  # never left, as a writer hung in its drive
    started = time.monotonic()
    ticket = gate.enter()
    waited = time.monotonic() - started
    gate.leave(ticket)
    assert 0.95 <= waited < 6.0
    ticket = gate.enter()  # the hung one no longer counts: no wait (a wait would be the whole second)
    assert time.monotonic() - started - waited < 0.5
    gate.leave(ticket)
