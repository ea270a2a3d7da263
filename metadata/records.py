"""The records the index holds, and their encoding (msgpack of plain dicts)."""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

T = TypeVar("T")


@dataclass(slots=True)
class BucketRecord:
    name: str
    owner: str  # access key of the creating user
    created: float  # seconds since the epoch
    region: str = "us-east-1"
    # Bucket configurations, each a string (None: not set), changed with Index.update_bucket.
    policy: str | None = None  # the bucket policy's JSON text, as put (gateway/accounts/policy.py)
    acl: str | None = None  # the canned ACL (None: private)
    public_access_block: str | None = None  # JSON {"BlockPublicAcls": bool, ...}
    ownership: str | None = None  # ObjectOwnership (None: no controls, S3's ObjectWriter)
    cors: str | None = None  # the CORS rules as canonical JSON (gateway/s3/cors.py); None: no rules
    tags: dict[str, str] = field(default_factory=dict)  # bucket tagging (at most 50)
    versioning: str = ""  # VERSIONING_STATES: "" never configured, then "Enabled" or "Suspended"
    quota_size: int = 0  # bytes the bucket may hold (every version counts); 0: no quota (docs/quotas.md)
    quota_objects: int = 0  # objects (versions) it may hold; 0: no quota
    notifications: str = ""  # the notification configuration as JSON (gateway/handlers/notifications.py)
    # Object lock (docs/object-lock.md): once enabled never off, and versioning stays "Enabled". The default
    # retention new versions get: a LOCK_MODES mode and a period of days or years (one of them, else none).
    object_lock: bool = False
    lock_mode: str = ""
    lock_days: int = 0
    lock_years: int = 0
    # Lifecycle (docs/lifecycle.md): the rules as JSON ("" none), and where the worker's pass through the bucket
    # stands (the last key done; "" at the start), so that a restarted gateway resumes there.
    lifecycle: str = ""
    lifecycle_cursor: str = ""


VERSIONING_STATES = ("Enabled", "Suspended")


@dataclass(slots=True)
class PartRecord:
    """One erasure-coded run of data: the whole object of a single PUT, or a multipart part."""

    number: int  # 0 for a single PUT; 1..10000 for a multipart part
    data_id: str  # 32 hex: the FragmentId.version its fragments are stored under
    size: int  # plaintext bytes
    etag: str  # hex MD5 of the part's bytes (no quotes)
    placement: list[str]  # drive id holding fragment i, for i in 0..k+m-1
    k: int
    m: int
    segment_size: int
    last_modified: float = 0.0
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm (e.g. "CRC32") -> base64
    missed: list[int] = field(default_factory=list)  # fragment indexes that missed the write: to repair
    inline: bytes | None = None  # a small part's bytes, kept in the manifest instead of on drives


@dataclass(slots=True)
class ObjectManifest:
    bucket: str
    key: str
    version_id: str  # 32 hex, new for every write
    size: int
    etag: str  # as S3 returns it, without quotes ("<md5>" or "<md5-of-md5s>-<n>")
    last_modified: float
    owner: str
    parts: list[PartRecord]
    content_type: str = "binary/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)  # Content-Encoding, Cache-Control, ...
    user_meta: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* (lowercased name without prefix)
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64 (S3 full-object or composite)
    checksum_type: str = ""  # "FULL_OBJECT" | "COMPOSITE" | ""
    acl: str = ""  # the canned ACL the object was written with ("": private)
    tags: dict[str, str] = field(default_factory=dict)  # object tagging (at most 10); left out when empty
    # Versioning (docs/versioning.md). version_id above is internal (unique per write, what repair checks);
    # s3_version_id is what S3 clients see: new_version_id() for a write while versioning is Enabled, ""
    # for the null version (written while it was never enabled or is Suspended).
    s3_version_id: str = ""
    delete_marker: bool = False  # a delete marker: no parts, no data
    # Object lock (docs/object-lock.md), per version: a LOCK_MODES mode ("" none) and the time (seconds since
    # the epoch) its retention ends; its legal hold: "ON" holds until turned "OFF" ("" never set).
    lock_mode: str = ""
    lock_until: float = 0.0
    legal_hold: str = ""


