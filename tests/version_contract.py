"""The versioning part of the Index contract (metadata/index.py, docs/versioning.md).

Mixed into each index's test class beside IndexContract (same `index` fixture): LocalIndex, RemoteIndex
and ReplicatedIndex run the same cases.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from metadata.index import BucketNotEmpty, Index, NoSuchBucket, PreconditionFailed
from metadata.records import Condition, ObjectManifest, new_version_id
from tests.index_records import make_manifest, make_part, new_bucket

_clock = [1_800_000_000.0]


def _tick() -> float:
    _clock[0] += 1.0
    return _clock[0]


def version(bucket: str, key: str, versioned: bool = True, marker: bool = False) -> ObjectManifest:
    """A manifest as the gateway makes it: a later time each call, a version id when versioning is on."""
    now = _tick()
    man = make_manifest(bucket, key, parts=[] if marker else None)
    man.last_modified = now
    man.s3_version_id = new_version_id(now) if versioned else ""
    man.delete_marker = marker
    if marker:
        man.size = 0
    return man


async def versioned_bucket(index: Index, status: str = "Enabled") -> str:
    name = await new_bucket(index, "v")
    await index.set_versioning(name, status)
    return name


def ids(page_versions: list) -> list[tuple[str, str, bool, bool]]:
    return [(e.manifest.key, e.manifest.s3_version_id, e.manifest.delete_marker, e.latest) for e in page_versions]


class VersionContract:
    async def test_set_versioning(self, index: Index) -> None:
        name = await new_bucket(index, "v")
        rec = await index.get_bucket(name)
        assert rec is not None and rec.versioning == ""
        await index.set_versioning(name, "Enabled")
        assert (await index.get_bucket(name)).versioning == "Enabled"  # type: ignore[union-attr]
        await index.set_versioning(name, "Suspended")
        assert (await index.get_bucket(name)).versioning == "Suspended"  # type: ignore[union-attr]
        with pytest.raises(ValueError):
            await index.set_versioning(name, "Off")
        with pytest.raises(NoSuchBucket):
            await index.set_versioning(name + "-none", "Enabled")

    async def test_versions_are_kept_newest_first(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1, v2, v3 = version(b, "k"), version(b, "k"), version(b, "k")
        for v in (v1, v2, v3):
            assert await index.put_object(v) is None  # nothing freed: every version is kept
        assert (await index.get_object(b, "k")) == v3
        for v in (v1, v2, v3):
            assert await index.get_version(b, "k", v.s3_version_id) == v
        assert await index.get_version(b, "k", new_version_id(1.0)) is None
        assert await index.get_version(b, "other", v1.s3_version_id) is None
        page = await index.list_versions(b)
        assert ids(page.versions) == [("k", v.s3_version_id, False, v is v3) for v in (v3, v2, v1)]
        listed = await index.list_objects(b)
        assert [m.version_id for m in listed.objects] == [v3.version_id]

    async def test_delete_marker_hides_the_key(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1 = version(b, "k")
        await index.put_object(v1)
        marker = version(b, "k", marker=True)
        assert await index.put_object(marker) is None
        assert await index.get_object(b, "k") is None
        assert await index.latest_version(b, "k") == marker
        assert (await index.list_objects(b)).objects == []
        page = await index.list_versions(b)
        assert ids(page.versions) == [("k", marker.s3_version_id, True, True), ("k", v1.s3_version_id, False, False)]
        # Removing the marker brings the version back as current.
        assert await index.delete_version(b, "k", marker.s3_version_id) == marker
        assert await index.get_object(b, "k") == v1
        assert await index.latest_version(b, "k") == v1

    async def test_delete_current_version_promotes_the_next(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1, v2 = version(b, "k"), version(b, "k")
        await index.put_object(v1)
        await index.put_object(v2)
        assert await index.delete_version(b, "k", v2.s3_version_id) == v2
        assert await index.get_object(b, "k") == v1
        assert ids((await index.list_versions(b)).versions) == [("k", v1.s3_version_id, False, True)]
        assert await index.delete_version(b, "k", v1.s3_version_id) == v1
        assert await index.delete_version(b, "k", v1.s3_version_id) is None
        assert await index.get_object(b, "k") is None
        assert (await index.list_versions(b)).versions == []
        await index.delete_bucket(b)

    async def test_delete_a_noncurrent_version_under_a_marker(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1 = version(b, "k")
        await index.put_object(v1)
        marker = version(b, "k", marker=True)
        await index.put_object(marker)
        assert await index.delete_version(b, "k", v1.s3_version_id) == v1
        assert await index.get_object(b, "k") is None  # the marker is still the latest
        assert ids((await index.list_versions(b)).versions) == [("k", marker.s3_version_id, True, True)]

    async def test_null_version_is_replaced(self, index: Index) -> None:
        b = await new_bucket(index, "v")
        old = version(b, "k", versioned=False)
        await index.put_object(old)  # before versioning: the null version
        await index.set_versioning(b, "Enabled")
        v1 = version(b, "k")
        assert await index.put_object(v1) is None
        assert await index.get_version(b, "k", "null") == old
        await index.set_versioning(b, "Suspended")
        new_null = version(b, "k", versioned=False)
        assert await index.put_object(new_null) == old  # the noncurrent null version is replaced
        newer_null = version(b, "k", versioned=False)
        assert await index.put_object(newer_null) == new_null  # so is a current one
        assert await index.get_version(b, "k", "null") == newer_null
        page = await index.list_versions(b)
        assert ids(page.versions) == [("k", "", False, True), ("k", v1.s3_version_id, False, False)]
        null_marker = version(b, "k", versioned=False, marker=True)
        assert await index.put_object(null_marker) == newer_null
        assert await index.latest_version(b, "k") == null_marker
        assert await index.delete_version(b, "k", "null") == null_marker
        assert await index.get_object(b, "k") == v1

    async def test_small_versions_keep_their_bytes(self, index: Index) -> None:
        """Inline parts (a small object's bytes in its manifest) through every move of a version: overwritten,
        retagged while noncurrent, hidden by a marker, promoted, replaced as the null version, deleted."""
        b = await versioned_bucket(index)

        def small(*chunks: bytes, versioned: bool = True) -> ObjectManifest:
            man = version(b, "k", versioned)
            man.parts = [
                dataclasses.replace(make_part(n, size=len(c)), placement=[], inline=c) for n, c in enumerate(chunks)
            ]
            man.size = sum(len(c) for c in chunks)
            return man

        v1, v2 = small(b"one" * 100), small(b"two-a" * 20, b"", b"two-c" * 7)
        v2.parts.insert(1, make_part(5))  # a coded part between inline ones: its bytes are on drives
        await index.put_object(v1)
        await index.put_object(v2)
        assert await index.get_object(b, "k") == v2
        assert await index.get_version(b, "k", v1.s3_version_id) == v1
        assert await index.set_object_tags(b, "k", v1.version_id, {"t": "1"})
        v1.tags = {"t": "1"}
        assert await index.get_version(b, "k", v1.s3_version_id) == v1
        marker = version(b, "k", marker=True)
        await index.put_object(marker)
        assert await index.latest_version(b, "k") == marker
        await index.delete_version(b, "k", marker.s3_version_id)
        assert await index.latest_version(b, "k") == v2
        await index.delete_version(b, "k", v2.s3_version_id)
        assert await index.get_object(b, "k") == v1  # promoted with its bytes and tags
        await index.set_versioning(b, "Suspended")
        n1, n2 = small(b"null one", versioned=False), small(b"null two", versioned=False)
        await index.put_object(n1)
        await index.put_object(n2)  # replaces n1
        assert await index.get_version(b, "k", "null") == n2
        assert await index.get_version(b, "k", v1.s3_version_id) == v1
        for v in (n2, v1):
            await index.delete_version(b, "k", v.s3_version_id or "null")
        assert (await index.list_versions(b)).versions == []
        await index.delete_bucket(b)

    async def test_conditions_apply_to_the_current_version(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1 = version(b, "k")
        await index.put_object(v1, Condition(if_none_match_star=True))
        with pytest.raises(PreconditionFailed):
            await index.put_object(version(b, "k"), Condition(if_none_match_star=True))
        v2 = version(b, "k")
        await index.put_object(v2, Condition(if_match=v1.etag))
        assert [e.manifest for e in (await index.list_versions(b)).versions] == [v2, v1]

    async def test_bucket_with_versions_is_not_empty(self, index: Index) -> None:
        b = await versioned_bucket(index)
        await index.put_object(version(b, "k", marker=True))
        with pytest.raises(BucketNotEmpty):
            await index.delete_bucket(b)

    async def test_list_versions_markers_and_prefixes(self, index: Index) -> None:
        b = await versioned_bucket(index)
        expected = []
        for key in ["a", "d/1", "d/2", "z"]:
            vs = [version(b, key) for _ in range(3)]
            for v in vs:
                await index.put_object(v)
            expected += [(key, v.s3_version_id) for v in reversed(vs)]
        # Walk one entry at a time, then two, with the markers the pages hand back.
        for limit in (1, 2, 5):
            got: list[tuple[str, str]] = []
            km = vm = ""
            while True:
                page = await index.list_versions(b, key_marker=km, version_id_marker=vm, max_keys=limit)
                assert len(page.versions) <= limit
                got += [(e.manifest.key, e.manifest.s3_version_id) for e in page.versions]
                if not page.truncated:
                    break
                km, vm = page.next_key_marker, page.next_version_id_marker
            assert got == expected
        page = await index.list_versions(b, delimiter="/")
        assert page.prefixes == ["d/"]
        assert [e.manifest.key for e in page.versions] == ["a"] * 3 + ["z"] * 3
        page = await index.list_versions(b, prefix="d/", key_marker="d/1")
        assert [e.manifest.key for e in page.versions] == ["d/2"] * 3
        assert page.versions[0].latest and not page.versions[1].latest

    async def test_list_versions_of_long_keys(self, index: Index) -> None:
        b = await versioned_bucket(index)
        base = "x" * 600
        keys = sorted(base + c for c in "bca")
        for key in keys:
            for _ in range(2):
                await index.put_object(version(b, key))
        page = await index.list_versions(b)
        assert [e.manifest.key for e in page.versions] == [k for k in keys for _ in range(2)]
        assert [e.latest for e in page.versions] == [True, False] * 3
        first = page.versions[1].manifest
        assert await index.get_version(b, first.key, first.s3_version_id) == first

    async def test_update_part_of_a_noncurrent_version(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1 = version(b, "k")
        await index.put_object(v1)
        await index.put_object(version(b, "k"))
        fixed = dataclasses.replace(v1.parts[0], placement=[f"new-{i}" for i in range(6)])
        assert await index.update_part(b, "k", v1.version_id, fixed)
        got = await index.get_version(b, "k", v1.s3_version_id)
        assert got is not None and got.parts[0].placement == fixed.placement
        stranger = make_part(0)
        assert not await index.update_part(b, "k", v1.version_id, stranger)

    async def test_list_versions_mixes_null_and_versioned_keys(self, index: Index) -> None:
        b = await new_bucket(index, "v")
        keys = random.Random(7).sample([f"k{i:02d}" for i in range(30)], 10)
        for key in keys:
            await index.put_object(version(b, key, versioned=False))
        await index.set_versioning(b, "Enabled")
        for key in keys[:5]:
            await index.put_object(version(b, key))
        page = await index.list_versions(b, max_keys=1000)
        seen = [(e.manifest.key, e.latest) for e in page.versions]
        assert [k for k, _ in seen] == sorted(keys[:5] * 2 + keys[5:])
        assert sum(latest for _, latest in seen) == 10

    async def test_list_objects_shows_each_keys_current_version_only(self, index: Index) -> None:
        """One entry per key, its current version; a key whose latest version is a delete marker is left out;
        a key with many versions (more than listing.SKIP_AFTER) in the middle of a page changes nothing."""
        b = await new_bucket(index, "v")
        before = version(b, "b", versioned=False)  # the null version, from before versioning
        await index.put_object(before)
        await index.set_versioning(b, "Enabled")
        many = [version(b, "a") for _ in range(40)]
        for man in many:
            await index.put_object(man)
        await index.delete_version(b, "a", many[-1].s3_version_id)
        b2, c, d1, d2, e = (version(b, k) for k in ("b", "c", "d/1", "d/2", "e"))
        for man in (b2, c, d1, d2, e):
            await index.put_object(man)
        await index.put_object(version(b, "c", marker=True))
        expected = [("a", many[-2].version_id), ("b", b2.version_id), ("d/1", d1.version_id)]
        expected += [("d/2", d2.version_id), ("e", e.version_id)]
        assert [(m.key, m.version_id) for m in (await index.list_objects(b)).objects] == expected
        got, after = [], ""
        while True:
            page = await index.list_objects(b, start_after=after, max_keys=1)
            got += [m.key for m in page.objects]
            if not page.truncated:
                break
            after = page.next_marker
        assert got == [k for k, _ in expected]
        page = await index.list_objects(b, delimiter="/", max_keys=3)
        assert ([m.key for m in page.objects], page.prefixes, page.truncated) == (["a", "b"], ["d/"], True)
        page = await index.list_objects(b, delimiter="/", start_after=page.next_marker)
        assert ([m.key for m in page.objects], page.prefixes, page.truncated) == (["e"], [], False)
        await index.set_versioning(b, "Suspended")
        null = version(b, "c", versioned=False)  # newer than the marker: c is back, as its null version
        await index.put_object(null)
        assert [m.key for m in (await index.list_objects(b, prefix="c")).objects] == ["c"]
        assert await index.get_object(b, "c") == null

    async def test_a_write_stamped_before_the_current_one_stays_noncurrent(self, index: Index) -> None:
        """Racing writes: the one that took effect first but was stamped later stays current."""
        b = await versioned_bucket(index)
        early, late = version(b, "k"), version(b, "k")
        await index.put_object(late)
        assert await index.put_object(early) is None
        assert await index.get_object(b, "k") == late
        assert ids((await index.list_versions(b)).versions) == [
            ("k", late.s3_version_id, False, True),
            ("k", early.s3_version_id, False, False),
        ]
        await index.set_versioning(b, "Suspended")
        null_late, null_early = version(b, "n", versioned=False), version(b, "n", versioned=False)
        null_late.last_modified, null_early.last_modified = null_early.last_modified, null_late.last_modified
        await index.put_object(null_late)
        assert await index.put_object(null_early) == null_early  # the older null version loses outright
        assert await index.get_object(b, "n") == null_late
