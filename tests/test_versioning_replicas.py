"""Versions across three metadata replicas: a replica that was down gets the versions table by anti-entropy,
and reads through a stale one (merged with one that has everything) are right; with one replica down
versions still work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from metadata import versioning
from tests.replicas import Replicas
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
    await replicas.stop(0)  # now only replica 2 has everything; the listing merges it with stale replica 1
    page = await idx.list_versions(b)
    assert ids(page.versions) == [("k", v1.s3_version_id, False, True)]
    assert await idx.get_object(b, "k") == v1
