"""The Index contract for tags and conditional deletes (part of IndexContract, tests/index_contract.py).

Kept apart so that neither module grows past a readable size; it builds its own small records so that
index_contract.py can import it without a cycle.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from metadata.index import Index, NoSuchBucket, PreconditionFailed
from metadata.records import BucketRecord, Condition, ObjectManifest, PartRecord, UploadRecord, decode, encode


def _id() -> str:
    return uuid.uuid4().hex


def _manifest(bucket: str, key: str, etag: str = "", tags: dict[str, str] | None = None) -> ObjectManifest:
    part = PartRecord(0, _id(), 3, _id(), [f"d{i}" for i in range(6)], 4, 2, 1 << 20, inline=b"abc")
    return ObjectManifest(bucket, key, _id(), 3, etag or _id(), 1_700_000_000.5, "AKIA", [part], tags=tags or {})


async def _bucket(index: Index) -> str:
    name = f"t-{_id()[:8]}"
    await index.create_bucket(BucketRecord(name, "AKIA", time.time()))
    return name


class TagsContract:
    """Object and bucket tags, and deletes with a condition."""

    # ---- records

    def test_tags_round_trip_and_are_left_out_when_empty(self) -> None:
        man = _manifest("b", "k", tags={"a": "1", "ü": ""})
        assert decode(ObjectManifest, encode(man)) == man
        bare = _manifest("b", "k")
        assert b"tags" not in encode(bare) and decode(ObjectManifest, encode(bare)).tags == {}
        up = UploadRecord("b", "k", _id(), 1.0, "AKIA", tags={"x": "y"})
        assert decode(UploadRecord, encode(up)) == up

    # ---- object tags

    async def test_set_object_tags_keeps_the_rest_of_the_manifest(self, index: Index) -> None:
        name = await _bucket(index)
        man = _manifest(name, "k", tags={"old": "1"})
        await index.put_object(man)
        assert await index.set_object_tags(name, "k", man.version_id, {"a": "b", "c": ""}) is True
        got = await index.get_object(name, "k")
        assert got is not None and got.tags == {"a": "b", "c": ""}
        got.tags = man.tags
        assert got == man  # parts (inline bytes included), etag and metadata untouched
        assert await index.set_object_tags(name, "k", man.version_id, {}) is True
        got = await index.get_object(name, "k")
        assert got is not None and got.tags == {}
        page = await index.list_objects(name)
        assert [o.key for o in page.objects] == ["k"]

    async def test_set_object_tags_only_on_the_version_given(self, index: Index) -> None:
        name = await _bucket(index)
        first = _manifest(name, "k")
        await index.put_object(first)
        second = _manifest(name, "k", tags={"keep": "me"})
        await index.put_object(second)
        assert await index.set_object_tags(name, "k", first.version_id, {"x": "y"}) is False
        assert await index.get_object(name, "k") == second
        assert await index.set_object_tags(name, "missing", first.version_id, {"x": "y"}) is False
        assert await index.get_object(name, "missing") is None
        await index.delete_object(name, "k")
        assert await index.set_object_tags(name, "k", second.version_id, {"x": "y"}) is False
        assert await index.get_object(name, "k") is None

    async def test_overwrite_after_retag_wins(self, index: Index) -> None:
        name = await _bucket(index)
        first = _manifest(name, "k")
        await index.put_object(first)
        assert await index.set_object_tags(name, "k", first.version_id, {"t": "1"})
        second = _manifest(name, "k")
        replaced = await index.put_object(second)
        assert replaced is not None and replaced.tags == {"t": "1"}
        assert await index.get_object(name, "k") == second

    async def test_racing_retags_leave_one_of_them(self, index: Index) -> None:
        name = await _bucket(index)
        man = _manifest(name, "k")
        await index.put_object(man)
        sets = [{"n": str(i)} for i in range(4)]
        done = await asyncio.gather(*(index.set_object_tags(name, "k", man.version_id, t) for t in sets))
        assert all(done)
        got = await index.get_object(name, "k")
        assert got is not None and got.tags in sets and got.etag == man.etag

    # ---- bucket tags

    async def test_bucket_tags(self, index: Index) -> None:
        name = await _bucket(index)
        rec = await index.get_bucket(name)
        assert rec is not None and rec.tags == {}
        await index.set_bucket_tags(name, {"team": "x", "cost": "12"})
        after = await index.get_bucket(name)
        assert after is not None and after.tags == {"team": "x", "cost": "12"}
        assert (after.owner, after.created, after.region) == (rec.owner, rec.created, rec.region)
        assert [b.tags for b in await index.list_buckets() if b.name == name] == [after.tags]
        await index.set_bucket_tags(name, {})
        cleared = await index.get_bucket(name)
        assert cleared is not None and cleared.tags == {}
        with pytest.raises(NoSuchBucket):
            await index.set_bucket_tags(f"missing-{_id()[:8]}", {"a": "b"})

    # ---- conditional deletes

    async def test_delete_if_match(self, index: Index) -> None:
        name = await _bucket(index)
        man = _manifest(name, "k", etag="e1")
        await index.put_object(man)
        with pytest.raises(PreconditionFailed):
            await index.delete_object(name, "k", Condition(if_match="e2"))
        assert await index.get_object(name, "k") == man
        assert await index.delete_object(name, "k", Condition(if_match="e1")) == man
        assert await index.get_object(name, "k") is None

    async def test_delete_if_match_star_and_missing_keys(self, index: Index) -> None:
        name = await _bucket(index)
        assert await index.delete_object(name, "k", Condition(if_match="*")) is None
        assert await index.delete_object(name, "k", Condition(if_match="e1")) is None
        man = _manifest(name, "k")
        await index.put_object(man)
        assert await index.delete_object(name, "k", Condition(if_match="*")) == man
        assert await index.get_object(name, "k") is None
        with pytest.raises(NoSuchBucket):
            await index.delete_object(f"missing-{_id()[:8]}", "k", Condition(if_match="*"))

    async def test_racing_conditional_deletes_have_one_winner(self, index: Index) -> None:
        name = await _bucket(index)
        man = _manifest(name, "k", etag="e1")
        await index.put_object(man)
        got = await asyncio.gather(*(index.delete_object(name, "k", Condition(if_match="e1")) for _ in range(4)))
        assert [g for g in got if g is not None] == [man]
