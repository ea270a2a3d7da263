"""LocalIndex (LMDB) against the Index contract, plus what only the local store has."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metadata import keys, records
from metadata.index import Index, PreconditionFailed
from metadata.keys import sortable
from metadata.local.store import LocalIndex
from metadata.records import BucketRecord, Condition, DriveRecord, NodeRecord, ObjectManifest, PartRecord, UploadRecord
from tests.accounting_contract import AccountingContract
from tests.index_contract import IndexContract
from tests.index_records import make_manifest, make_node, make_part, make_repair, make_upload, make_user, new_bucket
from tests.lock_contract import LockContract
from tests.version_contract import VersionContract

MAP_SIZE = 1 << 30


class TestLocalIndex(IndexContract, VersionContract, AccountingContract, LockContract):
    @pytest.fixture
    async def index(self, tmp_path: Path) -> AsyncIterator[LocalIndex]:
        idx = LocalIndex.open(tmp_path / "index", map_size=MAP_SIZE)
        yield idx
        await idx.close()


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalIndex]:
    idx = LocalIndex.open(tmp_path / "index", map_size=MAP_SIZE)
    yield idx
    await idx.close()


async def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "index"
    idx = LocalIndex.open(path, map_size=MAP_SIZE)
    name = await new_bucket(idx)
    mans = [make_manifest(name, k) for k in ("a", "é" * 600)]
    for man in mans:
        await idx.put_object(man)
    up = make_upload(name, "u")
    await idx.create_upload(up)
    part = make_part(7)
    await idx.put_part(up.upload_id, part)
    bucket = await idx.get_bucket(name)
    await idx.upsert_node(make_node("n1", ["d1"]))
    node = await idx.set_node_state("n1", "draining")
    repairs = [make_repair(1, "a" * 32, 0, i) for i in range(3)]
    await idx.queue_repairs(repairs)
    user = make_user("alice")
    await idx.create_user(user)
    assert await idx.acquire_lease("repairer", "gw-a", 60.0)
    await idx.close()

    idx = LocalIndex.open(path, map_size=MAP_SIZE)
    try:
        assert await idx.get_bucket(name) == bucket
        assert (await idx.list_objects(name)).objects == mans
        assert await idx.get_upload(up.upload_id) == up
        assert (await idx.list_parts(up.upload_id)).parts == [part]
        assert (await idx.list_uploads(name)).uploads == [up]
        assert await idx.list_nodes() == [node]
        assert await idx.list_repairs() == repairs and await idx.repair_backlog() == 3
        assert await idx.list_users() == [user]
        assert not await idx.acquire_lease("repairer", "gw-b", 60.0)
    finally:
        await idx.close()


def test_implements_the_index_protocol() -> None:
    for name, proto in inspect.getmembers(Index, inspect.isfunction):
        if name.startswith("_"):
            continue
        impl = getattr(LocalIndex, name)
        assert inspect.iscoroutinefunction(impl), name
        assert list(inspect.signature(impl).parameters) == list(inspect.signature(proto).parameters), name


async def test_durable_environment(local: LocalIndex) -> None:
    flags = local._lmdb.env.flags()
    assert flags["sync"] and flags["metasync"] and not flags["writemap"] and not flags["map_async"]


async def test_transactions_run_off_the_loop_and_writes_on_one_thread(local: LocalIndex) -> None:
    loop_thread = threading.get_ident()
    readers: set[int] = set()
    writers: set[int] = set()
    for _ in range(3):
        readers.add(await local._run(False, lambda _txn: threading.get_ident()))
        writers.add(await local._run(True, lambda _txn: threading.get_ident()))
    assert len(writers) == 1 and loop_thread not in readers | writers


async def test_concurrent_writes_are_group_committed_each_atomic(local: LocalIndex) -> None:
    """Many writes at once share commits, yet a failing one is rolled back alone."""
    name = await new_bucket(local)

    def failing(txn: lmdb.Transaction) -> None:
        txn.put(b"should-not-stay", b"x", db=local._db["buckets"])
        raise RuntimeError("boom")

    puts = [local.put_object(make_manifest(name, f"k{i}")) for i in range(50)]
    results = await asyncio.gather(*puts, local._run(True, failing), return_exceptions=True)
    assert isinstance(results[-1], RuntimeError) and all(r is None for r in results[:-1])
    assert len((await local.list_objects(name)).objects) == 50
    assert await local._run(False, lambda txn: txn.get(b"should-not-stay", db=local._db["buckets"])) is None


async def test_concurrent_writes_are_serialized(local: LocalIndex) -> None:
    name = await new_bucket(local)
    results = await asyncio.gather(
        *(local.put_object(make_manifest(name, "k"), Condition(if_none_match_star=True)) for _ in range(20)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, PreconditionFailed) for r in results) == 19


async def test_complete_for_another_key_changes_nothing(local: LocalIndex) -> None:
    name = await new_bucket(local)
    up = make_upload(name, "k")
    await local.create_upload(up)
    part = make_part(1)
    await local.put_part(up.upload_id, part)
    with pytest.raises(ValueError):
        await local.complete_upload(up.upload_id, make_manifest(name, "other", parts=[part]))
    assert await local.get_upload(up.upload_id) == up
    assert (await local.list_parts(up.upload_id)).parts == [part]
    assert await local.get_object(name, "other") is None


async def test_closed_index_refuses_calls(tmp_path: Path) -> None:
    idx = LocalIndex.open(tmp_path / "index", map_size=MAP_SIZE)
    await idx.close()
    await idx.close()  # idempotent
    with pytest.raises(RuntimeError):
        await idx.list_buckets()


def test_records_round_trip() -> None:
    part = make_part(3)
    man = make_manifest("bkt", "ключ/😀\n", parts=[make_part(1), part])
    up = make_upload("bkt", "k" * 1024)
    bucket = BucketRecord(name="bkt", owner="AKIA", created=1.5, region="eu-central-1")
    bare = ObjectManifest("b", "", "0" * 32, 0, "e", 0.0, "o", [])
    for rec in (bucket, part, man, up, bare):
        assert records.decode(type(rec), records.encode(rec)) == rec
    assert isinstance(records.decode(ObjectManifest, records.encode(man)).parts[1], PartRecord)
    assert records.decode(UploadRecord, records.encode(up)).key == "k" * 1024


def test_node_records_round_trip() -> None:
    node = make_node("n1", ["d1", "d2"])
    back = records.decode(NodeRecord, records.encode(node))
    assert back == node and all(isinstance(d, DriveRecord) for d in back.drives)
    bare = NodeRecord("n2", "http://[::1]:1", "", [], 0.0, 0.0)
    assert records.decode(NodeRecord, records.encode(bare)) == bare


async def test_refused_input_is_a_value_error_and_changes_nothing(local: LocalIndex) -> None:
    """Names LMDB cannot key by, and part numbers past 4 bytes: ValueError (the service's 400), not lmdb's errors."""
    with pytest.raises(ValueError):
        await local.create_bucket(BucketRecord("x" * 600, "o", 1.0))
    with pytest.raises(ValueError):
        await local.get_bucket("")
    with pytest.raises(ValueError):
        await local.upsert_node(make_node("n", ["d" * 600]))
    assert await local.list_buckets() == [] and await local.list_nodes() == []
    name = await new_bucket(local)
    up = make_upload(name, "k")
    await local.create_upload(up)
    for number in (-1, 1 << 32):
        with pytest.raises(ValueError):
            await local.put_part(up.upload_id, make_part(number))
    assert (await local.list_parts(up.upload_id, marker=(1 << 32) + 5)).parts == []
    assert (await local.list_parts(up.upload_id)).parts == []


async def test_refused_repair_user_and_lease_input_changes_nothing(local: LocalIndex) -> None:
    good = make_repair(1, "a" * 32, 1, 0)
    for bad in (
        make_repair(1, "a" * 32, 1 << 32, 0),
        make_repair(1, "a" * 32, -1, 0),
        make_repair(1, "a" * 32, 1, 1 << 16),
        make_repair(1, "a" * 32, 1, -2),
        make_repair(1, "a" * 600, 1, 0),  # past LMDB's key limit
    ):
        with pytest.raises(ValueError):
            await local.queue_repairs([good, bad])
        if len(bad.data_id) == 32:  # a position that cannot be encoded at all
            with pytest.raises(ValueError):
                await local.list_repairs(bad)
    assert await local.list_repairs() == [] and await local.repair_backlog() == 0
    for name in ("", "u" * 600):
        with pytest.raises(ValueError):
            await local.create_user(make_user(name))
    assert await local.list_users() == []
    for ttl in (-1.0, math.nan):
        with pytest.raises(ValueError):
            await local.acquire_lease("l", "h", ttl)
    assert await local.acquire_lease("l", "h2", 10.0)  # the refused calls took nothing


def test_key_encoding_boundaries() -> None:
    short = b"b\x00" + b"k" * (keys.PREFIX_LEN - 2)
    assert keys.encode(short) == short
    longer = short + b"k"
    enc = keys.encode(longer)
    assert len(enc) == keys.HASHED_LEN and enc.startswith(short[: keys.PREFIX_LEN])
    assert keys.encode(short + b"j") != enc  # same head, different hash
    assert keys.encode(keys.composite("b", "é" * 512)) == keys.encode(keys.composite("b", "é" * 512))
    assert len(keys.encode(keys.composite("b", "x" * 1024))) == keys.HASHED_LEN < 511


@given(st.lists(st.floats(allow_nan=False), min_size=2, max_size=10))
def test_sortable_floats(xs: list[float]) -> None:
    xs = [0.0 if x == 0 else x for x in xs]  # -0.0 == 0.0 but their bytes differ
    assert sorted(xs) == sorted(xs, key=sortable)
    assert sortable(-math.inf) < sortable(-1.0) < sortable(0.0) < sortable(1e-300) < sortable(math.inf)
