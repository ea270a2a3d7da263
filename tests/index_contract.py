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
    NoSuchNode,
    NoSuchUpload,
    ObjectPage,
    PreconditionFailed,
    UploadPage,
    UserExists,
)
from metadata.keys import repair_key
from metadata.records import (
    NODE_STATES,
    REPAIR_REASONS,
    BucketRecord,
    Condition,
    DriveRecord,
    NodeRecord,
    ObjectManifest,
    PartRecord,
    RepairEntry,
    UploadRecord,
    UserRecord,
)
from tests.index_contract_tags import TagsContract

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


def make_repair(surviving: int, data_id: str, part: int = 0, index: int = -1, **fields: object) -> RepairEntry:
    defaults: dict[str, object] = {
        "bucket": "bkt",
        "key": "dir/ключ 😀",
        "reason": "write",
        "drive_id": "drive-3",
        "queued": 1_700_000_000.75,
    }
    return RepairEntry(surviving, data_id, part, index, **(defaults | fields))  # type: ignore[arg-type]


def position(e: RepairEntry) -> bytes:
    return repair_key(e.surviving, e.data_id, e.part, e.index)


async def queued_of(index: Index, data_ids: set[str]) -> list[RepairEntry]:
    """The whole queue (walked in pages), restricted to entries of these data ids: the index may be shared."""
    got: list[RepairEntry] = []
    after: RepairEntry | None = None
    while True:
        page = await index.list_repairs(after, limit=500)
        got += page
        if len(page) < 500:
            return [e for e in got if e.data_id in data_ids]
        after = page[-1]


def make_user(name: str, created: float = 1_700_000_000.5) -> UserRecord:
    return UserRecord(
        name=name, access_key="AK" + new_id()[:18].upper(), secret_key=new_id() + new_id(), created=created
    )


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