NULL_VERSION = "null"


def new_version_id(now: float) -> str:
    """A version id S3 clients see: the microsecond it was made (16 hex) and 64 random bits (16 hex).
    The time orders a key's versions newest first in the index without reading them (keys.version_suffix)."""
    return f"{int(now * 1_000_000):016x}{os.urandom(8).hex()}"


def is_version_id(text: str) -> bool:
    """Whether `text` has the form of a version id this store hands out (or is "null")."""
    if text == NULL_VERSION:
        return True
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def s3_version(man: ObjectManifest) -> str:
    """The version id S3 clients see for `man`: "null" for the null version."""
    return man.s3_version_id or NULL_VERSION


@dataclass(slots=True)
class UploadRecord:
    """A multipart upload in progress."""

    bucket: str
    key: str
    upload_id: str  # 32 hex; also the version id the completed object gets
    initiated: float
    owner: str
    content_type: str = "binary/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    checksum_algorithm: str = ""  # as given at create (e.g. "CRC32"), "" if none
    checksum_type: str = ""  # "COMPOSITE" | "FULL_OBJECT" | ""
    acl: str = ""  # the canned ACL the completed object gets
    tags: dict[str, str] = field(default_factory=dict)  # x-amz-tagging at create, given to the completed object
    lock_mode: str = ""  # object lock asked for at create, given to the completed version (ObjectManifest's)
    lock_until: float = 0.0
    legal_hold: str = ""


LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(slots=True)
class LockGuard:
    """Who asks to remove or weaken a version's object lock, and when: the index refuses (ObjectLocked) what
    the lock forbids at `now` (seconds since the epoch, the gateway's clock)."""

    now: float
    bypass_governance: bool = False  # x-amz-bypass-governance-retention, from someone allowed to bypass


def retained(man: ObjectManifest, now: float) -> bool:
    """Whether `man`'s retention still holds at `now`."""
    return bool(man.lock_mode) and man.lock_until > now


@dataclass(slots=True)
class Condition:
    """A precondition checked atomically against the current object inside the write."""

    if_match: str | None = None  # ETag (without quotes) the current object must have
    if_none_match_star: bool = False  # the key must not exist


@dataclass(slots=True)
class DriveRecord:
    """One drive of a storage node, as the node reports it at each heartbeat."""

    drive_id: str  # the id stored in the drive's directory; owned by one node at a time
    capacity: int  # bytes of the filesystem holding it
    free: int  # bytes available for fragments
    path: str = ""  # the drive's directory on its node ("" from nodes older than this field)
    # The filesystem holding it, "host:st_dev": drives sharing one are counted once in capacity and free.
    filesystem: str = ""
    state: str = ""  # "offline: why" when its node cannot use it ("" when it can, or from older nodes)
    adopted: float = 0.0  # epoch seconds it was last found empty and formatted back in by its node (0: never)

    @classmethod
    def measure(cls, drive_id: str, root: str | os.PathLike[str]) -> DriveRecord:
        """The drive in directory `root`, with its filesystem's size and free space now."""
        st = os.statvfs(root)
        fs = f"{socket.gethostname()}:{os.stat(root).st_dev}"
        return cls(drive_id, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, str(root), fs)


@dataclass(slots=True)
class NodeRecord:
    """A storage node in the cluster: registered when it starts, refreshed by its heartbeats."""

    node_id: str
    address: str  # "http://host:port", where gateways reach it
    zone: str  # failure domain; fragments of an object go to distinct zones when there are enough
    drives: list[DriveRecord]
    started: float  # seconds since the epoch, by the node's clock
    # Stamped at each upsert (heartbeat). Gateways judge liveness by watching it change, on their own
    # monotonic clock, never by comparing it with their clock (see gateway/objects/membership.py).
    last_seen: float
    state: str = "active"  # NODE_STATES; set by operators (set_node_state), never by heartbeats


NODE_STATES = ("active", "draining", "retired")  # draining/retired nodes take no new fragments


