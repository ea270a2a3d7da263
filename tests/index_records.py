"""Records, names and reference listings that the Index contract tests (tests/index_contract*.py) build on."""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck
from hypothesis import strategies as st

from metadata.index import (
    Index,
    ObjectPage,
    UploadPage,
)
from metadata.keys import repair_key
from metadata.records import (
    BucketRecord,
    DriveRecord,
    NodeRecord,
    ObjectManifest,
    PartRecord,
    RepairEntry,
    UploadRecord,
    UserRecord,
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
