"""S3 listing semantics (ListObjects v1/v2, ListMultipartUploads) over an ordered, seekable cursor.

Pure logic, shared by every Index implementation: the store only supplies a Cursor over one
bucket's entries in UTF-8 byte order of their keys. Keys and prefixes are handled as UTF-8 bytes
so the order is S3's, not Python's str order (which differs for surrogate-pair code points).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from metadata.index import ObjectPage, UploadPage, VersionEntry, VersionPage
from metadata.records import ObjectManifest, UploadRecord, s3_version

V = TypeVar("V")
V_co = TypeVar("V_co", covariant=True)

# UTF-8 never contains 0xFF: seeking past prefix + SKIP lands after every key under prefix.
SKIP = b"\xff"


class Cursor(Protocol[V_co]):
    """One bucket's entries as (utf8 key, value), ordered by key; entries of one key are contiguous."""

    def seek(self, key: bytes, inclusive: bool = False) -> None:
        """Position at the first entry whose key is > key (>= if inclusive)."""
        ...

    def next(self) -> tuple[bytes, V_co] | None:
        """The entry at the position, advancing past it; None at the end."""
        ...


class _Stream(Generic[V]):
    """A cursor with entries to hand out first (an upload-id-marker's key's remaining uploads)."""

    def __init__(self, cursor: Cursor[V], first: Iterable[tuple[bytes, V]] = ()) -> None:
        self.cursor = cursor
        self.first = deque(first)

    def next(self) -> tuple[bytes, V] | None:
        return self.first.popleft() if self.first else self.cursor.next()

    def skip_under(self, prefix: bytes) -> None:
        while self.first and self.first[0][0].startswith(prefix):
            self.first.popleft()
        if not self.first:
            self.cursor.seek(prefix + SKIP)


