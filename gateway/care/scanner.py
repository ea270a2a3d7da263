"""One walk over the index and every drive: parts below full redundancy, and fragments nothing references.

Health here comes from drive listings (one request per drive), not from asking for each fragment, so
a scan of many objects costs a few listings plus the index walk. A fragment counts as present when its
drive lists it; bit rot is the scrubber's to find.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from gateway.objects.drive_set import DriveSet
from gateway.objects.placement import NodeSlot
from metadata.index import Index, NoSuchBucket, NoSuchUpload
from metadata.records import ObjectManifest, PartRecord, RepairEntry
from storage_node.drive import DriveError, FragmentId

log = logging.getLogger(__name__)


async def stored_parts(index: Index) -> AsyncIterator[tuple[ObjectManifest, PartRecord]]:
    """Every part that lives on drives (inline parts are in the manifest) of every version of every object:
    the current ones, and in buckets whose versioning was ever configured the noncurrent ones too."""
    for bucket in await index.list_buckets():
        try:
            versions = bucket_versions(index, bucket.name) if bucket.versioning else current_objects(index, bucket.name)
            async for man in versions:
                for part in man.parts:
                    if part.inline is None and part.placement:
                        yield man, part
        except NoSuchBucket:
            continue


async def current_objects(index: Index, bucket: str) -> AsyncIterator[ObjectManifest]:
    after = ""
    while True:
        page = await index.list_objects(bucket, start_after=after, max_keys=1000)
        for man in page.objects:
            yield man
        if not page.truncated or not page.objects:
            break
        after = page.objects[-1].key


async def bucket_versions(index: Index, bucket: str, prefix: str = "") -> AsyncIterator[ObjectManifest]:
    """Every version and delete marker under prefix, by key then newest first."""
    key_marker = version_marker = ""
    while True:
        page = await index.list_versions(bucket, prefix, key_marker, version_marker, max_keys=1000)
        for entry in page.versions:
            yield entry.manifest
        if not page.truncated or not page.versions:
            break
        key_marker, version_marker = page.next_key_marker, page.next_version_id_marker


async def key_versions(index: Index, bucket: str, key: str) -> AsyncIterator[ObjectManifest]:
    """The versions of one key (its current one first), in a bucket whose versioning was ever configured."""
    async for man in bucket_versions(index, bucket, prefix=key):
        if man.key != key:
            break  # a key's versions come before every longer key that starts with it
        yield man


async def upload_parts(index: Index) -> AsyncIterator[tuple[str, float, PartRecord]]:
    """(upload id, initiated, part) for every part of every multipart upload in progress."""
    for bucket in await index.list_buckets():
        key_marker = id_marker = ""
        while True:
            try:
                page = await index.list_uploads(bucket.name, key_marker=key_marker, upload_id_marker=id_marker)
            except NoSuchBucket:
                break
            for up in page.uploads:
                marker = 0
                while True:
                    try:
                        parts = await index.list_parts(up.upload_id, marker=marker)
                    except NoSuchUpload:
                        break
                    for p in parts.parts:
                        yield up.upload_id, up.initiated, p
                    if not parts.truncated:
                        break
                    marker = parts.next_marker
            if not page.truncated:
                break
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker


@dataclass(slots=True)
class Listing:
    """What the live drives hold: (drive id, fragment name) -> (size, mtime)."""

    present: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # drives whose listing completed
    started: float = field(default_factory=time.time)  # parts written since are not in the listing
    node_of: dict[str, NodeSlot] = field(default_factory=dict)  # membership as it was then: drive -> node
    silent: dict[str, float] = field(default_factory=dict)  # and how long each down node had been silent


async def list_drives(drives: DriveSet) -> Listing:
    out = Listing(node_of={d: s for s in drives.all_slots() for d in s.drive_ids}, silent=drives.silent_for())
    for drive_id in sorted(out.node_of):
        drive = drives.drive(drive_id)
        if drive is None:
            continue
        try:
            async for info in drive.list():
                out.present[(drive_id, info.fid.name)] = (info.size, info.mtime)
        except DriveError as exc:  # a drive that cannot list is neither healthy nor collectable this time
            log.warning("scan: could not list drive %s: %r", drive_id, exc)
            continue
        out.listed.add(drive_id)
    return out


def lost_fragments(
    part: PartRecord, listing: Listing, node_grace: float, leaving: frozenset[str] = frozenset()
) -> tuple[set[int], int]:
    """(fragments to rebuild, fragments healthy now) of a part, judged from the listing.

    A fragment on a node that is down counts as lost only once the node has been silent longer than
    node_grace (it is likely to come back with its data); one on a draining node is to move.
    """
    lost, healthy = set(), 0
    for i, drive_id in enumerate(part.placement):
        slot = listing.node_of.get(drive_id)
        name = FragmentId(part.data_id, part.number, i).name
        if slot is None:  # no node has this drive any more
            lost.add(i)
        elif drive_id in listing.listed:
            if (drive_id, name) in listing.present:
                healthy += 1
                if slot.node_id in leaving:
                    lost.add(i)
            else:
                lost.add(i)
        elif listing.silent.get(slot.node_id, 0.0) > node_grace or i in part.missed:
            lost.add(i)
    return lost, healthy


@dataclass(slots=True)
class ScanResult:
    parts: int = 0  # parts on drives looked at
    degraded: list[RepairEntry] = field(default_factory=list)  # one entry per lost fragment
    orphans: list[tuple[str, FragmentId, int]] = field(default_factory=list)  # (drive, fragment, size) to collect
    expired_uploads: list[str] = field(default_factory=list)
    on_node: int = 0  # with only_node: fragments of current objects still placed on that node
    node_leftovers: list[tuple[str, FragmentId, int]] = field(default_factory=list)  # unreferenced, any age
    seconds: float = 0.0


async def scan(
    index: Index,
    drives: DriveSet,
    *,
    node_grace: float,
    gc_grace: float,
    upload_expiry: float,
    gc_not_before: float = 0.0,
    reason: str = "scan",
    only_node: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Walk everything once. Orphans are fragments on a listed drive that no version of an object nor upload
    part places there and that are older than gc_grace (younger ones may belong to a write or repair
    still in flight), and written after gc_not_before (an index younger than a fragment cannot prove that
    nothing references it: it may be a new index over old data). With only_node, report just the fragments
    held by that node (a drain)."""
    started = time.monotonic()
    listing = await list_drives(drives)
    leaving = drives.leaving() | ({only_node} if only_node else frozenset())
    node_drives = {d for s in drives.all_slots() if s.node_id == only_node for d in s.drive_ids}
    referenced: set[tuple[str, str]] = set()
    out = ScanResult()
    now = time.time()
    # Uploads before objects: an upload completed during the walk is then seen as one or the other.
    async for upload_id, initiated, part in upload_parts(index):
        for i, d in enumerate(part.placement):
            referenced.add((d, FragmentId(part.data_id, part.number, i).name))
        if now - initiated > upload_expiry and upload_id not in out.expired_uploads:
            out.expired_uploads.append(upload_id)
    async for man, part in stored_parts(index):
        out.parts += 1
        if progress:
            progress(out.parts)
        for i, d in enumerate(part.placement):
            referenced.add((d, FragmentId(part.data_id, part.number, i).name))
        if only_node is not None:
            here = sum(d in node_drives for d in part.placement)
            if not here:
                continue
            out.on_node += here
        if part.last_modified >= listing.started:
            continue  # written while the drives were listed: not judged by a listing that predates it
        lost, healthy = lost_fragments(part, listing, node_grace, leaving)
        for i in sorted(lost):
            out.degraded.append(
                RepairEntry(healthy, part.data_id, part.number, i, man.bucket, man.key, reason, part.placement[i], now)
            )
    for (drive_id, name), (size, mtime) in listing.present.items():
        if (drive_id, name) in referenced:
            continue
        if now - mtime > gc_grace and mtime >= gc_not_before:
            out.orphans.append((drive_id, FragmentId.parse(name), size))
        elif drive_id in node_drives:
            out.node_leftovers.append((drive_id, FragmentId.parse(name), size))
    out.seconds = time.monotonic() - started
    return out
