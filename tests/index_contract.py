"""The contract every Index implementation passes (metadata/index.py).

Subclass IndexContract in a test module and provide an async fixture `index` yielding an open
Index with no buckets (closing it afterwards). The tests only use the seam, so the LMDB store and
the replicated index run them unchanged. Each test uses its own bucket names, so an index that is
not fresh only weakens test_list_buckets_sorted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadata.index import (
    BucketAlreadyExists,
    BucketNotEmpty,
    DriveClaimed,
    Index,
    NoSuchBucket,
    NoSuchUpload,
    ObjectPage,
    PreconditionFailed,
    UploadPage,
)
from metadata.records import (
    BucketRecord,
    Condition,
    DriveRecord,
    NodeRecord,
    ObjectManifest,
    PartRecord,
    UploadRecord,
)

# -- records


def new_id() -> str:
    return uuid.uuid4().hex


def new_bucket_name(tag: str = "b") -> str:
    return f"{tag}-{new_id()[:8]}"  # fixed length: the long-key tests rely on it


def make_part(number: int = 1, data_id: str | None = None, size: int = 5 << 20) -> PartRecord:
    return PartRecord(
        number=number,
        data_id=data_id or new_id(),
        size=size,
        etag=new_id(),
        placement=[f"drive-{i}" for i in range(6)],
        k=4,
        m=2,
        segment_size=1 << 20,
        last_modified=1_700_000_000.25,
        checksums={"CRC32": "AAAAAA=="},
    )


def make_manifest(bucket: str, key: str, parts: list[PartRecord] | None = None, etag: str = "") -> ObjectManifest:
    parts = parts if parts is not None else [make_part(0)]
    return ObjectManifest(
        bucket=bucket,
        key=key,
        version_id=new_id(),
        size=sum(p.size for p in parts),
        etag=etag or new_id(),
        last_modified=1_700_000_000.5,
        owner="AKIAOWNER",
        parts=parts,
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Content-Encoding": "gzip"},
        user_meta={"colour": "blue", "ünïcode": "välue"},
        checksums={"CRC32C": "yZRlqg=="},
        checksum_type="FULL_OBJECT",
    )


def make_upload(bucket: str, key: str, initiated: float = 1_700_000_000.0, upload_id: str = "") -> UploadRecord:
    return UploadRecord(
        bucket=bucket,
        key=key,
        upload_id=upload_id or new_id(),
        initiated=initiated,
        owner="AKIAOWNER",
        content_type="video/mp4",
        headers={"Content-Disposition": "attachment"},
        user_meta={"a": "b"},
        checksum_algorithm="CRC32",
        checksum_type="COMPOSITE",
    )


def make_node(node_id: str, drive_ids: list[str], zone: str = "z1", port: int = 9100) -> NodeRecord:
    drives = [DriveRecord(d, capacity=4 << 40, free=(3 << 40) + i) for i, d in enumerate(drive_ids)]
    return NodeRecord(node_id, f"http://10.0.0.1:{port}", zone, drives, started=1_700_000_000.5, last_seen=0.0)


async def upsert_checked(index: Index, rec: NodeRecord) -> NodeRecord:
    """upsert_node, checking the record comes back as given but stamped with the index's clock."""
    before = time.time()
    stored = await index.upsert_node(rec)
    assert before <= stored.last_seen <= time.time()
    assert stored == dataclasses.replace(rec, last_seen=stored.last_seen)
    return stored


async def nodes_tagged(index: Index, tag: str) -> list[NodeRecord]:
    return [n for n in await index.list_nodes() if n.node_id.startswith(tag)]


async def new_bucket(index: Index, tag: str = "b") -> str:
    name = new_bucket_name(tag)
    await index.create_bucket(BucketRecord(name=name, owner="AKIAOWNER", created=1_700_000_000.0))
    return name


async def put_keys(index: Index, bucket: str, keys: list[str]) -> None:
    for key in keys:
        await index.put_object(make_manifest(bucket, key))


# -- brute-force listing over a Python list (the reference the index must agree with)


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=str.encode)


