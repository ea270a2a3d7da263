"""The index seam: buckets, object manifests, multipart uploads, cluster membership, users, the repair queue.

Implementations: LocalIndex (LMDB, metadata/local/store.py), RemoteIndex (one metadata service over
HTTP, metadata/remote/client.py) and ReplicatedIndex (three replicas, metadata/replicated/index.py; what each
operation guarantees there is in docs/consistency.md). All pass tests/index_contract.py.
Every method is atomic: a method that raises has changed nothing (but see IndexUnavailable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from metadata.records import (
    BucketRecord,
    Condition,
    EventRecord,
    LockGuard,
    NodeRecord,
    NotifyTarget,
    ObjectManifest,
    PartRecord,
    RepairEntry,
    UploadRecord,
    Usage,
    UserRecord,
)


class MetadataError(Exception):
    """Base of the errors an index raises (named so as not to shadow the builtin)."""


class BucketAlreadyExists(MetadataError):
    def __init__(self, owner: str) -> None:
        super().__init__(f"bucket exists, owned by {owner}")
        self.owner = owner


class NoSuchBucket(MetadataError):
    pass


class BucketNotEmpty(MetadataError):
    pass


class NoSuchUpload(MetadataError):
    pass


class PreconditionFailed(MetadataError):
    pass


class ObjectLocked(MetadataError):
    """Object lock forbids the change: a version under retention or legal hold (metadata/object_lock.py)."""


class DriveClaimed(MetadataError):
    """A node claimed a drive that another node has registered."""

    def __init__(self, drive_id: str, node_id: str) -> None:
        super().__init__(f"drive {drive_id} is registered to node {node_id}")
        self.drive_id = drive_id
        self.node_id = node_id  # the node that owns it


class NoSuchNode(MetadataError):
    pass


class UserExists(MetadataError):
    pass


class IndexUnavailable(MetadataError):
    """The index could not be reached (connection failed or timed out, after any retries).

    A write that raises this may or may not have happened: the request may have been lost on
    the way there or its answer on the way back.
    """


class IndexFull(MetadataError):
    """A write found no room: the index's filesystem (or its map) is full. Nothing of the write was
    stored, and writes succeed again once space is freed."""


@dataclass(slots=True)
class ObjectPage:
    objects: list[ObjectManifest] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # common prefixes (with the delimiter)
    truncated: bool = False
    next_marker: str = ""  # the last key or common prefix returned, when truncated


@dataclass(slots=True)
class UploadPage:
    uploads: list[UploadRecord] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key_marker: str = ""
    next_upload_id_marker: str = ""


@dataclass(slots=True)
class PartPage:
    parts: list[PartRecord] = field(default_factory=list)
    truncated: bool = False
    next_marker: int = 0


@dataclass(slots=True)
class VersionEntry:
    manifest: ObjectManifest  # a version or a delete marker (manifest.delete_marker)
    latest: bool  # the key's newest version (S3's IsLatest)


@dataclass(slots=True)
class VersionPage:
    versions: list[VersionEntry] = field(default_factory=list)  # by key, then newest first
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key_marker: str = ""  # the last key or common prefix returned, when truncated
    next_version_id_marker: str = ""  # the last version's S3 id ("null" too), when the last was a version


@dataclass(slots=True)
class Completed:
    previous: ObjectManifest | None  # the version the completion replaced, whose data is unreferenced now
    unused: list[PartRecord]  # uploaded parts the completed object does not use


class Index(Protocol):
    # -- buckets
    async def create_bucket(self, rec: BucketRecord) -> None:
        """Raises BucketAlreadyExists (with the current owner) if the name is taken."""
        ...

    async def get_bucket(self, name: str) -> BucketRecord | None: ...

    async def set_versioning(self, name: str, status: str) -> None:
        """Set a bucket's versioning to "Enabled" or "Suspended" (records.VERSIONING_STATES); once set it
        is never "" again. Raises NoSuchBucket, ValueError for another status, or "Suspended" while the bucket
        has object lock."""
        ...

    async def set_bucket_lock(self, name: str, mode: str = "", days: int = 0, years: int = 0) -> None:
        """Turn object lock on for good (docs/object-lock.md) and set the default retention of new versions:
        a records.LOCK_MODES mode with days or years (not both), or none (mode ""). Raises NoSuchBucket,
        ValueError for another rule or while the bucket's versioning is not "Enabled"."""
        ...

    async def delete_bucket(self, name: str) -> list[PartRecord]:
        """Raises NoSuchBucket, or BucketNotEmpty while it holds any object, version or delete marker.

        Multipart uploads in progress do not block deletion (as in S3): they are dropped with
        the bucket, and the parts they had are returned so their fragments can be collected.
        """
        ...

    async def list_buckets(self) -> list[BucketRecord]:
        """All buckets, sorted by name."""
        ...

    async def update_bucket(self, name: str, changes: dict[str, str | None]) -> BucketRecord:
        """Set bucket configuration fields atomically (field -> value; None resets it to its default) and
        return the record as stored. One operation for every bucket configuration (policy, ACL, ...).

        Raises NoSuchBucket, ValueError for a field that is not a configuration (name, owner, ...)."""
        ...

    async def set_bucket_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace the bucket's tags (an empty dict removes them). Raises NoSuchBucket."""
        ...

    async def set_bucket_lifecycle(self, name: str, rules: str) -> None:
        """Replace the bucket's lifecycle rules (JSON, as gateway/s3/lifecycle.dumps writes it; "" removes
        them). Raises NoSuchBucket."""
        ...

    async def set_lifecycle_cursor(self, name: str, cursor: str) -> None:
        """Record how far the lifecycle worker's pass through the bucket has come (the last key it finished;
        "" for none). Raises NoSuchBucket."""
        ...

    # -- objects
    async def put_object(
        self, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        """Make `man` the latest version at (man.bucket, man.key); return the version whose data is no
        longer referenced (None if none).

        In a bucket whose versioning was never configured, the current object is replaced and returned.
        Otherwise (docs/versioning.md) the current version is kept as a noncurrent one, unless `man` and it
        are both the null version (s3_version_id ""): then it is replaced and returned; a null `man`
        replaces (and returns) a noncurrent null version too. A delete marker (man.delete_marker) becomes
        the latest version and leaves no current object.
        Raises NoSuchBucket, PreconditionFailed (cond not met against the current object).
        The bucket's usage changes with it, and `events` join the event queue, in the same transaction.
        """
        ...

    async def get_object(self, bucket: str, key: str) -> ObjectManifest | None:
        """The current version (never a delete marker), None if there is none."""
        ...

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectManifest | None:
        """The version (or delete marker) with S3 version id `version_id` ("null": the null version)."""
        ...

    async def latest_version(self, bucket: str, key: str) -> ObjectManifest | None:
        """The key's newest version, a delete marker included: what answers a GET that found no current one."""
        ...

    async def delete_version(
        self,
        bucket: str,
        key: str,
        version_id: str,
        guard: LockGuard | None = None,
        events: Sequence[EventRecord] = (),
    ) -> ObjectManifest | None:
        """Remove one version or delete marker for good and return it (None if there was none). When it
        was the newest, the next newest becomes the latest (current, unless it is a delete marker).
        With a guard, a version its object lock protects is kept: raises ObjectLocked (object_lock.check_delete).
        `events` are queued only if something was removed. Raises NoSuchBucket."""
        ...

    async def set_retention(
        self, bucket: str, key: str, version_id: str, mode: str, until: float, guard: LockGuard
    ) -> bool:
        """Set the retention of the version with internal id `version_id` (current or not) in place, as
        set_object_tags rewrites tags (mode "" and until 0 take it off); False, changing nothing, if there is no
        such version or it is a delete marker. Raises ObjectLocked when its retention forbids the change
        (object_lock.retention_change), ValueError for a bad mode."""
        ...

    async def set_legal_hold(self, bucket: str, key: str, version_id: str, on: bool) -> bool:
        """Turn the legal hold of the version with internal id `version_id` on or off in place, as set_retention."""
        ...

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
    ) -> VersionPage:
        """Every version and delete marker by key (UTF-8 byte order), newest first, after the markers as S3
        defines them (version_id_marker: after that version of key_marker; unknown: all of key_marker's
        versions again). Versions and common prefixes count towards max_keys. Raises NoSuchBucket."""
        ...

    async def delete_object(
        self, bucket: str, key: str, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        """Remove the object; return it (None if there was none: nothing changes). Raises NoSuchBucket, and
        PreconditionFailed when there is an object and it does not meet cond (checked atomically with the delete).
        `events` are queued, in the same transaction, only if there was an object.
        """
        ...

    async def set_object_tags(self, bucket: str, key: str, version_id: str, tags: dict[str, str]) -> bool:
        """Replace the tags of the version with internal id `version_id` (current or not), only if (bucket,
        key) still has it (otherwise change nothing and return False). The object's data and everything else of its
        manifest stay as they are; like update_part, it never wins over a concurrent overwrite or delete.
        """
        ...

    async def update_object(
        self, bucket: str, key: str, version_id: str, changes: dict[str, str | None]
    ) -> ObjectManifest | None:
        """Set changeable fields (records.OBJECT_CHANGEABLE: the ACL) of version `version_id` (the internal id,
        as set_object_tags) in place; return it as stored, or None if there is no such version any more.
        Like update_part, it never wins over a concurrent overwrite or delete. Raises ValueError for any
        other field."""
        ...

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ObjectPage:
        """Keys > start_after that start with prefix, in UTF-8 byte order.

        With a delimiter, keys whose remainder after the prefix contains it are rolled into one
        common prefix (prefix + remainder up to and including the first delimiter); objects and
        prefixes together count towards max_keys. start_after may be a common prefix returned
        earlier: everything under it is skipped. Raises NoSuchBucket.
        """
        ...

    # -- multipart uploads
    async def create_upload(self, rec: UploadRecord) -> None:
        """Raises NoSuchBucket."""
        ...

    async def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    async def put_part(self, upload_id: str, part: PartRecord) -> PartRecord | None:
        """Record a part (replacing one with the same number, which is returned). Raises NoSuchUpload."""
        ...

    async def list_parts(self, upload_id: str, marker: int = 0, max_parts: int = 1000) -> PartPage:
        """Parts with number > marker, ascending. Raises NoSuchUpload."""
        ...

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        delimiter: str = "",
        max_uploads: int = 1000,
    ) -> UploadPage:
        """Uploads sorted by (key, initiated, upload_id), after the markers as S3 defines them. Raises NoSuchBucket."""
        ...

    async def complete_upload(
        self, upload_id: str, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> Completed:
        """Atomically: check cond, make man the latest version (as put_object), drop the upload and its parts.

        Raises NoSuchUpload, NoSuchBucket, PreconditionFailed.
        """
        ...

    async def abort_upload(self, upload_id: str) -> list[PartRecord]:
        """Drop the upload and its parts; return the parts (for GC). Raises NoSuchUpload."""
        ...

    # -- cluster membership
    async def upsert_node(self, rec: NodeRecord) -> NodeRecord:
        """Register a node or record its heartbeat: replace its record, with last_seen set to the index's
        own clock (time.time()) whatever rec.last_seen says; return the record as stored.

        A drive belongs to one node: raises DriveClaimed if another node has one of rec's drives
        (drives the node no longer lists are released). Raises ValueError if rec lists a drive twice.
        """
        ...

    async def list_nodes(self) -> list[NodeRecord]:
        """All registered nodes, sorted by node_id."""
        ...

    async def remove_node(self, node_id: str) -> bool:
        """Forget a node and release its drives; False if it was not registered."""
        ...

    async def set_node_state(self, node_id: str, state: str) -> NodeRecord:
        """Set a node's operator state (records.NODE_STATES); heartbeats (upsert_node) keep it, and
        list_nodes/upsert_node report it. Raises NoSuchNode, ValueError for an unknown state."""
        ...

    # -- repair (objects below full redundancy)
    async def update_part(self, bucket: str, key: str, version_id: str, part: PartRecord) -> bool:
        """Replace a repaired part's record (new placement, fewer missed fragments) in a version of the key.

        Only if (bucket, key) still has the version with internal id `version_id` (current or not) and its
        part `part.number` still has `part.data_id`; otherwise (overwritten, deleted, bucket gone) change
        nothing and return False.
        An overwrite or delete concurrent with this call must win: it never resurrects an old version.
        """
        ...

    async def queue_repairs(self, entries: Sequence[RepairEntry]) -> None:
        """Add entries to the repair queue; one at the same position (keys.repair_key) is replaced."""
        ...

    async def list_repairs(self, after: RepairEntry | None = None, limit: int = 1000) -> list[RepairEntry]:
        """Queued entries in repair order (keys.repair_key), starting after `after`'s position."""
        ...

    async def remove_repairs(self, entries: Sequence[RepairEntry]) -> None:
        """Drop the entries at these entries' positions; absent ones are ignored."""
        ...

    async def repair_backlog(self) -> int:
        """How many entries are queued."""
        ...

    # -- users
    async def create_user(self, rec: UserRecord) -> None:
        """Raises UserExists if the name is taken."""
        ...

    async def list_users(self) -> list[UserRecord]:
        """All users, sorted by name."""
        ...

    async def update_user(self, name: str, changes: dict[str, str | None]) -> UserRecord | None:
        """Set a user's changeable fields (policy) as update_bucket does; None if there is no such user.
        Raises ValueError for a field that cannot change (name, keys)."""
        ...

    async def delete_user(self, name: str) -> UserRecord | None:
        """Remove a user; return the record (None if there was none). Their buckets stay."""
        ...

    # -- leases
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease `name` for `ttl` seconds: True if `holder` now holds it (it was free,
        expired, or already held by `holder`), False if another holder's lease is still running.
        Atomic: two holders racing for a free lease never both get True."""
        ...

    async def release_lease(self, name: str, holder: str) -> bool:
        """Give up lease `name` if `holder` holds it (True); otherwise change nothing (False)."""
        ...

    # -- quotas and usage (docs/quotas.md)
    async def set_bucket_quota(self, name: str, max_size: int, max_objects: int) -> None:
        """Set (0: clear) a bucket's quota. Raises NoSuchBucket, ValueError for a negative value."""
        ...

    async def set_user_quota(self, name: str, max_size: int, max_objects: int) -> UserRecord | None:
        """Set (0: clear) a user's quota over all their buckets; the record, None if there is no such user.
        Raises ValueError for a negative value."""
        ...

    async def bucket_usage(self, name: str) -> Usage:
        """Bytes and objects the bucket holds now, every version counted (delete markers not). Raises NoSuchBucket."""
        ...

    # -- event notifications (docs/notifications.md)
    async def set_notifications(self, name: str, config: str) -> None:
        """Store a bucket's notification configuration (JSON, "" for none). Raises NoSuchBucket."""
        ...

    async def put_notify_target(self, rec: NotifyTarget) -> None:
        """Register or replace a webhook target."""
        ...

    async def list_notify_targets(self) -> list[NotifyTarget]:
        """All targets, sorted by name."""
        ...

    async def remove_notify_target(self, name: str) -> bool:
        """Forget a target; False if there was none."""
        ...

    async def list_events(self, limit: int = 1000) -> list[EventRecord]:
        """The oldest queued events, in queue order (seq)."""
        ...

    async def update_events(self, done: Sequence[str], retry: Sequence[EventRecord]) -> None:
        """Drop the events whose seq is in `done`; store `retry` (same seq: fewer targets, more attempts) in place,
        unless they were dropped meanwhile."""
        ...

    async def event_backlog(self) -> int:
        """How many events are queued."""
        ...

    async def close(self) -> None: ...


def check_condition(cond: Condition | None, current: ObjectManifest | None) -> None:
    """Raise PreconditionFailed unless `cond` holds against the current object."""
    if cond is None:
        return
    if cond.if_none_match_star and current is not None:
        raise PreconditionFailed("the key exists")
    if cond.if_match is not None:
        if current is None:
            raise PreconditionFailed("no current object to match")
        if cond.if_match != "*" and cond.if_match != current.etag:
            raise PreconditionFailed(f"etag is {current.etag}")


def check_delete_condition(cond: Condition | None, current: ObjectManifest | None) -> None:
    """A delete's condition: only an object that is there can fail it (a missing one is simply not deleted)."""
    if current is not None:
        check_condition(cond, current)
