"""Versions across three metadata replicas: a replica that was down gets the versions table by anti-entropy,
and reads through a stale one (merged with one that has everything) are right; with one replica down
versions still work. Where the versions are (kept apart), and stores written before they were."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from metadata import keys, versioning
from metadata.records import ObjectManifest, encode
from metadata.replica.client import ReplicaClient
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from metadata.replica.store import ReplicaStore
from metadata.replicated.merged_scan import first_live
from tests.index_records import new_bucket
from tests.replicas import SECRET, Replicas
from tests.version_contract import ids, version, versioned_bucket


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    rs = Replicas(tmp_path)
    await rs.start()
    yield rs
    await rs.close()


async def _versions_held(rs: Replicas, i: int, composites: list[bytes]) -> list[bool]:
    store = rs.members[i].store
    assert store is not None
    return [e is not None and not e.tombstone for e in await store.get("versions", composites)]


async def test_versions_reach_a_replica_that_was_down(replicas: Replicas) -> None:
    idx = replicas.index()
    b = await versioned_bucket(idx)
    await replicas.stop(2)
    written = [version(b, f"k{i % 10}") for i in range(40)]
    for man in written:
        await idx.put_object(man)
    marker = version(b, "k0", marker=True)
    await idx.put_object(marker)
    page = await idx.list_versions(b)
    assert len(page.versions) == 41 and sum(e.latest for e in page.versions) == 10
    noncurrent = [
        versioning.version_composite(e.manifest) for e in page.versions if e.manifest.delete_marker or not e.latest
    ]
    await replicas.restart(2)
    assert not any(await _versions_held(replicas, 2, noncurrent))
    ae = replicas.start_anti_entropy(replicas.members[2])
    for _ in range(400):
        if ae.rounds > 0:
            break
        await asyncio.sleep(0.05)
    assert all(await _versions_held(replicas, 2, noncurrent))
    # Replica 2 alone with either other one gives the same listing.
    await replicas.stop(0)
    assert ids((await idx.list_versions(b)).versions) == ids(page.versions)


async def test_versions_work_with_one_replica_down_and_read_right_through_a_stale_one(replicas: Replicas) -> None:
    idx = replicas.index()
    b = await versioned_bucket(idx)
    await replicas.stop(1)
    v1, v2 = version(b, "k"), version(b, "k")
    await idx.put_object(v1)
    await idx.put_object(v2)
    assert await idx.get_version(b, "k", v1.s3_version_id) == v1
    await idx.delete_version(b, "k", v2.s3_version_id)
    assert await idx.get_object(b, "k") == v1
    await replicas.restart(1)
    await replicas.stop(0)  # now only replica 2 has everything; the listings merge it with stale replica 1
    assert [(m.key, m.s3_version_id) for m in (await idx.list_objects(b)).objects] == [("k", v1.s3_version_id)]
    page = await idx.list_versions(b)
    assert ids(page.versions) == [("k", v1.s3_version_id, False, True)]
    assert await idx.get_object(b, "k") == v1


async def _held(rs: Replicas, table: str, key: bytes) -> int:
    """On how many replicas `key` of `table` has a live entry."""
    return sum([await _present(r.store, table, key) for r in rs.members])


async def _present(store: ReplicaStore | None, table: str, key: bytes) -> bool:
    assert store is not None
    (e,) = await store.get(table, [key])
    return e is not None and not e.tombstone


async def test_a_version_is_written_once_and_stays_where_it_is(replicas: Replicas) -> None:
    """Versions kept apart (metadata/versioning.py): a version with an id goes to the versions table alone and
    an overwrite moves nothing; the null version has the objects table's entry."""
    idx = replicas.index()
    b = await versioned_bucket(idx)
    k = keys.composite(b, "k")
    vs = [version(b, "k") for _ in range(3)]
    for man in vs:
        await idx.put_object(man)
    assert await _held(replicas, "objects", k) == 0
    for man in vs:
        assert await _held(replicas, "versions", versioning.version_composite(man)) >= 2
    await idx.set_versioning(b, "Suspended")
    null = version(b, "k", versioned=False)
    await idx.put_object(null)
    assert await _held(replicas, "objects", k) >= 2
    assert await idx.get_object(b, "k") == null
    await idx.set_versioning(b, "Enabled")
    newer = version(b, "k")
    await idx.put_object(newer)
    assert await idx.get_object(b, "k") == newer
    assert await idx.get_version(b, "k", "null") == null
    page = await idx.list_versions(b)
    assert [(v, latest) for _, v, _, latest in ids(page.versions)] == [
        (newer.s3_version_id, True),
        ("", False),
        *((man.s3_version_id, False) for man in reversed(vs)),
    ]
    assert await idx.delete_version(b, "k", "null") == null  # removed where it is: nothing else moves
    assert await _held(replicas, "objects", k) <= 1  # a quorum has the removal (the third one may not yet)
    assert [v for _, v, _, _ in ids((await idx.list_versions(b)).versions)] == [
        newer.s3_version_id,
        *(man.s3_version_id for man in reversed(vs)),
    ]