class IndexContract(TagsContract):
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

    # ---- node state (operators set it; heartbeats keep it)

    async def test_set_node_state(self, index: Index) -> None:
        tag = new_id()[:8]
        registered = await upsert_checked(index, make_node(tag, [f"{tag}-d"]))
        assert registered.state == "active"
        for state in ("draining", "retired", "active", "draining"):
            rec = await index.set_node_state(tag, state)
            assert rec == dataclasses.replace(registered, state=state, last_seen=rec.last_seen)
            assert await nodes_tagged(index, tag) == [rec]

    async def test_heartbeats_keep_the_node_state(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(tag, [f"{tag}-d1"]))
        await index.set_node_state(tag, "draining")
        beat = make_node(tag, [f"{tag}-d1", f"{tag}-d2"], zone="z2")
        stored = await index.upsert_node(beat)  # says "active" (the default): the index keeps its own
        assert stored == dataclasses.replace(beat, state="draining", last_seen=stored.last_seen)
        assert await nodes_tagged(index, tag) == [stored]
        stored = await index.upsert_node(dataclasses.replace(beat, state="retired"))  # nor may a node set it
        assert stored.state == "draining"
        assert [n.state for n in await nodes_tagged(index, tag)] == ["draining"]

    async def test_a_new_node_is_active_whatever_it_says(self, index: Index) -> None:
        tag = new_id()[:8]
        stored = await index.upsert_node(dataclasses.replace(make_node(tag, []), state="retired"))
        assert stored.state == "active"
        assert [n.state for n in await nodes_tagged(index, tag)] == ["active"]

    async def test_remove_node_forgets_its_state(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(tag, [f"{tag}-d"]))
        await index.set_node_state(tag, "retired")
        assert await index.remove_node(tag) is True
        assert await nodes_tagged(index, tag) == []
        again = await upsert_checked(index, make_node(tag, [f"{tag}-d"]))
        assert again.state == "active"
        assert await nodes_tagged(index, tag) == [again]

    async def test_set_node_state_errors_change_nothing(self, index: Index) -> None:
        tag = new_id()[:8]
        with pytest.raises(NoSuchNode):
            await index.set_node_state(f"{tag}-never", "draining")
        assert await nodes_tagged(index, tag) == []  # not registered by the attempt
        await upsert_checked(index, make_node(tag, []))
        await index.set_node_state(tag, "draining")
        for bad in ("paused", "", "Active", "draining "):
            assert bad not in NODE_STATES
            with pytest.raises(ValueError):
                await index.set_node_state(tag, bad)
        assert [n.state for n in await nodes_tagged(index, tag)] == ["draining"]
        await index.remove_node(tag)
        with pytest.raises(NoSuchNode):
            await index.set_node_state(tag, "active")

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

    # ---- the repair queue (data ids are the test's own: the index may be shared)

    async def test_repair_queue_order(self, index: Index) -> None:
        ids = sorted(new_id() for _ in range(3))
        entries = [
            make_repair(s, d, part, i)
            for s in (0, 2, 5)
            for d in ids
            for part in (0, 2, 256, 10_000)
            for i in (-1, 0, 1, 5, 300)
        ]
        shuffled = entries[::7] + [e for j, e in enumerate(entries) if j % 7]
        await index.queue_repairs(shuffled[:50])
        await index.queue_repairs(shuffled[50:])
        want = sorted(entries, key=position)
        assert want[0] == make_repair(0, ids[0], 0, -1)  # fewest surviving, then one part's entries together
        assert await queued_of(index, set(ids)) == want

    async def test_repair_entries_round_trip(self, index: Index) -> None:
        d = new_id()
        entries = [
            make_repair(3, d, 1, j, bucket="b-1", key="ünï/😀 key", reason=reason, drive_id=f"drv-{j}", queued=j + 0.5)
            for j, reason in enumerate(REPAIR_REASONS)
        ]
        entries.append(RepairEntry(0, d, 0, -1))  # only the position: from a scrubber that knows no object
        await index.queue_repairs(entries)
        got = await queued_of(index, {d})
        assert got == sorted(entries, key=position)
        assert all(isinstance(e, RepairEntry) for e in got)

    async def test_repair_at_the_same_position_is_replaced(self, index: Index) -> None:
        d = new_id()
        before = await index.repair_backlog()
        first = make_repair(2, d, 1, 3, reason="write", drive_id="a")
        await index.queue_repairs([first, make_repair(2, d, 1, 4)])
        second = make_repair(2, d, 1, 3, reason="scrub", drive_id="b", bucket="", key="", queued=2.0)
        await index.queue_repairs([second])
        assert await queued_of(index, {d}) == [second, make_repair(2, d, 1, 4)]
        assert await index.repair_backlog() == before + 2
        # the same part and fragment with another survivor count is another position
        await index.queue_repairs([make_repair(1, d, 1, 3)])
        assert await queued_of(index, {d}) == [make_repair(1, d, 1, 3), second, make_repair(2, d, 1, 4)]
        await index.queue_repairs([])  # nothing to do
        assert await index.repair_backlog() == before + 3

    async def test_list_repairs_after_and_limit(self, index: Index) -> None:
        ids = [new_id() for _ in range(4)]
        entries = [
            make_repair(s, d, p, i) for s, d in zip((1, 1, 4, 4), ids, strict=True) for p in (1, 2) for i in (0, 1)
        ]
        await index.queue_repairs(entries)
        want = sorted(entries, key=position)
        whole = await index.list_repairs()
        assert [e for e in whole if e.data_id in ids] == want
        assert await index.list_repairs(limit=3) == whole[:3]
        assert await index.list_repairs(limit=1) == whole[:1]
        for j, e in enumerate(want):
            # `after` need not be queued (only its position counts), and its other fields do not matter
            tail = [
                x
                for x in await index.list_repairs(dataclasses.replace(e, reason="scan", key="zzz"))
                if x.data_id in ids
            ]
            assert tail == want[j + 1 :]
        between = dataclasses.replace(want[0], index=want[0].index + 100)  # a position that is not queued
        assert [x for x in await index.list_repairs(between) if x.data_id in ids] == [
            w for w in want if position(w) > position(between)
        ]
        # paging with a small limit, each page starting after the last one's end, walks the queue once
        walked: list[RepairEntry] = []
        after: RepairEntry | None = None
        while page := await index.list_repairs(after, limit=3):
            assert len(page) <= 3
            walked += page
            after = page[-1]
        assert walked == whole

    async def test_remove_repairs(self, index: Index) -> None:
        d = new_id()
        entries = [make_repair(2, d, 1, i) for i in range(6)]
        await index.queue_repairs(entries)
        before = await index.repair_backlog()
        absent = [make_repair(2, d, 1, 99), make_repair(3, d, 1, 0), make_repair(2, new_id(), 1, 0)]
        # removal is by position: the other fields need not match
        gone = [dataclasses.replace(entries[1], reason="scan", drive_id="x"), entries[4]]
        await index.remove_repairs(gone + absent)
        assert await queued_of(index, {d}) == [entries[0], entries[2], entries[3], entries[5]]
        assert await index.repair_backlog() == before - 2
        await index.remove_repairs(gone)  # again: nothing left to remove
        await index.remove_repairs([])
        assert await index.repair_backlog() == before - 2
        await index.remove_repairs(entries)
        assert await queued_of(index, {d}) == []
        assert await index.repair_backlog() == before - 6

    async def test_repair_backlog_counts_entries(self, index: Index) -> None:
        before = await index.repair_backlog()
        assert before >= 0
        d = new_id()
        await index.queue_repairs([make_repair(0, d, p, -1) for p in range(25)])
        assert await index.repair_backlog() == before + 25
        await index.queue_repairs([make_repair(0, d, p, -1) for p in range(20, 30)])
        assert await index.repair_backlog() == before + 30

    # ---- users (names carry a tag of the test's own: the index may be shared)

    async def test_create_and_list_users(self, index: Index) -> None:
        tag = new_id()[:8]
        users = [
            make_user(f"{tag}-{n}", created=float(j)) for j, n in enumerate(("carol", "alice", "bob", "Zed", "a.b"))
        ]
        for u in users:
            assert await index.create_user(u) is None
        listed = await index.list_users()
        assert [u.name for u in listed] == sorted(u.name for u in listed)
        assert [u for u in listed if u.name.startswith(tag)] == sorted(users, key=lambda u: u.name)
        assert all(isinstance(u, UserRecord) for u in listed)

    async def test_create_existing_user_keeps_the_original(self, index: Index) -> None:
        tag = new_id()[:8]
        original = make_user(f"{tag}-alice")
        await index.create_user(original)
        with pytest.raises(UserExists):
            await index.create_user(make_user(f"{tag}-alice", created=2.0))
        assert [u for u in await index.list_users() if u.name.startswith(tag)] == [original]

    async def test_racing_user_creations_have_one_winner(self, index: Index) -> None:
        name = f"{new_id()[:8]}-race"
        users = [make_user(name, created=float(i)) for i in range(5)]

        async def create(u: UserRecord) -> bool:
            try:
                await index.create_user(u)
                return True
            except UserExists:
                return False

        won = await asyncio.gather(*(create(u) for u in users))
        assert sum(won) == 1
        assert [u for u in await index.list_users() if u.name == name] == [users[won.index(True)]]

    async def test_update_user_policy(self, index: Index) -> None:
        user = make_user(f"{new_id()[:8]}-pol")
        await index.create_user(user)
        rec = await index.update_user(user.name, {"policy": '{"Statement": []}'})
        assert rec is not None and rec.policy == '{"Statement": []}' and rec.secret_key == user.secret_key
        assert [u for u in await index.list_users() if u.name == user.name] == [rec]
        with pytest.raises(ValueError):
            await index.update_user(user.name, {"secret_key": "stolen"})
        assert await index.update_user(f"{new_id()[:8]}-none", {"policy": ""}) is None
        cleared = await index.update_user(user.name, {"policy": None})
        assert cleared is not None and cleared.policy == ""

    async def test_delete_user(self, index: Index) -> None:
        tag = new_id()[:8]
        alice, bob = make_user(f"{tag}-alice"), make_user(f"{tag}-bob")
        await index.create_user(alice)
        await index.create_user(bob)
        bucket = BucketRecord(name=new_bucket_name(), owner=alice.access_key, created=1.0)
        await index.create_bucket(bucket)
        assert await index.delete_user(alice.name) == alice
        assert await index.delete_user(alice.name) is None
        assert await index.delete_user(f"{tag}-never") is None
        assert [u for u in await index.list_users() if u.name.startswith(tag)] == [bob]
        assert await index.get_bucket(bucket.name) == bucket  # their buckets stay
        again = make_user(alice.name)
        await index.create_user(again)  # the name is free again
        assert [u for u in await index.list_users() if u.name.startswith(tag)] == [again, bob]

    # ---- leases

    async def test_lease_free_held_renewed(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        assert await index.acquire_lease(name, "gw-a", 30.0) is True
        assert await index.acquire_lease(name, "gw-b", 30.0) is False
        assert await index.acquire_lease(name, "gw-a", 30.0) is True  # renewal
        assert await index.acquire_lease(name, "gw-b", 30.0) is False
        assert await index.acquire_lease(f"{name}-other", "gw-b", 30.0) is True  # leases are independent

    async def test_lease_expires(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        start = time.monotonic()
        assert await index.acquire_lease(name, "gw-a", 0.2) is True
        assert await index.acquire_lease(name, "gw-b", 0.2) is False or time.monotonic() - start >= 0.2
        deadline = start + 10.0
        while not await index.acquire_lease(name, "gw-b", 30.0):
            assert time.monotonic() < deadline, "the lease never expired"
            await asyncio.sleep(0.05)
        assert time.monotonic() - start >= 0.15  # not before (allowing for clock granularity)
        assert await index.acquire_lease(name, "gw-a", 30.0) is False  # b holds it now

    async def test_renewing_a_lease_extends_it(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        assert await index.acquire_lease(name, "gw-a", 0.2) is True
        assert await index.acquire_lease(name, "gw-a", 30.0) is True
        await asyncio.sleep(0.4)  # past the first term
        assert await index.acquire_lease(name, "gw-b", 30.0) is False

    async def test_release_lease(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        assert await index.release_lease(name, "gw-a") is False  # never taken
        assert await index.acquire_lease(name, "gw-a", 30.0) is True
        assert await index.release_lease(name, "gw-b") is False  # not b's to give up
        assert await index.acquire_lease(name, "gw-b", 30.0) is False
        assert await index.release_lease(name, "gw-a") is True
        assert await index.release_lease(name, "gw-a") is False  # already given up
        assert await index.acquire_lease(name, "gw-b", 30.0) is True  # free at once, long before 30 s
        assert await index.release_lease(name, "gw-a") is False
        assert await index.acquire_lease(name, "gw-a", 30.0) is False  # b's lease stands

    async def test_racing_lease_acquisitions_have_one_winner(self, index: Index) -> None:
        for _ in range(3):
            name = f"lease-{new_id()[:8]}"
            won = await asyncio.gather(*(index.acquire_lease(name, f"gw-{i}", 30.0) for i in range(5)))
            assert sum(won) == 1, won
            winner = f"gw-{won.index(True)}"
            assert await index.acquire_lease(name, winner, 30.0) is True
            assert await index.acquire_lease(name, f"{winner}-x", 30.0) is False


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
