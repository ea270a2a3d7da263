"""The contract every Index implementation passes (metadata/index.py).

Subclass IndexContract in a test module and provide an async fixture `index` yielding an open
Index with no buckets (closing it afterwards). The tests only use the seam, so the LMDB store and
the replicated index run them unchanged. Each test uses its own bucket names, so an index that is
not fresh only weakens test_list_buckets_sorted.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metadata.index import (
    BucketAlreadyExists,
    BucketNotEmpty,
    Index,
    NoSuchBucket,
    ObjectPage,
    PreconditionFailed,
)
from metadata.records import (
    BucketRecord,
    Condition,
    ObjectManifest,
)
from tests.index_contract_cluster import ClusterContract
from tests.index_contract_lifecycle import LifecycleContract
from tests.index_contract_tags import TagsContract
from tests.index_contract_uploads import UploadsContract
from tests.index_records import (
    LONG_HEAD,
    ODD_KEYS,
    SHARED_SUITE,
    brute_items,
    key_strategy,
    make_manifest,
    make_part,
    make_upload,
    new_bucket,
    new_bucket_name,
    new_id,
    prefix_strategy,
    put_keys,
    utf8_sorted,
    walk_objects,
)


class IndexContract(TagsContract, LifecycleContract, UploadsContract, ClusterContract):
    """Buckets, objects and listings here; the rest in the mixins."""

    # ---- buckets

    async def test_create_and_get_bucket(self, index: Index) -> None:
        name = new_bucket_name()
        rec = BucketRecord(name=name, owner="AKIAOWNER", created=1_700_000_000.125, region="eu-west-1")
        await index.create_bucket(rec)
        assert await index.get_bucket(name) == rec
        assert await index.get_bucket(new_bucket_name()) is None

    async def test_create_existing_bucket_reports_owner(self, index: Index) -> None:
        name = new_bucket_name()
        rec = BucketRecord(name=name, owner="AKIAFIRST", created=1.0)
        await index.create_bucket(rec)
        with pytest.raises(BucketAlreadyExists) as exc:
            await index.create_bucket(BucketRecord(name=name, owner="AKIASECOND", created=2.0))
        assert exc.value.owner == "AKIAFIRST"
        assert await index.get_bucket(name) == rec

    async def test_list_buckets_sorted(self, index: Index) -> None:
        tag = new_id()[:6]
        names = [f"{tag}-b", f"{tag}-a.b", f"{tag}-a", f"{tag}-a-1", f"{tag}0", f"{tag}-c9"]
        for n in names:
            await index.create_bucket(BucketRecord(name=n, owner="o", created=1.0))
        listed = [b.name for b in await index.list_buckets()]
        assert listed == sorted(listed)
        assert [n for n in listed if n.startswith(tag)] == sorted(names)

    async def test_delete_empty_bucket(self, index: Index) -> None:
        name = await new_bucket(index)
        assert await index.delete_bucket(name) == []
        assert await index.get_bucket(name) is None
        assert name not in [b.name for b in await index.list_buckets()]
        await index.create_bucket(BucketRecord(name=name, owner="AKIANEW", created=2.0))  # name is free again

    async def test_update_bucket_sets_and_resets_configuration(self, index: Index) -> None:
        name = await new_bucket(index)
        before = await index.get_bucket(name)
        assert before is not None and before.policy is None
        rec = await index.update_bucket(name, {"policy": '{"Statement": []}', "acl": "public-read"})
        assert (rec.policy, rec.acl, rec.owner, rec.created) == (
            '{"Statement": []}',
            "public-read",
            before.owner,
            before.created,
        )
        assert await index.get_bucket(name) == rec
        rec = await index.update_bucket(name, {"policy": None})  # None: back to the default, the rest kept
        assert (rec.policy, rec.acl) == (None, "public-read")
        assert await index.get_bucket(name) == rec

    async def test_update_bucket_refuses_fixed_fields_and_missing_buckets(self, index: Index) -> None:
        name = await new_bucket(index)
        before = await index.get_bucket(name)
        for field in ("owner", "name", "no_such_field"):
            with pytest.raises(ValueError):
                await index.update_bucket(name, {field: "x"})
        assert await index.get_bucket(name) == before
        with pytest.raises(NoSuchBucket):
            await index.update_bucket(new_bucket_name(), {"acl": "private"})

    async def test_update_object_changes_the_acl_of_that_version_only(self, index: Index) -> None:
        name = await new_bucket(index)
        man = make_manifest(name, "k")
        await index.put_object(man)
        updated = await index.update_object(name, "k", man.version_id, {"acl": "public-read"})
        assert updated is not None and updated.acl == "public-read" and updated.parts == man.parts
        assert await index.get_object(name, "k") == updated
        assert await index.update_object(name, "k", new_id(), {"acl": "private"}) is None  # another version
        assert await index.update_object(name, "gone", man.version_id, {"acl": "private"}) is None
        with pytest.raises(ValueError):
            await index.update_object(name, "k", man.version_id, {"etag": "forged"})
        newer = make_manifest(name, "k")
        await index.put_object(newer)  # an overwrite after the update wins, with its own (default) ACL
        got = await index.get_object(name, "k")
        assert got is not None and (got.version_id, got.acl) == (newer.version_id, "")

    async def test_delete_missing_bucket(self, index: Index) -> None:
        with pytest.raises(NoSuchBucket):
            await index.delete_bucket(new_bucket_name())

    async def test_delete_bucket_not_empty(self, index: Index) -> None:
        name = await new_bucket(index)
        man = make_manifest(name, "k")
        await index.put_object(man)
        with pytest.raises(BucketNotEmpty):
            await index.delete_bucket(name)
        assert await index.get_bucket(name) is not None
        assert await index.get_object(name, "k") == man
        await index.delete_object(name, "k")
        await index.delete_bucket(name)
        assert await index.get_bucket(name) is None

    async def test_delete_bucket_not_empty_with_only_long_key(self, index: Index) -> None:
        name = await new_bucket(index)
        await index.put_object(make_manifest(name, "k" * 1024))
        with pytest.raises(BucketNotEmpty):
            await index.delete_bucket(name)

    async def test_delete_bucket_with_uploads_in_progress_is_refused(self, index: Index) -> None:
        name = await new_bucket(index)
        u1, u2 = make_upload(name, "a"), make_upload(name, "b" * 1000)
        await index.create_upload(u1)
        await index.create_upload(u2)
        await index.put_part(u1.upload_id, make_part(1))
        with pytest.raises(BucketNotEmpty):
            await index.delete_bucket(name)
        assert await index.get_upload(u1.upload_id) == u1  # nothing was dropped
        await index.abort_upload(u1.upload_id)
        with pytest.raises(BucketNotEmpty):
            await index.delete_bucket(name)
        await index.abort_upload(u2.upload_id)
        assert await index.delete_bucket(name) == []

    async def test_buckets_sharing_a_name_prefix_are_separate(self, index: Index) -> None:
        tag = new_id()[:8]
        short, longer = f"iso-{tag}", f"iso-{tag}-x"
        for n in (short, longer):
            await index.create_bucket(BucketRecord(name=n, owner="o", created=1.0))
        await put_keys(index, longer, ["a", "x" * 1000])
        up = make_upload(longer, "u")
        await index.create_upload(up)
        assert (await index.list_objects(short)).objects == []
        assert (await index.list_uploads(short)).uploads == []
        assert await index.get_object(short, "a") is None
        assert await index.delete_bucket(short) == []  # the longer name's upload is not this bucket's
        assert await index.get_upload(up.upload_id) == up
        assert [m.key for m in (await index.list_objects(longer)).objects] == ["a", "x" * 1000]

    async def test_racing_creations_have_one_winner(self, index: Index) -> None:
        name = new_bucket_name()

        async def create(i: int) -> str:
            try:
                await index.create_bucket(BucketRecord(name=name, owner=f"AKIA{i}", created=float(i)))
                return f"AKIA{i}"
            except BucketAlreadyExists as exc:
                return "lost to " + exc.owner

        outcomes = await asyncio.gather(*(create(i) for i in range(5)))
        winners = [o for o in outcomes if not o.startswith("lost")]
        assert len(winners) == 1 and outcomes.count("lost to " + winners[0]) == 4, outcomes
        assert (await index.get_bucket(name)).owner == winners[0]  # type: ignore[union-attr]

    # ---- objects

    async def test_racing_if_none_match_puts_have_one_winner(self, index: Index) -> None:
        name = await new_bucket(index)
        mans = [make_manifest(name, "k") for _ in range(5)]

        async def put(man: ObjectManifest) -> bool:
            try:
                await index.put_object(man, Condition(if_none_match_star=True))
                return True
            except PreconditionFailed:
                return False

        won = await asyncio.gather(*(put(m) for m in mans))
        assert sum(won) == 1
        assert await index.get_object(name, "k") == mans[won.index(True)]

    async def test_put_get_round_trip(self, index: Index) -> None:
        name = await new_bucket(index)
        man = make_manifest(name, "dir/file.txt", parts=[make_part(1), make_part(2, size=7)], etag="abc-2")
        assert await index.put_object(man) is None
        assert await index.get_object(name, "dir/file.txt") == man
        assert await index.get_object(name, "dir/file.tx") is None
        assert await index.get_object(new_bucket_name(), "dir/file.txt") is None

    async def test_put_replaces_and_returns_previous(self, index: Index) -> None:
        name = await new_bucket(index)
        first, second = make_manifest(name, "k"), make_manifest(name, "k")
        assert await index.put_object(first) is None
        assert await index.put_object(second) == first
        assert await index.get_object(name, "k") == second
        assert [m.version_id for m in (await index.list_objects(name)).objects] == [second.version_id]

    async def test_put_no_such_bucket(self, index: Index) -> None:
        name = new_bucket_name()
        with pytest.raises(NoSuchBucket):
            await index.put_object(make_manifest(name, "k"))
        assert await index.get_bucket(name) is None

    async def test_delete_object(self, index: Index) -> None:
        name = await new_bucket(index)
        man = make_manifest(name, "k")
        await index.put_object(man)
        assert await index.delete_object(name, "k") == man
        assert await index.get_object(name, "k") is None
        assert await index.delete_object(name, "k") is None
        assert (await index.list_objects(name)).objects == []
        with pytest.raises(NoSuchBucket):
            await index.delete_object(new_bucket_name(), "k")

    async def test_if_none_match_star(self, index: Index) -> None:
        name = await new_bucket(index)
        first = make_manifest(name, "k")
        assert await index.put_object(first, Condition(if_none_match_star=True)) is None
        with pytest.raises(PreconditionFailed):
            await index.put_object(make_manifest(name, "k"), Condition(if_none_match_star=True))
        assert await index.get_object(name, "k") == first

    async def test_if_match(self, index: Index) -> None:
        name = await new_bucket(index)
        first = make_manifest(name, "k", etag="e1")
        await index.put_object(first)
        with pytest.raises(PreconditionFailed):
            await index.put_object(make_manifest(name, "k", etag="e2"), Condition(if_match="nope"))
        assert await index.get_object(name, "k") == first
        second = make_manifest(name, "k", etag="e2")
        assert await index.put_object(second, Condition(if_match="e1")) == first
        assert await index.get_object(name, "k") == second

    async def test_if_match_on_missing_key_fails(self, index: Index) -> None:
        name = await new_bucket(index)
        with pytest.raises(PreconditionFailed):
            await index.put_object(make_manifest(name, "k"), Condition(if_match="e1"))
        assert await index.get_object(name, "k") is None
        assert (await index.list_objects(name)).objects == []

    async def test_conditions_on_long_keys(self, index: Index) -> None:
        name = await new_bucket(index)
        key = "é" * 512
        first = make_manifest(name, key, etag="e1")
        await index.put_object(first, Condition(if_none_match_star=True))
        with pytest.raises(PreconditionFailed):
            await index.put_object(make_manifest(name, key), Condition(if_none_match_star=True))
        assert await index.put_object(make_manifest(name, key), Condition(if_match="e1")) == first

    # ---- listing

    async def test_list_no_such_bucket(self, index: Index) -> None:
        with pytest.raises(NoSuchBucket):
            await index.list_objects(new_bucket_name())

    async def test_list_all_in_order(self, index: Index) -> None:
        name = await new_bucket(index)
        keys = ["b", "a/1", "a", "ab", "a/2/x", "c"]
        await put_keys(index, name, keys)
        page = await index.list_objects(name)
        assert [m.key for m in page.objects] == ["a", "a/1", "a/2/x", "ab", "b", "c"]
        assert page.prefixes == [] and not page.truncated and page.next_marker == ""
        assert all(m.bucket == name for m in page.objects)

    async def test_list_prefix(self, index: Index) -> None:
        name = await new_bucket(index)
        await put_keys(index, name, ["photos/2024/a.jpg", "photos/2025/b.jpg", "photosx", "photo", "zzz"])
        page = await index.list_objects(name, prefix="photos/")
        assert [m.key for m in page.objects] == ["photos/2024/a.jpg", "photos/2025/b.jpg"]
        assert (await index.list_objects(name, prefix="nothing")).objects == []
        page = await index.list_objects(name, prefix="photo")
        assert [m.key for m in page.objects] == ["photo", "photos/2024/a.jpg", "photos/2025/b.jpg", "photosx"]

    async def test_list_delimiter(self, index: Index) -> None:
        name = await new_bucket(index)
        keys = ["a.txt", "dir/", "dir/x", "dir/sub/y", "dir2/z", "e/", "f/g/h", "zz"]
        await put_keys(index, name, keys)
        page = await index.list_objects(name, delimiter="/")
        assert [m.key for m in page.objects] == ["a.txt", "zz"]
        assert page.prefixes == ["dir/", "dir2/", "e/", "f/"]
        page = await index.list_objects(name, prefix="dir/", delimiter="/")
        assert [m.key for m in page.objects] == ["dir/", "dir/x"]
        assert page.prefixes == ["dir/sub/"]
        page = await index.list_objects(name, prefix="d", delimiter="/")
        assert page.objects == [] and page.prefixes == ["dir/", "dir2/"]
        page = await index.list_objects(name, delimiter="ir")  # multi-character delimiter
        assert page.prefixes == ["dir"] and [m.key for m in page.objects] == ["a.txt", "e/", "f/g/h", "zz"]

    async def test_start_after_key(self, index: Index) -> None:
        name = await new_bucket(index)
        await put_keys(index, name, ["a", "b", "c", "d/1", "d/2"])
        page = await index.list_objects(name, start_after="b")
        assert [m.key for m in page.objects] == ["c", "d/1", "d/2"]
        page = await index.list_objects(name, start_after="bb")  # need not exist
        assert [m.key for m in page.objects] == ["c", "d/1", "d/2"]
        page = await index.list_objects(name, start_after="d/1", delimiter="/")
        assert page.objects == [] and page.prefixes == ["d/"]  # keys after d/1 still roll up
        assert (await index.list_objects(name, start_after="zzz")).objects == []
        page = await index.list_objects(name, prefix="d/", start_after="a")  # before the prefix
        assert [m.key for m in page.objects] == ["d/1", "d/2"]

    async def test_start_after_common_prefix_skips_it(self, index: Index) -> None:
        name = await new_bucket(index)
        await put_keys(index, name, ["a", "b/", "b/1", "b/2/3", "b0", "c/x", "d"])
        page = await index.list_objects(name, delimiter="/", max_keys=2)
        assert [m.key for m in page.objects] == ["a"] and page.prefixes == ["b/"]
        assert page.truncated and page.next_marker == "b/"
        page = await index.list_objects(name, start_after="b/", delimiter="/")
        assert [m.key for m in page.objects] == ["b0", "d"] and page.prefixes == ["c/"]
        assert not page.truncated

    async def test_max_keys_zero(self, index: Index) -> None:
        name = await new_bucket(index)
        await put_keys(index, name, ["a", "b/c"])
        for delimiter in ("", "/"):
            page = await index.list_objects(name, delimiter=delimiter, max_keys=0)
            assert page == ObjectPage()

    async def test_pagination_walks_whole_bucket(self, index: Index) -> None:
        name = await new_bucket(index)
        keys = [f"{d}/{i:02d}" for d in ("x", "y") for i in range(5)] + [f"k{i:02d}" for i in range(12)] + ["y/"]
        await put_keys(index, name, keys)
        for delimiter in ("", "/"):
            expected = brute_items(keys, delimiter=delimiter)
            for n in (1, 2, 3, 7, len(keys), 1000):
                assert await walk_objects(index, name, [n], delimiter=delimiter) == expected
        page = await index.list_objects(name, max_keys=len(keys))
        assert len(page.objects) == len(keys) and not page.truncated  # exactly full is not truncated

    async def test_odd_characters(self, index: Index) -> None:
        name = await new_bucket(index)
        await put_keys(index, name, ODD_KEYS)
        for key in ODD_KEYS:
            got = await index.get_object(name, key)
            assert got is not None and got.key == key
        page = await index.list_objects(name)
        assert [m.key for m in page.objects] == utf8_sorted(ODD_KEYS)  # not Python's str order
        assert await walk_objects(index, name, [2, 5], delimiter="/") == brute_items(ODD_KEYS, delimiter="/")
        page = await index.list_objects(name, prefix="ünïcödé/", delimiter="/")
        assert page.prefixes == ["ünïcödé/ключ/"]
        page = await index.list_objects(name, delimiter="😀")
        assert page.prefixes == ["emoji/😀"]
        page = await index.list_objects(name, delimiter="%")
        assert page.prefixes == ["percent%"]

    async def test_1024_byte_keys(self, index: Index) -> None:
        name = await new_bucket(index)
        keys = ["a" * 1024, "b" * 1023 + "c", "😀" * 256, "é" * 512, "a" * 1023]
        assert all(len(k.encode()) in (1023, 1024) for k in keys)
        mans = {k: make_manifest(name, k) for k in keys}
        for man in mans.values():
            await index.put_object(man)
        for k, man in mans.items():
            assert await index.get_object(name, k) == man
        assert await index.get_object(name, "a" * 1022) is None
        assert [m.key for m in (await index.list_objects(name)).objects] == utf8_sorted(keys)
        assert await index.delete_object(name, "a" * 1024) == mans["a" * 1024]
        assert await index.get_object(name, "a" * 1023) == mans["a" * 1023]
        assert [m.key for m in (await index.list_objects(name)).objects] == utf8_sorted(keys[1:])

    async def test_long_keys_sharing_a_long_prefix(self, index: Index) -> None:
        name = await new_bucket(index)
        head = "p" * 480
        keys = [head + s for s in ("", "a", "b", "/x", "/y", "é", "😀", "0", "a/1", "a/2", "~", "\u00ff", "zz")]
        keys += [head + f"{i:03d}" for i in range(0, 40, 3)]
        # keys whose UTF-8 lengths straddle every possible hashing threshold, around the shared prefix
        keys += ["p" * n for n in range(440, 480)] + ["p" * n + "q" for n in range(440, 520, 7)]
        keys += ["q", "o" * 600]
        await put_keys(index, name, keys[::-1])
        assert [m.key for m in (await index.list_objects(name)).objects] == utf8_sorted(keys)
        for n in (1, 3, 10):
            assert await walk_objects(index, name, [n]) == brute_items(keys)
            assert await walk_objects(index, name, [n], delimiter="/") == brute_items(keys, delimiter="/")
            for start in (head, head + "a", head + "a/1", head + "a/", "p" * 470, "p" * 466):
                got = await walk_objects(index, name, [n], start_after=start, delimiter="/")
                assert got == brute_items(keys, start_after=start, delimiter="/")
        page = await index.list_objects(name, prefix=head + "a", delimiter="/")
        assert [m.key for m in page.objects] == [head + "a"] and page.prefixes == [head + "a/"]
        page = await index.list_objects(name, prefix=head, delimiter="/", start_after=head + "/")
        assert [m.key for m in page.objects][:2] == [head + "0", head + "000"]
        assert page.prefixes == [head + "a/"]

    async def test_keys_in_other_buckets_never_leak(self, index: Index) -> None:
        b1, b2 = await new_bucket(index, "one"), await new_bucket(index, "two")
        k1 = ["shared", "only1", "x" * 1000, "dir/a"]
        k2 = ["shared", "only2", "x" * 999 + "y", "dir/b", "\x7f"]
        await put_keys(index, b1, k1)
        await put_keys(index, b2, k2)
        assert [m.key for m in (await index.list_objects(b1)).objects] == utf8_sorted(k1)
        assert all(m.bucket == b1 for m in (await index.list_objects(b1)).objects)
        assert [m.key for m in (await index.list_objects(b2, start_after="shared")).objects] == [
            "x" * 999 + "y",
            "\x7f",
        ]
        assert (await index.list_objects(b1, delimiter="/")).prefixes == ["dir/"]
        assert await walk_objects(index, b2, [1]) == brute_items(k2)
        assert await index.get_object(b1, "only2") is None

    async def test_listing_is_consistent_with_writes(self, index: Index) -> None:
        name = await new_bucket(index)
        await put_keys(index, name, ["a", "b"])
        await index.delete_object(name, "a")
        await put_keys(index, name, ["c"])
        assert [m.key for m in (await index.list_objects(name)).objects] == ["b", "c"]

    @settings(max_examples=40, deadline=None, suppress_health_check=SHARED_SUITE)
    @given(data=st.data())
    async def test_listing_matches_brute_force(self, index: Index, data: st.DataObject) -> None:
        keys = data.draw(st.lists(key_strategy(), min_size=0, max_size=25, unique=True), label="keys")
        name = await new_bucket(index, "h")  # a fresh bucket per example: the fixture is shared
        await put_keys(index, name, keys)
        prefix = data.draw(prefix_strategy(keys), label="prefix")
        delimiter = data.draw(st.sampled_from(["", "/", "a", "é", "😀", "/b", LONG_HEAD[:3]]), label="delimiter")
        start = data.draw(
            st.one_of(
                st.just(""),
                prefix_strategy(keys),
                st.sampled_from([i.name for i in brute_items(keys, delimiter=delimiter)] or [""]),
            ),
            label="start_after",
        )
        sizes = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4), label="page sizes")
        expected = brute_items(keys, prefix, start, delimiter)
        assert await walk_objects(index, name, sizes, prefix, start, delimiter) == expected