async def test_a_store_written_when_the_objects_table_held_the_current_version(replicas: Replicas) -> None:
    """Stores written before versions were kept apart: the objects table holds a key's current version with an
    id, and a null version may sit in the versions table. They read right, and writes on them keep it right."""
    idx = replicas.index()
    b = await versioned_bucket(idx)
    n1, v2, v3 = version(b, "k", versioned=False), version(b, "k"), version(b, "k")
    m0, w1 = version(b, "m", versioned=False), version(b, "m")
    ts = idx._hlc.now()
    await idx._write(
        [
            Write("objects", keys.composite(b, "k"), Entry(ts, False, encode(v3))),
            Write("versions", versioning.version_composite(v2), Entry(ts, False, encode(v2))),
            Write("versions", versioning.version_composite(n1), Entry(ts, False, encode(n1))),
            Write("objects", keys.composite(b, "m"), Entry(ts, False, encode(w1))),
            Write("versions", versioning.version_composite(m0), Entry(ts, False, encode(m0))),
        ]
    )
    assert await idx.get_object(b, "k") == v3 and await idx.latest_version(b, "k") == v3
    assert await idx.get_version(b, "k", "null") == n1
    assert ids((await idx.list_versions(b, prefix="k")).versions) == [
        ("k", v3.s3_version_id, False, True),
        ("k", v2.s3_version_id, False, False),
        ("k", "", False, False),
    ]
    assert [m.key for m in (await idx.list_objects(b)).objects] == ["k", "m"]
    v4 = version(b, "k")
    await idx.put_object(v4)
    assert await idx.get_object(b, "k") == v4
    assert [v for _, v, _, _ in ids((await idx.list_versions(b, prefix="k")).versions)] == [
        v4.s3_version_id,
        v3.s3_version_id,
        v2.s3_version_id,
        "",
    ]
    assert await idx.delete_version(b, "k", v4.s3_version_id) == v4
    assert await idx.get_object(b, "k") == v3
    assert await idx.delete_version(b, "k", v3.s3_version_id) == v3
    assert await idx.get_object(b, "k") == v2
    assert await _held(replicas, "objects", keys.composite(b, "k")) <= 1
    # A null write replaces the null version in the versions table and moves the objects table's version there.
    await idx.set_versioning(b, "Suspended")
    m2 = version(b, "m", versioned=False)
    assert await idx.put_object(m2) == m0
    assert await idx.get_object(b, "m") == m2
    assert await _held(replicas, "versions", versioning.version_composite(w1)) >= 2
    assert await _held(replicas, "versions", versioning.version_composite(m0)) <= 1
    assert ids((await idx.list_versions(b, prefix="m")).versions) == [
        ("m", "", False, True),
        ("m", w1.s3_version_id, False, False),
    ]


def _e(hlc: int, dead: bool = False) -> Entry:
    return Entry(hlc, dead, b"" if dead else b"v")


def test_first_live_of_runs_is_known_only_as_far_as_every_run_reaches() -> None:
    v6, v5, v4 = b"k\x00a", b"k\x00b", b"k\x00c"  # newest first, as a key's versions sort
    # Both replicas agree: v6 is the latest.
    assert first_live([([(v6, _e(6))], True), ([(v6, _e(6))], True)]) == (True, (v6, _e(6)))
    # One removed v6 and holds v5 next; the other is stale at v6 and read no further: v5 is not known
    # (the stale one may hold v5 removed).
    assert first_live([([(v6, _e(6))], True), ([(v6, _e(7, True)), (v5, _e(5))], True)])[0] is False
    # Both removed v6: v5 is known on the one that read it, and the other reached the end of the key.
    assert first_live([([(v6, _e(7, True))], False), ([(v6, _e(7, True)), (v5, _e(5))], True)]) == (
        True,
        (v5, _e(5)),
    )
    # Runs cut by their limit before a live entry: nothing is known.
    assert first_live([([(v6, _e(7, True))], True), ([(v6, _e(7, True))], True)]) == (False, None)
    assert first_live([([], False), ([(v4, _e(4, True))], False)]) == (True, None)


