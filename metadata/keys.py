"""LMDB key encoding for records keyed by (bucket, object key), and ordered reads over it.

LMDB keys stop at 511 bytes; S3 keys go to 1,024 bytes of UTF-8. The composite key
bucket + b"\\x00" + utf8(key) is stored as is up to PREFIX_LEN bytes; a longer one becomes
its first PREFIX_LEN bytes + HASH_LEN bytes of sha256 of the whole. Hashed keys are therefore
exactly HASHED_LEN bytes long and never equal an unhashed one, and the full key is always
recoverable from the record stored under it.

Order: for composite keys A < B, encode(A) < encode(B) unless both are hashed with the same
PREFIX_LEN-byte head. Such a group is contiguous in LMDB (right after the unhashed key equal to
the head, if any) but in hash order, so OrderedCursor reads a group whole and sorts it by full key.
Bucket names never contain b"\\x00", so one bucket's composites are exactly those starting with
bucket + b"\\x00".
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Callable

import lmdb

PREFIX_LEN = 470
HASH_LEN = 16
HASHED_LEN = PREFIX_LEN + HASH_LEN  # 486 < 511, LMDB's default key limit


def namespace(bucket: str) -> bytes:
    """The bytes every composite key of `bucket` starts with."""
    return bucket.encode() + b"\x00"


def composite(bucket: str, key: str) -> bytes:
    return namespace(bucket) + key.encode()


def encode(full: bytes) -> bytes:
    """The LMDB key for a composite key."""
    if len(full) <= PREFIX_LEN:
        return full
    return full[:PREFIX_LEN] + hashlib.sha256(full).digest()[:HASH_LEN]


def is_hashed(lmdb_key: bytes) -> bool:
    return len(lmdb_key) == HASHED_LEN


# (LMDB key, value) -> the full composite key; only called for hashed keys.
FullKey = Callable[[bytes, bytes], bytes]


class OrderedCursor:
    """Reads an LMDB database keyed by encode() in exact byte order of the full composite keys.

    Yields (full composite key, value). Works on DUPSORT databases too: the duplicates of one key
    come out in value order (a hashed group is sorted by (full key, value)). Reads stop at the
    first key outside `scope` (a namespace(), always shorter than PREFIX_LEN).
    """

    def __init__(self, cur: lmdb.Cursor, full_key: FullKey, scope: bytes = b"") -> None:
        self._cur = cur
        self._full_key = full_key
        self._scope = scope
        self._buf: deque[tuple[bytes, bytes]] = deque()  # the rest of a sorted hashed group
        self._valid = False  # whether self._cur is on an entry not yet returned or buffered

    def seek(self, target: bytes, inclusive: bool = False) -> None:
        """Position at the first entry whose full key is > target (>= if inclusive)."""
        self._buf.clear()
        if len(target) <= PREFIX_LEN:
            # A hashed key sorts after `target` in LMDB iff its full key does (see module doc).
            self._valid = self._cur.set_range(target)
            if not inclusive:
                self._skip_equal(target)
            return
        # A long target sorts inside the group of hashed keys sharing its head: everything
        # before the group is smaller, everything after it larger, the group itself is unordered.
        head = target[:PREFIX_LEN]
        self._valid = self._cur.set_range(head)
        self._skip_equal(head)  # the unhashed key equal to head is a proper prefix of target
        group = self._read_group(head)
        self._buf.extend(e for e in group if e[0] > target or (inclusive and e[0] == target))

    def next(self) -> tuple[bytes, bytes] | None:
        if self._buf:
            return self._buf.popleft()
        if not self._valid:
            return None
        key = self._cur.key()
        if not key.startswith(self._scope):
            self._valid = False
            return None
        if is_hashed(key):
            self._buf.extend(self._read_group(key[:PREFIX_LEN]))
            return self._buf.popleft()
        item = (key, self._cur.value())
        self._valid = self._cur.next()
        return item

    def _skip_equal(self, key: bytes) -> None:
        while self._valid and self._cur.key() == key:  # a loop: DUPSORT keys repeat
            self._valid = self._cur.next()

    def _read_group(self, head: bytes) -> list[tuple[bytes, bytes]]:
        group = []
        while self._valid:
            key = self._cur.key()
            if not (is_hashed(key) and key.startswith(head)):
                break
            value = self._cur.value()
            group.append((self._full_key(key, value), value))
            self._valid = self._cur.next()
        group.sort()
        return group


MAX_PART = 0xFFFF_FFFF  # part numbers are stored in 4 bytes


def sortable(x: float) -> bytes:
    """8 bytes whose byte order is the numeric order of the float."""
    (n,) = struct.unpack(">Q", struct.pack(">d", x))
    n = n ^ 0xFFFF_FFFF_FFFF_FFFF if n >> 63 else n | 1 << 63
    return n.to_bytes(8, "big")


def parts_prefix(upload_id: str) -> bytes:
    return upload_id.encode() + b"\x00"


def part_key(upload_id: str, number: int) -> bytes:
    if not 0 <= number <= MAX_PART:
        raise ValueError(f"part number {number} is out of range")
    return parts_prefix(upload_id) + number.to_bytes(4, "big")


def repair_key(surviving: int, data_id: str, part: int, index: int) -> bytes:
    """A repair queue entry's position: fewest surviving first, then one part's entries together."""
    return bytes([max(0, min(surviving, 255))]) + data_id.encode() + struct.pack(">IH", part, index + 1)


# -- versions: noncurrent versions and delete markers, keyed composite + b"\x00" + suffix.
# S3 keys hold no NUL, so a key's versions sort right after the key itself and before any longer key,
# newest first (the suffix starts with the inverted microsecond of the version).
_NEWEST_FIRST = 0xFFFF_FFFF_FFFF_FFFF


def version_suffix(s3_version_id: str, last_modified: float) -> bytes:
    """A version's place among its key's versions: a version id's own time, or (the null version, whose id
    says nothing) its last-modified time; then the id ("null")."""
    micros = int(s3_version_id[:16], 16) if s3_version_id else int(last_modified * 1_000_000)
    return (_NEWEST_FIRST - max(0, min(micros, _NEWEST_FIRST))).to_bytes(8, "big") + (s3_version_id or "null").encode()


def past_key(full: bytes, scope: bytes) -> bytes:
    """Where the entries of the S3 key of record key `full` (scope, the S3 key, then NUL and more or nothing)
    end: a key's entries sort before its UTF-8 bytes + 0x01, whatever follows them."""
    end = full.find(b"\x00", len(scope))
    return (full if end < 0 else full[:end]) + b"\x01"


def versions_of(bucket: str, key: str) -> bytes:
    """The bytes every versions-table composite of (bucket, key) starts with."""
    return composite(bucket, key) + b"\x00"


def version_composite(bucket: str, key: str, s3_version_id: str, last_modified: float) -> bytes:
    return versions_of(bucket, key) + version_suffix(s3_version_id, last_modified)


def s3_key_of_version(rest: bytes) -> bytes:
    """The S3 key (UTF-8) of a versions-table composite with its bucket's namespace cut off."""
    return rest.split(b"\x00", 1)[0]