def _rollup(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter or not key.startswith(prefix):
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


@dataclass
class Item:
    name: str  # a key, or a common prefix
    is_prefix: bool
    upload_id: str = ""


def brute_items(keys: list[str], prefix: str = "", start_after: str = "", delimiter: str = "") -> list[Item]:
    """What list_objects returns over all pages, in order."""
    out: list[Item] = []
    for key in utf8_sorted(keys):
        if not key.startswith(prefix) or key.encode() <= start_after.encode():
            continue
        cp = _rollup(key, prefix, delimiter)
        if cp is None:
            out.append(Item(key, False))
        elif cp != start_after and not (out and out[-1] == Item(cp, True)):
            out.append(Item(cp, True))
    return out


def page_items(page: ObjectPage) -> list[Item]:
    items = [Item(m.key, False) for m in page.objects] + [Item(p, True) for p in page.prefixes]
    return sorted(items, key=lambda i: i.name.encode())


def brute_upload_items(uploads: list[UploadRecord], prefix: str = "", delimiter: str = "") -> list[Item]:
    out: list[Item] = []
    for u in sorted(uploads, key=lambda u: (u.key.encode(), u.initiated, u.upload_id)):
        if not u.key.startswith(prefix):
            continue
        cp = _rollup(u.key, prefix, delimiter)
        if cp is None:
            out.append(Item(u.key, False, u.upload_id))
        elif not (out and out[-1] == Item(cp, True)):
            out.append(Item(cp, True))
    return out


def upload_page_items(page: UploadPage) -> list[Item]:
    # Uploads and prefixes never share a key range, so ordering by name (stable) keeps upload order.
    items = [Item(u.key, False, u.upload_id) for u in page.uploads] + [Item(p, True) for p in page.prefixes]
    return sorted(items, key=lambda i: i.name.encode())


async def walk_objects(
    index: Index, bucket: str, sizes: list[int], prefix: str = "", start_after: str = "", delimiter: str = ""
) -> list[Item]:
    """Page through a whole listing, checking each page's size, truncation flag and marker."""
    got: list[Item] = []
    marker = start_after
    for n in itertools.cycle(sizes):
        page = await index.list_objects(bucket, prefix, marker, delimiter, n)
        items = page_items(page)
        assert len(items) <= n
        if not page.truncated:
            assert page.next_marker == ""
            return got + items
        assert len(items) == n
        assert page.next_marker == items[-1].name
        assert not got or items[0].name.encode() > got[-1].name.encode(), "the listing must advance"
        got += items
        marker = page.next_marker
    raise AssertionError("unreachable")


# -- the suite

KEY_ALPHABET = ["a", "b", "/", "é", "😀", " ", "%", "+", "\n", "~", "\u00ff", "\uffff"]
ODD_KEYS = [
    "plain",
    "with space",
    "tab\tand\nnewline\r",
    "percent%20encoded%2F",
    "plus+sign",
    "ünïcödé/ключ/键",
    "emoji/😀🎉",
    "\U0010fffd-last-plane",
    "\uffff-bmp-end",
    "\ue000-private-use",
    "quote'\"<&>",
    "back\\slash",
    "a//double//slash",
    "../dotdot/./x",
    "~tilde!*()[]{}",
    "#hash?query=1&b=2",
    " leading space",
    "trailing space ",
    "z" * 200,
]
# Each implementation's subclass runs the same @given methods (hypothesis: "differing executors"), by design;
# the index fixture is shared by a test's examples, which is why each example makes its own bucket.
SHARED_SUITE = [HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
LONG_HEAD = "L" * 455  # with a 10-character bucket name the composite key passes 470 bytes around here


class IndexContract:
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

    async def test_delete_bucket_drops_uploads_and_returns_their_parts(self, index: Index) -> None:
        name = await new_bucket(index)
        u1, u2 = make_upload(name, "a"), make_upload(name, "b" * 1000)
        await index.create_upload(u1)
        await index.create_upload(u2)
        parts = [make_part(1), make_part(2)]
        await index.put_part(u1.upload_id, parts[0])
        await index.put_part(u2.upload_id, parts[1])
        returned = await index.delete_bucket(name)
        assert sorted(p.data_id for p in returned) == sorted(p.data_id for p in parts)
        assert await index.get_upload(u1.upload_id) is None
        with pytest.raises(NoSuchUpload):
            await index.list_parts(u2.upload_id)
        await index.create_bucket(BucketRecord(name=name, owner="o", created=3.0))
        assert (await index.list_uploads(name)).uploads == []

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
        assert await index.delete_bucket(short) == []
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

    # ---- cluster membership (node ids carry a tag of the test's own: the index may be shared)

    async def test_register_and_list_nodes(self, index: Index) -> None:
        tag = new_id()[:8]
        recs = [make_node(f"{tag}-{n}", [f"{tag}-{n}-d{i}" for i in range(3)]) for n in ("b", "a", "c")]
        stored = [await upsert_checked(index, rec) for rec in recs]
        listed = await nodes_tagged(index, tag)
        assert listed == sorted(stored, key=lambda n: n.node_id)
        assert all(isinstance(d, DriveRecord) for n in listed for d in n.drives)
        assert (await index.list_nodes()) == sorted(await index.list_nodes(), key=lambda n: n.node_id)

    async def test_last_seen_is_the_index_clock(self, index: Index) -> None:
        tag = new_id()[:8]
        for claimed in (0.0, 1e12, -5.0):  # whatever the node says (its clock may be off)
            await upsert_checked(index, dataclasses.replace(make_node(tag, [f"{tag}-d"]), last_seen=claimed))

    async def test_heartbeat_replaces_the_record(self, index: Index) -> None:
        tag = new_id()[:8]
        first = await upsert_checked(index, make_node(tag, [f"{tag}-d1", f"{tag}-d2"]))
        beat = make_node(tag, [f"{tag}-d2", f"{tag}-d3"], zone="z2", port=9200)
        beat.drives[0].free = 12345
        second = await upsert_checked(index, beat)
        assert second.last_seen >= first.last_seen
        assert await nodes_tagged(index, tag) == [second]
        # the drive it dropped is free for another node; the ones it kept are not
        await upsert_checked(index, make_node(f"{tag}-other", [f"{tag}-d1"]))
        with pytest.raises(DriveClaimed):
            await index.upsert_node(make_node(f"{tag}-other", [f"{tag}-d1", f"{tag}-d3"]))

    async def test_node_without_drives(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(tag, []))
        assert [n.drives for n in await nodes_tagged(index, tag)] == [[]]

    async def test_drive_claimed_by_another_node_changes_nothing(self, index: Index) -> None:
        tag = new_id()[:8]
        owner = await upsert_checked(index, make_node(f"{tag}-a", [f"{tag}-a1", f"{tag}-a2"]))
        with pytest.raises(DriveClaimed) as exc:
            await index.upsert_node(make_node(f"{tag}-b", [f"{tag}-b1", f"{tag}-a2"]))
        assert (exc.value.drive_id, exc.value.node_id) == (f"{tag}-a2", f"{tag}-a")
        assert await nodes_tagged(index, tag) == [owner]  # b was not registered
        # b's own drive was not taken either: another node may claim it
        other = await upsert_checked(index, make_node(f"{tag}-c", [f"{tag}-b1"]))
        # a registered node's heartbeat that claims a foreign drive leaves its record as it was
        with pytest.raises(DriveClaimed):
            await index.upsert_node(make_node(f"{tag}-c", [f"{tag}-a1"], zone="elsewhere"))
        assert await nodes_tagged(index, tag) == [owner, other]

    async def test_a_node_may_not_list_a_drive_twice(self, index: Index) -> None:
        tag = new_id()[:8]
        with pytest.raises(ValueError):
            await index.upsert_node(make_node(tag, [f"{tag}-d", f"{tag}-d"]))
        assert await nodes_tagged(index, tag) == []

    async def test_remove_node_releases_its_drives(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(f"{tag}-a", [f"{tag}-d1", f"{tag}-d2"]))
        kept = await upsert_checked(index, make_node(f"{tag}-b", [f"{tag}-d3"]))
        assert await index.remove_node(f"{tag}-a") is True
        assert await nodes_tagged(index, tag) == [kept]
        assert await index.remove_node(f"{tag}-a") is False
        assert await index.remove_node(f"{tag}-never") is False
        moved = await upsert_checked(index, make_node(f"{tag}-c", [f"{tag}-d1", f"{tag}-d2"]))
        assert await nodes_tagged(index, tag) == [kept, moved]
        with pytest.raises(DriveClaimed):  # removing a did not release b's drive
            await index.upsert_node(make_node(f"{tag}-c", [f"{tag}-d3"]))


# -- helpers used by the suite


async def walk_uploads(index: Index, bucket: str, sizes: list[int], prefix: str, delimiter: str) -> list[Item]:
    got: list[Item] = []
    key_marker = upload_id_marker = ""
    for n in itertools.cycle(sizes):
        page = await index.list_uploads(bucket, prefix, key_marker, upload_id_marker, delimiter, n)
        items = upload_page_items(page)
        assert len(items) <= n
        got += items
        if not page.truncated:
            return got
        assert len(items) == n
        last = items[-1]
        assert (page.next_key_marker, page.next_upload_id_marker) == (last.name, last.upload_id)
        assert (last.name, last.upload_id) != (key_marker, upload_id_marker), "the listing must advance"
        assert len(got) < 100_000, "the listing must end"
        key_marker, upload_id_marker = page.next_key_marker, page.next_upload_id_marker
    raise AssertionError("unreachable")


def key_strategy() -> st.SearchStrategy[str]:
    """Short keys over a few characters (so prefixes and delimiters collide), some behind a long head."""
    tail = st.lists(st.sampled_from(KEY_ALPHABET), max_size=5).map("".join)
    head = st.sampled_from(
        ["", "", "", LONG_HEAD, LONG_HEAD + "LLLLLLLLLL", LONG_HEAD + "L" * 15, LONG_HEAD + "L" * 30]
    )
    return st.tuples(head, tail).map("".join).filter(bool)


def prefix_strategy(keys: list[str]) -> st.SearchStrategy[str]:
    if not keys:
        return st.just("")
    cut = st.tuples(st.sampled_from(keys), st.integers(0, 1100)).map(lambda t: t[0][: t[1]])
    return st.one_of(st.just(""), cut, st.sampled_from(["a", "/", "é", "zzz"]))