async def _stale_on_different_removals(replicas: Replicas) -> tuple[Any, str, ObjectManifest, list[ObjectManifest]]:
    """Versions v4 < v5 < v6 of "k" (and one version each of "a" and "z"); replica 0 misses the removal of v6,
    replica 1 that of v5; replica 2, which has both, is stopped. Returns the index, the bucket, v4 and a, z."""
    idx = replicas.index()
    b = await versioned_bucket(idx)
    v4, v5, v6 = version(b, "k"), version(b, "k"), version(b, "k")
    others = [version(b, name) for name in ("a", "z")]
    for man in (v4, v5, v6, *others):
        await idx.put_object(man)
    await replicas.stop(0)
    await idx.delete_version(b, "k", v6.s3_version_id)
    await replicas.restart(0)
    await replicas.stop(1)
    await idx.delete_version(b, "k", v5.s3_version_id)
    await replicas.restart(1)
    await replicas.stop(2)
    return idx, b, v4, others


async def test_a_get_through_replicas_stale_on_different_removals(replicas: Replicas) -> None:
    """Read through replicas 0 and 1, a GET finds v4 (their one-request reads disagree past what both read, so
    the key's versions are scanned merged)."""
    idx, b, v4, _ = await _stale_on_different_removals(replicas)
    assert await idx.get_object(b, "k") == v4
    assert await idx.latest_version(b, "k") == v4
    assert [m.key for m in (await idx.list_objects(b)).objects] == ["a", "k", "z"]
    assert ids((await idx.list_versions(b, prefix="k")).versions) == [("k", v4.s3_version_id, False, True)]


async def test_a_listing_through_replicas_stale_on_different_removals(replicas: Replicas) -> None:
    """As above, ListObjects first (nothing read-repaired yet): each replica's run of "k" stops at its first live
    version (v6 on replica 0, v5 on replica 1), the merged runs do not reach v5 on replica 0, so the key's
    versions are read in full and v4 is listed; keys around it, whose runs agree, are listed from the runs."""
    idx, b, v4, (a, z) = await _stale_on_different_removals(replicas)
    listed = [(m.key, m.s3_version_id) for m in (await idx.list_objects(b)).objects]
    assert listed == [("a", a.s3_version_id), ("k", v4.s3_version_id), ("z", z.s3_version_id)]
    page = await idx.list_objects(b, max_keys=1, start_after="a")
    assert [(m.key, m.s3_version_id) for m in page.objects] == [("k", v4.s3_version_id)]


async def test_a_listing_reads_runs_longer_than_its_batches(replicas: Replicas) -> None:
    """A key whose newest versions were removed has a run of tombstones before its first live version; listed
    one key per page (batches of two entries) the run spans several batches of each replica and goes on."""
    idx = replicas.index()
    b = await versioned_bucket(idx)
    vs = [version(b, "k") for _ in range(5)]
    for man in (*vs, version(b, "l")):
        await idx.put_object(man)
    for man in vs[2:]:
        await idx.delete_version(b, "k", man.s3_version_id)
    page = await idx.list_objects(b, max_keys=1)
    assert [(m.key, m.s3_version_id) for m in page.objects] == [("k", vs[1].s3_version_id)]
    assert page.truncated
    page = await idx.list_objects(b, max_keys=1, start_after="k")
    assert [m.key for m in page.objects] == ["l"]