@dataclass(slots=True)
class RepairEntry:
    """One fragment (or a whole part) queued for repair.

    Queue order is (surviving, data_id, part, index): parts with the fewest healthy fragments first,
    and every entry of one part side by side, so a repairer takes them together.
    """

    surviving: int  # healthy fragments of the part when queued, as far as the reporter knew; 0 if unknown
    data_id: str  # 32 hex: the part's data version
    part: int  # part number (0 for a single PUT)
    index: int  # the fragment to rebuild, or -1: check every fragment of the part
    bucket: str = ""  # the object holding the part, when the reporter knows it ("" from a scrubber)
    key: str = ""
    reason: str = ""  # REPAIR_REASONS
    drive_id: str = ""  # the drive where the bad or missing copy was seen, "" if unknown
    queued: float = 0.0  # seconds since the epoch


REPAIR_REASONS = ("write", "read", "scrub", "node-down", "drain", "scan")


@dataclass(slots=True)
class UserRecord:
    """An S3 user: their own credentials, their own buckets (bucket owner = access key)."""

    name: str
    access_key: str
    secret_key: str
    created: float
    policy: str = ""  # the user's IAM policy, JSON ("" : readwrite on their own buckets)
    quota_size: int = 0  # bytes all the user's buckets may hold together; 0: no quota (docs/quotas.md)
    quota_objects: int = 0


@dataclass(slots=True)
class Lease:
    """A named, time-limited claim, e.g. which gateway runs the background repairer now."""

    name: str
    holder: str
    expires: float  # seconds since the epoch


@dataclass(slots=True)
class Usage:
    """What a bucket holds: every version counts, delete markers do not (docs/quotas.md)."""

    bytes: int = 0
    objects: int = 0


def usage_of(man: ObjectManifest | None) -> Usage:
    """What one stored version adds to its bucket's usage."""
    return Usage() if man is None else version_usage(man.size, man.delete_marker)


def version_usage(size: int, delete_marker: bool) -> Usage:
    """The rule of usage_of, for a caller that has only the two fields (a manifest's stored_fields)."""
    return Usage() if delete_marker else Usage(size, 1)


@dataclass(slots=True)
class NotifyTarget:
    """A webhook the operator registered; buckets' notification rules name it (docs/notifications.md)."""

    name: str
    url: str
    auth_token: str = ""  # sent as "Authorization: Bearer <token>" when set
    created: float = 0.0


@dataclass(slots=True)
class EventRecord:
    """One event waiting in the index's queue for delivery to its targets, written with the write it reports."""

    seq: str  # queue position: 16 hex of microseconds, then 16 random hex (also the S3 sequencer)
    name: str  # e.g. "ObjectCreated:Put" (S3's eventName without the "s3:")
    bucket: str
    key: str
    targets: list[str]  # NotifyTarget names still to deliver to
    size: int = 0
    etag: str = ""
    version_id: str = ""  # S3 version id ("" unversioned)
    time: float = 0.0
    principal: str = ""  # the requester's access key
    attempts: int = 0


def apply_changes(rec: T, changes: dict[str, str | None], changeable: frozenset[str]) -> T:
    """A copy of `rec` with `changes` applied (field -> new value, None: the field's default); the update_*
    operations of the Index use it. Raises ValueError for a field not in `changeable`."""
    for name, value in changes.items():
        if name not in changeable:
            raise ValueError(f"{type(rec).__name__} has no changeable field {name!r}")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None")
    values = {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}  # type: ignore[arg-type]
    defaults = {f.name: f.default for f in dataclasses.fields(rec)}  # type: ignore[arg-type]
    for name, value in changes.items():
        values[name] = defaults[name] if value is None else value
    return type(rec)(**values)


def object_changes(changes: dict[str, str | None]) -> tuple[Callable[[ObjectManifest], bool], list[ObjectManifest]]:
    """For the stores' rewrites in place (Index.update_object): a change setting `changes` on a manifest
    (ValueError for a field not in OBJECT_CHANGEABLE), and the list the changed manifest is put in."""
    changed: list[ObjectManifest] = []

    def change(man: ObjectManifest) -> bool:
        updated = apply_changes(man, changes, OBJECT_CHANGEABLE)
        for name in changes:
            setattr(man, name, getattr(updated, name))
        changed.append(man)
        return True

    return change, changed


