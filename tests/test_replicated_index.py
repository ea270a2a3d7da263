"""ReplicatedIndex over three real metadata services in this process: the Index contract, then replication:
replicas down, stale and wiped; read repair; anti-entropy; tombstone collection; racing conditional writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from metadata.index import BucketAlreadyExists, IndexUnavailable, PreconditionFailed
from metadata.records import BucketRecord, Condition
from metadata.replicated.index import ReplicatedIndex
from tests.accounting_contract import AccountingContract
from tests.index_contract import IndexContract
from tests.index_records import make_manifest, make_upload, new_bucket, new_bucket_name
from tests.lock_contract import LockContract
from tests.replicas import Replicas
from tests.version_contract import VersionContract


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    rs = Replicas(tmp_path)
    await rs.start()
    yield rs
    await rs.close()


class TestReplicatedIndex(IndexContract, VersionContract, AccountingContract, LockContract):
    @pytest.fixture
    async def index(self, replicas: Replicas) -> ReplicatedIndex:
        return replicas.index()


async def until(cond: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def _held(rs: Replicas, i: int, table: str, key: bytes) -> bool:
    store = rs.members[i].store
    assert store is not None
    (e,) = await store.get(table, [key])
    return e is not None and not e.tombstone


async def test_one_replica_down_changes_nothing_for_clients(replicas: Replicas) -> None:
    idx = replicas.index()
    name = await new_bucket(idx)
    await replicas.stop(1)
    mans = [make_manifest(name, f"k{i}") for i in range(5)]
    for m in mans:
        await idx.put_object(m)
    assert [m.key for m in (await idx.list_objects(name)).objects] == [m.key for m in mans]
    assert await idx.get_object(name, "k3") == mans[3]
    await replicas.restart(1)
    assert not await _held(replicas, 1, "objects", b"%s\x00k3" % name.encode())
    assert await idx.get_object(name, "k3") == mans[3]  # this read repairs replica 1 behind it
    for _ in range(50):
        if await _held(replicas, 1, "objects", b"%s\x00k3" % name.encode()):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("read repair did not fix the stale replica")


async def test_two_replicas_down_is_unavailable(replicas: Replicas) -> None:
    idx = replicas.index()
    name = await new_bucket(idx)
    await replicas.stop(0)
    await replicas.stop(2)
    with pytest.raises(IndexUnavailable):
        await idx.put_object(make_manifest(name, "k"))
    with pytest.raises(IndexUnavailable):
        await idx.get_bucket(name)


async def test_anti_entropy_catches_up_a_replica_that_was_down(replicas: Replicas) -> None:
    idx = replicas.index()
    name = await new_bucket(idx)
    await replicas.stop(2)
    keys = [f"k{i:03}" for i in range(120)]
    for k in keys:
        await idx.put_object(make_manifest(name, k))
    await idx.delete_object(name, "k000")
    await replicas.restart(2)
    ae = replicas.start_anti_entropy(replicas.members[2])
    await until(lambda: ae.rounds > 0)
    store = replicas.members[2].store
    assert store is not None
    got = await store.get("objects", [f"{name}\x00{k}".encode() for k in keys])
    assert got[0] is not None and got[0].tombstone
    assert all(e is not None and not e.tombstone for e in got[1:])


async def test_a_wiped_replica_rebuilds_and_then_stands_in(replicas: Replicas) -> None:
    idx = replicas.index()
    name = await new_bucket(idx)
    up = make_upload(name, "u" * 900)
    await idx.create_upload(up)
    for k in ("a", "b" * 1000):
        await idx.put_object(make_manifest(name, k))
    await replicas.restart(0, wipe=True)
    store = replicas.members[0].store
    assert store is not None and not store.initialized
    assert [m.key for m in (await idx.list_objects(name)).objects] == ["a", "b" * 1000]  # served by the other two
    ae = replicas.start_anti_entropy(replicas.members[0])
    # The store is marked initialized mid-round (tombstone collection still follows): wait for the round's end.
    await until(lambda: store.initialized and ae.rounds >= 1)
    assert ae.rounds >= 1
    await replicas.stop(1)  # now the rebuilt replica is needed for every quorum
    assert [m.key for m in (await idx.list_objects(name)).objects] == ["a", "b" * 1000]
    assert (await idx.list_uploads(name)).uploads == [up]
    assert await idx.get_bucket(name) is not None


async def test_racing_bucket_creations_have_one_winner(replicas: Replicas) -> None:
    clients = [replicas.index() for _ in range(6)]
    name = new_bucket_name()

    async def create(i: int) -> str:
        try:
            await clients[i].create_bucket(BucketRecord(name, f"owner{i}", float(i)))
            return f"owner{i}"
        except BucketAlreadyExists as exc:
            return f"lost to {exc.owner}"

    outcomes = await asyncio.gather(*(create(i) for i in range(6)))
    winners = [o for o in outcomes if not o.startswith("lost")]
    assert len(winners) == 1, outcomes
    assert all(o == f"lost to {winners[0]}" for o in outcomes if o.startswith("lost"))
    assert (await clients[0].get_bucket(name)).owner == winners[0]  # type: ignore[union-attr]


async def test_racing_if_none_match_puts_have_one_winner(replicas: Replicas) -> None:
    clients = [replicas.index() for _ in range(5)]
    name = await new_bucket(clients[0])
    mans = [make_manifest(name, "k") for _ in clients]

    async def put(i: int) -> bool:
        try:
            await clients[i].put_object(mans[i], Condition(if_none_match_star=True))
            return True
        except PreconditionFailed:
            return False

    won = await asyncio.gather(*(put(i) for i in range(5)))
    assert sum(won) == 1
    assert await clients[1].get_object(name, "k") == mans[won.index(True)]


async def test_tombstones_are_collected_without_resurrection(replicas: Replicas) -> None:
    idx = replicas.index()
    name = await new_bucket(idx)
    await idx.put_object(make_manifest(name, "gone"))
    await idx.put_object(make_manifest(name, "missed"))
    await replicas.stop(2)
    await idx.delete_object(name, "missed")  # replica 2 still holds the live version
    await replicas.restart(2)
    await idx.delete_object(name, "gone")
    aes = [replicas.start_anti_entropy(r, interval=3600) for r in replicas.members[:2]]
    for ae in aes:
        ae._grace = 0.0  # collect at once
        await until(lambda ae=ae: ae.rounds > 0)  # type: ignore[misc]
    k_missed, k_gone = f"{name}\x00missed".encode(), f"{name}\x00gone".encode()
    s0 = replicas.members[0].store
    assert s0 is not None
    # "gone": every replica has its tombstone, so it may go. "missed": replica 2 could hand it back: kept.
    (missed,) = await s0.get("objects", [k_missed])
    assert missed is not None and missed.tombstone
    ae2 = replicas.start_anti_entropy(replicas.members[2])
    ae2._grace = 0.0
    await until(lambda: ae2.rounds > 0)
    for ae in aes:
        await ae.round()
    await ae2.round()
    for r in replicas.members:
        assert r.store is not None
        assert await r.store.get("objects", [k_missed, k_gone]) == [None, None]
    assert await idx.get_object(name, "missed") is None and await idx.get_object(name, "gone") is None
    assert (await idx.list_objects(name)).objects == []
