"""The Index contract: multipart uploads and update_part (a repair recording a part's new placement)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metadata.index import (
    Index,
    NoSuchBucket,
    NoSuchUpload,
    PreconditionFailed,
    UploadPage,
)
from metadata.records import (
    Condition,
)
from tests.index_records import (
    SHARED_SUITE,
    brute_upload_items,
    key_strategy,
    make_manifest,
    make_part,
    make_upload,
    new_bucket,
    new_bucket_name,
    new_id,
    prefix_strategy,
    walk_uploads,
)


class UploadsContract:
    # ---- multipart uploads

    async def test_create_and_get_upload(self, index: Index) -> None:
        name = await new_bucket(index)
        up = make_upload(name, "big.bin")
        await index.create_upload(up)
        assert await index.get_upload(up.upload_id) == up
        assert await index.get_upload(new_id()) is None
        with pytest.raises(NoSuchBucket):
            await index.create_upload(make_upload(new_bucket_name(), "k"))

    async def test_put_part_replaces(self, index: Index) -> None:
        name = await new_bucket(index)
        up = make_upload(name, "k")
        await index.create_upload(up)
        p1, p1b = make_part(1), make_part(1)
        assert await index.put_part(up.upload_id, p1) is None
        assert await index.put_part(up.upload_id, p1b) == p1
        assert (await index.list_parts(up.upload_id)).parts == [p1b]
        with pytest.raises(NoSuchUpload):
            await index.put_part(new_id(), make_part(1))

    async def test_list_parts_pagination(self, index: Index) -> None:
        name = await new_bucket(index)
        up, other = make_upload(name, "k"), make_upload(name, "k")
        await index.create_upload(up)
        await index.create_upload(other)
        numbers = [10000, 3, 1, 2, 256, 255, 9999, 1000]
        parts = {n: make_part(n) for n in numbers}
        for n in numbers:
            await index.put_part(up.upload_id, parts[n])
        await index.put_part(other.upload_id, make_part(4))
        page = await index.list_parts(up.upload_id)
        assert page.parts == [parts[n] for n in sorted(numbers)] and not page.truncated and page.next_marker == 0
        got, marker = [], 0
        while True:
            page = await index.list_parts(up.upload_id, marker=marker, max_parts=3)
            got += page.parts
            if not page.truncated:
                break
            assert len(page.parts) == 3 and page.next_marker == page.parts[-1].number
            marker = page.next_marker
        assert [p.number for p in got] == sorted(numbers)
        page = await index.list_parts(up.upload_id, marker=255)
        assert [p.number for p in page.parts] == [256, 1000, 9999, 10000]
        page = await index.list_parts(up.upload_id, max_parts=len(numbers))
        assert len(page.parts) == len(numbers) and not page.truncated
        page = await index.list_parts(up.upload_id, max_parts=0)
        assert page.parts == [] and not page.truncated
        assert (await index.list_parts(up.upload_id, marker=10000)).parts == []
        with pytest.raises(NoSuchUpload):
            await index.list_parts(new_id())

    async def test_list_uploads_order_and_markers(self, index: Index) -> None:
        name = await new_bucket(index)
        ids = sorted(new_id() for _ in range(3))
        # Same key: ordered by initiated, then upload id (not by id alone).
        ups = [
            make_upload(name, "b", initiated=30.0, upload_id=ids[0]),
            make_upload(name, "b", initiated=10.0, upload_id=ids[2]),
            make_upload(name, "b", initiated=10.0, upload_id=ids[1]),
            make_upload(name, "a", initiated=50.0),
            make_upload(name, "c/1", initiated=1.0),
            make_upload(name, "c/2", initiated=1.0),
            make_upload(name, "d", initiated=1.0),
        ]
        for u in ups:
            await index.create_upload(u)
        order = [ups[3], ups[2], ups[1], ups[0], ups[4], ups[5], ups[6]]
        page = await index.list_uploads(name)
        assert page.uploads == order and not page.truncated
        page = await index.list_uploads(name, key_marker="b")  # keys > b only
        assert page.uploads == order[4:]
        page = await index.list_uploads(name, key_marker="b", upload_id_marker=ids[2])
        assert page.uploads == order[3:]
        page = await index.list_uploads(name, key_marker="b", upload_id_marker=ids[0])
        assert page.uploads == order[4:]
        page = await index.list_uploads(name, upload_id_marker=ids[2])  # ignored without a key marker
        assert page.uploads == order
        page = await index.list_uploads(name, max_uploads=2)
        assert page.uploads == order[:2] and page.truncated
        assert (page.next_key_marker, page.next_upload_id_marker) == ("b", ids[1])
        page = await index.list_uploads(name, delimiter="/")
        assert page.uploads == order[:4] + order[6:] and page.prefixes == ["c/"]
        page = await index.list_uploads(name, delimiter="/", max_uploads=5)
        assert page.prefixes == ["c/"] and page.truncated
        assert (page.next_key_marker, page.next_upload_id_marker) == ("c/", "")
        page = await index.list_uploads(name, delimiter="/", key_marker="c/")
        assert page.uploads == order[6:] and page.prefixes == []
        page = await index.list_uploads(name, prefix="c/")
        assert page.uploads == order[4:6]
        assert await index.list_uploads(name, max_uploads=0) == UploadPage()
        with pytest.raises(NoSuchBucket):
            await index.list_uploads(new_bucket_name())

    async def test_list_uploads_marker_upload_gone(self, index: Index) -> None:
        """If the upload named by upload_id_marker is gone, no upload of key_marker is skipped."""
        name = await new_bucket(index)
        ups = [make_upload(name, "k", initiated=float(i)) for i in range(3)] + [make_upload(name, "l")]
        for u in ups:
            await index.create_upload(u)
        page = await index.list_uploads(name, max_uploads=2)
        await index.abort_upload(page.next_upload_id_marker)
        page = await index.list_uploads(name, key_marker=page.next_key_marker, upload_id_marker=ups[1].upload_id)
        assert ups[2] in page.uploads and ups[3] in page.uploads

    async def test_list_uploads_walk(self, index: Index) -> None:
        name = await new_bucket(index)
        ups = [make_upload(name, k, initiated=float(i % 3)) for i, k in enumerate(["x/1", "x/2", "y", "y", "z" * 600])]
        ups += [make_upload(name, "z" * 600, initiated=0.5), make_upload(name, "z" * 599 + "\u00e9")]
        for u in ups:
            await index.create_upload(u)
        for delimiter in ("", "/"):
            for n in (1, 2, 3):
                assert await walk_uploads(index, name, [n], "", delimiter) == brute_upload_items(ups, "", delimiter)

    @settings(max_examples=25, deadline=None, suppress_health_check=SHARED_SUITE)
    @given(data=st.data())
    async def test_upload_listing_matches_brute_force(self, index: Index, data: st.DataObject) -> None:
        keys = data.draw(st.lists(key_strategy(), min_size=1, max_size=8, unique=True), label="keys")
        name = await new_bucket(index, "h")
        ups = []
        for key in data.draw(st.lists(st.sampled_from(keys), max_size=15), label="upload keys"):
            ups.append(make_upload(name, key, initiated=float(data.draw(st.integers(0, 2), label="initiated"))))
            await index.create_upload(ups[-1])
        prefix = data.draw(prefix_strategy(keys), label="prefix")
        delimiter = data.draw(st.sampled_from(["", "/", "a", "é"]), label="delimiter")
        sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3), label="page sizes")
        assert await walk_uploads(index, name, sizes, prefix, delimiter) == brute_upload_items(ups, prefix, delimiter)

    async def test_complete_upload(self, index: Index) -> None:
        name = await new_bucket(index)
        old = make_manifest(name, "k")
        await index.put_object(old)
        up = make_upload(name, "k")
        await index.create_upload(up)
        parts = {n: make_part(n) for n in (1, 2, 3)}
        for p in parts.values():
            await index.put_part(up.upload_id, p)
        man = make_manifest(name, "k", parts=[parts[1], parts[3]], etag="0" * 32 + "-2")
        done = await index.complete_upload(up.upload_id, man)
        assert done.previous == old
        assert done.unused == [parts[2]]
        assert await index.get_object(name, "k") == man
        assert await index.get_upload(up.upload_id) is None
        assert (await index.list_uploads(name)).uploads == []
        with pytest.raises(NoSuchUpload):
            await index.list_parts(up.upload_id)
        with pytest.raises(NoSuchUpload):
            await index.complete_upload(up.upload_id, man)

    async def test_complete_upload_without_previous(self, index: Index) -> None:
        name = await new_bucket(index)
        up = make_upload(name, "n" * 1024)
        await index.create_upload(up)
        part = make_part(1)
        await index.put_part(up.upload_id, part)
        man = make_manifest(name, up.key, parts=[part])
        done = await index.complete_upload(up.upload_id, man, Condition(if_none_match_star=True))
        assert done.previous is None and done.unused == []
        assert [m.key for m in (await index.list_objects(name)).objects] == [up.key]

    async def test_complete_upload_precondition_failed_changes_nothing(self, index: Index) -> None:
        name = await new_bucket(index)
        old = make_manifest(name, "k", etag="old")
        await index.put_object(old)
        up = make_upload(name, "k")
        await index.create_upload(up)
        part = make_part(1)
        await index.put_part(up.upload_id, part)
        man = make_manifest(name, "k", parts=[part])
        for cond in (Condition(if_none_match_star=True), Condition(if_match="other")):
            with pytest.raises(PreconditionFailed):
                await index.complete_upload(up.upload_id, man, cond)
            assert await index.get_object(name, "k") == old
            assert await index.get_upload(up.upload_id) == up
            assert (await index.list_parts(up.upload_id)).parts == [part]
            assert (await index.list_uploads(name)).uploads == [up]
        done = await index.complete_upload(up.upload_id, man, Condition(if_match="old"))
        assert done.previous == old

    async def test_complete_leaves_other_uploads_of_the_key(self, index: Index) -> None:
        name = await new_bucket(index)
        u1, u2 = make_upload(name, "k", initiated=1.0), make_upload(name, "k", initiated=2.0)
        await index.create_upload(u1)
        await index.create_upload(u2)
        p1, p2 = make_part(1), make_part(1)
        await index.put_part(u1.upload_id, p1)
        await index.put_part(u2.upload_id, p2)
        await index.complete_upload(u1.upload_id, make_manifest(name, "k", parts=[p1]))
        assert (await index.list_uploads(name)).uploads == [u2]
        assert (await index.list_parts(u2.upload_id)).parts == [p2]

    async def test_abort_upload(self, index: Index) -> None:
        name = await new_bucket(index)
        up = make_upload(name, "k")
        await index.create_upload(up)
        parts = [make_part(n) for n in (1, 2)]
        for p in parts:
            await index.put_part(up.upload_id, p)
        assert await index.abort_upload(up.upload_id) == parts
        assert await index.get_upload(up.upload_id) is None
        assert (await index.list_uploads(name)).uploads == []
        with pytest.raises(NoSuchUpload):
            await index.abort_upload(up.upload_id)
        with pytest.raises(NoSuchUpload):
            await index.put_part(up.upload_id, make_part(3))
        with pytest.raises(NoSuchUpload):
            await index.complete_upload(up.upload_id, make_manifest(name, "k"))
        assert await index.get_object(name, "k") is None
        await index.delete_bucket(name)  # nothing left behind

    # ---- update_part (a repair records a part's new placement)

    async def test_update_part_replaces_the_part(self, index: Index) -> None:
        name = await new_bucket(index)
        parts = [make_part(1), make_part(2), make_part(3)]
        parts[1].missed = [0, 4]
        man = make_manifest(name, "k", parts=parts, etag="e-3")
        await index.put_object(man)
        repaired = dataclasses.replace(
            parts[1], placement=[f"new-{i}" for i in range(6)], missed=[], checksums={"CRC32": "BBBBBB=="}
        )
        assert await index.update_part(name, "k", man.version_id, repaired) is True
        want = dataclasses.replace(man, parts=[parts[0], repaired, parts[2]])
        assert await index.get_object(name, "k") == want
        assert (await index.list_objects(name)).objects == [want]
        again = dataclasses.replace(repaired, placement=[f"again-{i}" for i in range(6)])
        assert await index.update_part(name, "k", man.version_id, again) is True  # repeatable
        assert (await index.get_object(name, "k")).parts[1] == again  # type: ignore[union-attr]

    async def test_update_part_of_a_single_put_on_a_long_key(self, index: Index) -> None:
        name = await new_bucket(index)
        key = "é" * 500
        man = make_manifest(name, key)  # part 0
        await index.put_object(man)
        repaired = dataclasses.replace(man.parts[0], placement=["x"] * 6, missed=[])
        assert await index.update_part(name, key, man.version_id, repaired) is True
        assert await index.get_object(name, key) == dataclasses.replace(man, parts=[repaired])

    async def test_update_part_keeps_inline_data_of_other_parts(self, index: Index) -> None:
        name = await new_bucket(index)
        small = dataclasses.replace(make_part(1, size=5), inline=b"hello", placement=[])
        big = make_part(2)
        big.missed = [5]
        man = make_manifest(name, "k", parts=[small, big])
        await index.put_object(man)
        repaired = dataclasses.replace(big, missed=[], placement=[f"r-{i}" for i in range(6)])
        assert await index.update_part(name, "k", man.version_id, repaired) is True
        got = await index.get_object(name, "k")
        assert got == dataclasses.replace(man, parts=[small, repaired])
        assert got.parts[0].inline == b"hello"  # type: ignore[union-attr]

    async def test_update_part_refuses_anything_but_the_current_version(self, index: Index) -> None:
        name = await new_bucket(index)
        parts = [make_part(1), make_part(2)]
        man = make_manifest(name, "k", parts=parts)
        await index.put_object(man)
        moved = dataclasses.replace(parts[0], placement=["moved"] * 6, missed=[])
        refused = [
            (name, "k", new_id(), moved),  # another version
            (name, "k", man.version_id, dataclasses.replace(moved, data_id=new_id())),  # the part has other data
            (name, "k", man.version_id, dataclasses.replace(moved, number=7)),  # no such part
            (name, "other", man.version_id, moved),  # no such key
            (new_bucket_name(), "k", man.version_id, moved),  # no such bucket
        ]
        for args in refused:
            assert await index.update_part(*args) is False, args
        assert await index.get_object(name, "k") == man

    async def test_update_part_after_an_overwrite_or_delete_changes_nothing(self, index: Index) -> None:
        name = await new_bucket(index)
        old = make_manifest(name, "k", parts=[make_part(1)])
        await index.put_object(old)
        new = make_manifest(name, "k", parts=[dataclasses.replace(old.parts[0])])  # even the same data id
        await index.put_object(new)
        repaired = dataclasses.replace(old.parts[0], placement=["r"] * 6)
        assert await index.update_part(name, "k", old.version_id, repaired) is False
        assert await index.get_object(name, "k") == new
        await index.delete_object(name, "k")
        assert await index.update_part(name, "k", new.version_id, repaired) is False
        assert await index.get_object(name, "k") is None
        assert (await index.list_objects(name)).objects == []
        await index.delete_bucket(name)
        assert await index.update_part(name, "k", new.version_id, repaired) is False
        assert await index.get_bucket(name) is None

    async def test_an_overwrite_after_update_part_wins(self, index: Index) -> None:
        name = await new_bucket(index)
        old = make_manifest(name, "k")
        await index.put_object(old)
        repaired = dataclasses.replace(old.parts[0], placement=["r"] * 6, missed=[])
        assert await index.update_part(name, "k", old.version_id, repaired) is True
        new = make_manifest(name, "k")
        previous = await index.put_object(new)
        assert previous == dataclasses.replace(old, parts=[repaired])
        assert await index.get_object(name, "k") == new
        # racing: whichever lands first, the overwrite is what remains
        for _ in range(5):
            current = await index.get_object(name, "k")
            assert current is not None
            newer = make_manifest(name, "k")
            fix = dataclasses.replace(current.parts[0], placement=["race"] * 6)
            await asyncio.gather(index.update_part(name, "k", current.version_id, fix), index.put_object(newer))
            assert await index.get_object(name, "k") == newer