async def test_a_listing_waits_for_the_whole_run_of_a_replica_whose_batch_ends_in_a_tombstone(
    replicas: Replicas,
) -> None:
    """Replica 0 holds "k" as v2 and the removals of v3, v4 and v5; replica 1 missed v4 altogether and the removal
    of v3. Listed one key per page (batches of two entries), replica 0's first batch of the key ends at v4's
    tombstone: its run is only complete with the next batch, whose removal of v3 decides against replica 1's v3."""
    idx = replicas.index()
    b = await versioned_bucket(idx)
    v2, v3, v4, v5 = (version(b, "k") for _ in range(4))
    for man in (v2, v3):
        await idx.put_object(man)
    await replicas.stop(1)
    await idx.put_object(v4)
    await idx.delete_version(b, "k", v4.s3_version_id)
    await replicas.restart(1)
    await idx.put_object(v5)
    await idx.delete_version(b, "k", v5.s3_version_id)
    await replicas.stop(1)
    await idx.delete_version(b, "k", v3.s3_version_id)
    await replicas.restart(1)
    await replicas.stop(2)
    page = await idx.list_objects(b, max_keys=1)
    assert [(m.key, m.s3_version_id) for m in page.objects] == [("k", v2.s3_version_id)]


@pytest.mark.parametrize(
    "args",
    [
        {"reads": [["objects", b"k"]], "table": "versions", "prefix": b"k", "scope": b"", "limit": 0},
        {"reads": [["nope", b"k"]], "table": "versions", "prefix": b"k", "scope": b"", "limit": 4},
        {"reads": [["objects", b"k"]], "table": "nope", "prefix": b"k", "scope": b"", "limit": 4},
        {"reads": [["objects", b"k"]], "table": "versions", "prefix": "k", "scope": b"", "limit": 4},
        {"reads": "objects", "table": "versions", "prefix": b"k", "scope": b"", "limit": 4},
        {"reads": [], "table": "versions", "prefix": b"k", "scope": b"", "limit": "four"},
        {"reads": [], "table": "versions", "prefix": b"k", "scope": b""},
    ],
)
async def test_a_malformed_head_is_refused(replicas: Replicas, args: dict[str, Any]) -> None:
    """The replica's `head` operation (a GET's reads in one request) answers 400 to what it cannot use."""
    client = ReplicaClient(replicas.members[0].url, SECRET)
    try:
        with pytest.raises(ValueError):
            await client._call("head", **args)
        got = await client.head([("objects", b"k")], "versions", b"k\x00", b"", 4)
        assert (got.entries, got.run, got.cut) == ([None], [], False)
    finally:
        await client.close()


@pytest.mark.parametrize(
    "args",
    [
        {"table": "versions", "start": b"", "inclusive": True, "scope": b"", "limit": 0},
        {"table": "nope", "start": b"", "inclusive": True, "scope": b"", "limit": 4},
        {"table": "versions", "start": "k", "inclusive": True, "scope": b"", "limit": 4},
        {"table": "versions", "start": b"", "inclusive": True, "scope": b"", "limit": "four"},
        {"table": "versions", "start": b"", "inclusive": True, "scope": b""},
    ],
)
@pytest.mark.parametrize("op", ["scan", "scan_runs"])
async def test_a_malformed_scan_is_refused(replicas: Replicas, op: str, args: dict[str, Any]) -> None:
    """The replica's scans (`scan_runs`: ListObjects of a versioned bucket) answer 400 to what they cannot use."""
    client = ReplicaClient(replicas.members[0].url, SECRET)
    try:
        with pytest.raises(ValueError):
            await client._call(op, **args)
        assert await getattr(client, op)("versions", b"", True, b"", 4) == ([], False)
    finally:
        await client.close()


async def test_a_gateway_reads_versions_of_a_bucket_another_one_made_versioned(replicas: Replicas) -> None:
    """A gateway remembers which buckets it last read as versioned (to ask for a key's versions with the rest
    of a GET); another gateway turning versioning on is read right at once, then remembered."""
    one, other = replicas.index(), replicas.index()
    b = await new_bucket(one, "v")
    plain = version(b, "k", versioned=False)
    await one.put_object(plain)
    assert await one.get_object(b, "k") == plain  # remembered: not versioned
    await other.set_versioning(b, "Enabled")
    newer = version(b, "k")
    await other.put_object(newer)
    assert await one.get_object(b, "k") == newer
    assert await one.get_object(b, "k") == newer
    await other.put_object(version(b, "k", marker=True))
    assert await one.get_object(b, "k") is None
    assert (await one.latest_version(b, "k")).delete_marker  # type: ignore[union-attr]