@dataclass(slots=True)
class _Walk(Generic[V]):
    entries: list[tuple[bytes, V]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: tuple[bytes, V] | bytes | None = None  # the last entry, or common prefix, returned


def _rollup(key: bytes, prefix: bytes, delimiter: bytes) -> bytes | None:
    """The common prefix `key` is rolled into, if any."""
    if not delimiter or not key.startswith(prefix):
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


def _start(cursor: Cursor[V], prefix: bytes, marker: bytes, delimiter: bytes) -> None:
    """Position after `marker` (skipping all under it if it is a common prefix) and at or after prefix."""
    if marker and marker >= prefix:
        if _rollup(marker, prefix, delimiter) == marker:
            # A common prefix returned earlier: the keys under it sort after it and would roll
            # into it again.
            cursor.seek(marker + SKIP)
        else:
            cursor.seek(marker)
    else:
        cursor.seek(prefix, inclusive=True)


def _walk(stream: _Stream[V], prefix: bytes, delimiter: bytes, limit: int) -> _Walk[V]:
    out: _Walk[V] = _Walk()
    count = 0
    while (entry := stream.next()) is not None:
        key = entry[0]
        if not key.startswith(prefix):
            break  # keys with the prefix are contiguous and we started at or after it
        if count == limit:
            out.truncated = True
            break
        count += 1
        cp = _rollup(key, prefix, delimiter)
        if cp is None:
            out.entries.append(entry)
            out.last = entry
        else:
            out.prefixes.append(cp.decode())
            out.last = cp
            stream.skip_under(cp)  # one seek instead of reading every key under it
    return out


def list_objects(
    cursor: Cursor[V],
    decode: Callable[[V], ObjectManifest],
    prefix: str = "",
    start_after: str = "",
    delimiter: str = "",
    max_keys: int = 1000,
) -> ObjectPage:
    """Index.list_objects over `cursor`; only the objects returned are decoded."""
    if max_keys <= 0:
        return ObjectPage()  # as S3: nothing, not truncated
    p, d = prefix.encode(), delimiter.encode()
    _start(cursor, p, start_after.encode(), d)
    w = _walk(_Stream(cursor), p, d, max_keys)
    page = ObjectPage([decode(v) for _, v in w.entries], w.prefixes, w.truncated)
    if w.truncated:
        page.next_marker = _marker_key(w.last).decode()
    return page


def list_uploads(
    cursor: Cursor[UploadRecord],
    prefix: str = "",
    key_marker: str = "",
    upload_id_marker: str = "",
    delimiter: str = "",
    max_uploads: int = 1000,
) -> UploadPage:
    """Index.list_uploads over a cursor whose entries of one key are in (initiated, upload_id) order.

    With key_marker and upload_id_marker: the uploads of key_marker after the one with that id,
    then keys > key_marker. If that upload is gone (completed or aborted since), its place in the
    order is unknown, so all of key_marker's uploads are listed: a page may repeat uploads but
    never skips one. upload_id_marker without key_marker is ignored, as by S3.
    """
    if max_uploads <= 0:
        return UploadPage()
    p, d = prefix.encode(), delimiter.encode()
    km = key_marker.encode()
    first: list[tuple[bytes, UploadRecord]] = []
    if km and upload_id_marker and km.startswith(p) and _rollup(km, p, d) != km:
        cursor.seek(km, inclusive=True)
        while (entry := cursor.next()) is not None and entry[0] == km:
            first.append(entry)
        ids = [u.upload_id for _, u in first]
        if upload_id_marker in ids:
            first = first[ids.index(upload_id_marker) + 1 :]
    _start(cursor, p, km, d)
    w = _walk(_Stream(cursor, first), p, d, max_uploads)
    page = UploadPage([u for _, u in w.entries], w.prefixes, w.truncated)
    if w.truncated:
        page.next_key_marker = _marker_key(w.last).decode()
        if isinstance(w.last, tuple):
            page.next_upload_id_marker = w.last[1].upload_id
    return page


@dataclass(slots=True)
class Version(Generic[V]):
    """One entry of TwoTables: a version's value, and whether it is its key's newest."""

    value: V
    latest: bool


class TwoTables(Generic[V]):
    """A Cursor over one bucket's objects table (raw key = S3 key) and versions table (raw key = S3 key + NUL +
    suffix, metadata/versioning.py) together, by S3 key then newest first.

    Both cursors yield raw keys with the bucket's namespace cut off. Without `order`, an objects-table entry is
    its key's newest (the current version in place); with it (versions kept apart), it goes where order(value),
    its version's suffix, puts it among the key's versions. Seeks land on a key's first entry, so the entry
    after a seek is its key's newest."""

    def __init__(self, current: Cursor[V], versions: Cursor[V], order: Callable[[V], bytes] | None = None) -> None:
        self._cursors = (current, versions)
        self._order = order
        self._heads: list[tuple[bytes, V] | None] = [None, None]
        self._held: bytes | None = None  # the objects-table head's suffix, once computed
        self._last = b""
        self._fresh = True  # nothing returned since the last seek

    def seek(self, key: bytes, inclusive: bool = False) -> None:
        self._cursors[0].seek(key, inclusive)
        # Past a key means past its versions too: they sort after it, before key + b"\x01".
        self._cursors[1].seek(key if inclusive else key + b"\x01", True)
        self._heads = [self._cursors[0].next(), self._cursors[1].next()]
        self._held = None
        self._fresh = True

    def _held_first(self, cur: tuple[bytes, V], ver: tuple[bytes, V]) -> bool:
        """Whether the objects-table head comes before the versions-table head."""
        key, suffix = ver[0].split(b"\x00", 1)
        if cur[0] != key or self._order is None:
            return cur[0] <= key
        if self._held is None:
            self._held = self._order(cur[1])
        return self._held <= suffix

    def skip_key(self, key: bytes) -> None:
        """Go past the rest of `key`'s entries (the key's latest returned): a cursor that can `skip(past)` drops
        them without handing each out (merged_scan.SyncCursor); another is read past them."""
        past = key + b"\x01"  # a key's entries sort before it, whatever follows (see seek)
        for i, cursor in enumerate(self._cursors):
            head = self._heads[i]
            if head is None or head[0] >= past:
                continue
            skip = getattr(cursor, "skip", None)
            if skip is not None:
                skip(past)
            head = cursor.next()
            while head is not None and head[0] < past:
                head = cursor.next()
            self._heads[i] = head
            if i == 0:
                self._held = None

    def next(self) -> tuple[bytes, Version[V]] | None:
        cur, ver = self._heads
        if cur is None and ver is None:
            return None
        if ver is None or (cur is not None and self._held_first(cur, ver)):
            assert cur is not None
            raw, value, i = cur[0], cur[1], 0
            self._held = None
        else:
            raw, value, i = ver[0], ver[1], 1
        self._heads[i] = self._cursors[i].next()
        key = raw.split(b"\x00", 1)[0]
        latest = self._fresh or key != self._last
        self._last, self._fresh = key, False
        return key, Version(value, latest)


class Current(Generic[V]):
    """A Cursor over TwoTables giving each key's current version alone: its latest, unless that is a delete
    marker (ListObjects in a bucket whose versions are kept apart); the key's other versions skipped."""

    def __init__(self, both: TwoTables[V], is_marker: Callable[[V], bool]) -> None:
        self._both = both
        self._is_marker = is_marker

    def seek(self, key: bytes, inclusive: bool = False) -> None:
        self._both.seek(key, inclusive)

    def next(self) -> tuple[bytes, V] | None:
        while (entry := self._both.next()) is not None:
            key, v = entry
            self._both.skip_key(key)  # after a seek or a skip, each entry is its key's latest
            if not self._is_marker(v.value):
                return key, v.value
        return None


def list_versions(
    cursor: TwoTables[V],
    decode: Callable[[V], ObjectManifest],
    prefix: str = "",
    key_marker: str = "",
    version_id_marker: str = "",
    delimiter: str = "",
    max_keys: int = 1000,
) -> VersionPage:
    """Index.list_versions over `cursor`; only the versions returned (and key_marker's) are decoded."""
    if max_keys <= 0:
        return VersionPage()
    p, d, km = prefix.encode(), delimiter.encode(), key_marker.encode()
    first: list[tuple[bytes, Version[V]]] = []
    if km and version_id_marker and km.startswith(p) and _rollup(km, p, d) != km:
        cursor.seek(km, inclusive=True)
        seen: list[tuple[bytes, Version[V]]] = []
        while (entry := cursor.next()) is not None and entry[0] == km:
            seen.append(entry)
        ids = [s3_version(decode(v.value)) for _, v in seen]
        # A marker gone since (deleted): its place is unknown, so all of key_marker's versions come again.
        first = seen[ids.index(version_id_marker) + 1 :] if version_id_marker in ids else seen
    _start(cursor, p, km, d)
    w = _walk(_Stream(cursor, first), p, d, max_keys)
    page = VersionPage([VersionEntry(decode(v.value), v.latest) for _, v in w.entries], w.prefixes, w.truncated)
    if w.truncated:
        page.next_key_marker = _marker_key(w.last).decode()
        if isinstance(w.last, tuple):
            page.next_version_id_marker = s3_version(page.versions[-1].manifest)
    return page


def _marker_key(last: tuple[bytes, V] | bytes | None) -> bytes:
    assert last is not None  # truncated implies something was returned (limit > 0)
    return last if isinstance(last, bytes) else last[0]