# What Index.update_bucket, update_user and update_object may change: access configurations and CORS rules.
# Everything else of a record has its own operation (tags, versioning, object lock) or never changes.
BUCKET_CHANGEABLE = frozenset({"policy", "acl", "public_access_block", "ownership", "cors"})
USER_CHANGEABLE = frozenset({"policy"})
OBJECT_CHANGEABLE = frozenset({"acl"})


# Fields holding lists of records, which msgpack hands back as lists of dicts.
_NESTED: dict[type, dict[str, type]] = {ObjectManifest: {"parts": PartRecord}, NodeRecord: {"drives": DriveRecord}}


def _nested_types(cls: type) -> dict[str, type]:
    return _NESTED.get(cls, {})


# A manifest with inline parts is stored as: magic, u32 length of the msgpack map, the map, then
# the inline bytes of each part in order. A listing reads only the map, never the object bytes.
_INLINE_MAGIC = b"\xc1TI1"  # 0xc1 is never the first byte of a msgpack document
_LEN = struct.Struct(">I")


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(_field_names(cls))


# Fields left out of the encoding while empty: most records never have them, and a record without the
# field decodes to its default (so records written before the field existed read the same).
OMIT_EMPTY = frozenset(
    {"tags", "versioning", "s3_version_id", "delete_marker", "lifecycle", "lifecycle_cursor"}
    | {"object_lock", "lock_mode", "lock_days", "lock_years", "lock_until", "legal_hold"}
    | {"policy", "acl", "public_access_block", "ownership"}
    | {"quota_size", "quota_objects", "notifications"}
)


def _as_map(rec: Any) -> dict[str, Any]:
    """What dataclasses.asdict gives for a record, for the nesting records have (_NESTED), without
    its deep copy of every value: that was a tenth of a small PUT's CPU."""
    d = {name: v for name in _field_names(type(rec)) if (v := getattr(rec, name)) or name not in OMIT_EMPTY}
    for name in _nested_types(type(rec)):
        d[name] = [_as_map(x) for x in d[name]]
    return d


def encode(rec: Any) -> bytes:
    if isinstance(rec, ObjectManifest) and any(p.inline is not None for p in rec.parts):
        d = _as_map(rec)
        payloads = []
        for part in d["parts"]:
            data = part.pop("inline")
            part["inline_size"] = -1 if data is None else len(data)
            payloads.append(data or b"")
        head = msgpack.packb(d, use_bin_type=True)
        return b"".join([_INLINE_MAGIC, _LEN.pack(len(head)), head, *payloads])
    return msgpack.packb(_as_map(rec), use_bin_type=True)


def _build(cls: type[T], d: dict[str, Any]) -> T:
    # Fields this version does not know (written by a newer one) are dropped, not fatal.
    known = _field_set(cls)
    return cls(**{k: v for k, v in d.items() if k in known})


def _split(data: bytes | memoryview) -> tuple[dict[str, Any], memoryview | None]:
    """A record's stored map, and the inline object bytes after it (if it is a manifest with any)."""
    view = memoryview(data)
    if view[:4] == _INLINE_MAGIC:
        (n,) = _LEN.unpack(view[4:8])
        return msgpack.unpackb(view[8 : 8 + n], raw=False), view[8 + n :]
    return msgpack.unpackb(view, raw=False), None


def stored_fields(data: bytes | memoryview) -> dict[str, Any]:
    """A record's top-level fields as stored (an empty one may be left out), without building the record:
    for a hot path that wants one or two of them."""
    return _split(data)[0]


def decode(cls: type[T], data: bytes, with_inline: bool = True) -> T:
    """A record from its bytes; with_inline=False leaves inline object bytes unread (for listings)."""
    d, tail = _split(data)
    if tail is not None:
        pos = 0
        for part in d["parts"]:
            size = part.pop("inline_size")
            if size >= 0:
                part["inline"] = bytes(tail[pos : pos + size]) if with_inline else None
                pos += size
    for name, sub in _nested_types(cls).items():
        d[name] = [_build(sub, x) for x in d[name]]
    return _build(cls, d)
