"""What a write does to a key's versions, in either of the two layouts the Index implementations keep them in.

Both hold a key's versions, delete markers included, in the versions table under keys.version_composite,
newest first, and at most one in the objects table; they differ in which:

- Current in place (LocalIndex): the objects table holds the key's current version, the versions table its
  other ones. A key with a current version has it as its newest. An overwrite moves the version it replaces
  into the versions table (plan_put, plan_delete_version).
- Kept apart (ReplicatedIndex, docs/versioning.md): a version with an id is written once, to the versions
  table, and stays there; the objects table holds the null version, if any (or, in a store written before
  this layout, the version that was current then). The key's latest version is the newest of them all
  (newest); its current one is the latest unless that is a delete marker. An overwrite in a versioned
  bucket writes one entry, as in an unversioned one (plan_put_apart, plan_delete_apart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from metadata import keys
from metadata.records import ObjectManifest, PartRecord


def version_composite(man: ObjectManifest) -> bytes:
    """Where `man` sits in the versions table."""
    return keys.version_composite(man.bucket, man.key, man.s3_version_id, man.last_modified)


def lookup_composite(bucket: str, key: str, s3_version_id: str) -> bytes | None:
    """Where the version with this (non-null) id sits, found from the id alone; None for the null version,
    whose place depends on its time: look for it among the key's versions."""
    return None if not s3_version_id else keys.version_composite(bucket, key, s3_version_id, 0.0)


def matches(man: ObjectManifest | None, s3_version_id: str) -> bool:
    """Whether `man` is the version with this S3 id ("" for the null version)."""
    return man is not None and man.s3_version_id == s3_version_id


@dataclass(slots=True)
class Plan:
    """The writes of one versioned operation."""

    current: ObjectManifest | None  # what the objects table holds for the key afterwards (in place: the current)
    keep: list[ObjectManifest] = field(default_factory=list)  # to put in the versions table
    drop: list[ObjectManifest] = field(default_factory=list)  # to remove from the versions table
    freed: ObjectManifest | None = None  # the version whose data nothing references any more


def newest(*versions: ObjectManifest | None) -> ObjectManifest | None:
    """The newest of the versions given (None among them: none there); None if there is none."""
    present = [m for m in versions if m is not None]
    return (min(present, key=order) if len(present) > 1 else present[0]) if present else None


def plan_put_apart(new: ObjectManifest, held: ObjectManifest | None, null_elsewhere: ObjectManifest | None) -> Plan:
    """A write of `new` (a version or a delete marker) where versions are kept apart. `held` is the key's entry
    in the objects table; `null_elsewhere` its null version in the versions table (a store from before), looked
    for only when `new` is null and `held` is not.

    A version with an id is one more entry in the versions table, whatever its stamp: its place among the
    key's versions says whether it is the latest. A null one takes the objects table's entry, replacing the
    null version wherever it is (moving a version with an id held there to the versions table), unless the
    null version there is newer (a racing write stamped later took effect first): then `new` is dropped."""
    if new.s3_version_id:
        return Plan(current=held, keep=[new])
    rival = held if held is not None and not held.s3_version_id else null_elsewhere
    if rival is not None and order(rival) < order(new):
        return Plan(current=held, freed=new)
    plan = Plan(current=new, freed=rival)
    if held is not None and held.s3_version_id:
        plan.keep.append(held)
    if null_elsewhere is not None and rival is null_elsewhere:
        plan.drop.append(null_elsewhere)
    return plan


def plan_delete_apart(target: ObjectManifest, held: ObjectManifest | None) -> Plan:
    """Removing `target` for good where versions are kept apart: its entry goes, wherever it is, and nothing
    moves (the newest left is the latest by its place)."""
    if held is not None and held.version_id == target.version_id:
        return Plan(current=None, freed=target)
    return Plan(current=held, drop=[target], freed=target)


def plan_put(new: ObjectManifest, current: ObjectManifest | None, null_noncurrent: ObjectManifest | None) -> Plan:
    """A write of `new` (a version or a delete marker) in a bucket with versioning configured, current in place.

    `null_noncurrent` is the key's null version in the versions table, if `new` is null and there is one:
    a null write replaces the null version wherever it is (there is at most one).
    """
    if current is not None and order(new) > order(current):
        return _plan_late(new, current, null_noncurrent)
    plan = Plan(current=None if new.delete_marker else new)
    if new.delete_marker:
        plan.keep.append(new)
    if current is not None:
        if not new.s3_version_id and not current.s3_version_id:
            plan.freed = current
        else:
            plan.keep.append(current)
    if null_noncurrent is not None and not new.s3_version_id:
        plan.drop.append(null_noncurrent)
        plan.freed = null_noncurrent
    return plan


def rewritten(
    versions: Iterable[ObjectManifest], version_id: str, change: Callable[[ObjectManifest], bool]
) -> ObjectManifest | None:
    """A rewrite in place (a repaired part, new tags) of a noncurrent version: the version with internal id
    `version_id` among `versions` once `change` has changed it; None if it is gone or change says no."""
    for man in versions:
        if man.version_id == version_id:
            return man if change(man) else None
    return None


def with_part(part: PartRecord) -> Callable[[ObjectManifest], bool]:
    """update_part's change: `part` in place of the version's part of the same number and data id."""

    def change(man: ObjectManifest) -> bool:
        for i, p in enumerate(man.parts):
            if p.number == part.number and p.data_id == part.data_id:
                man.parts[i] = part
                return True
        return False

    return change


def order(man: ObjectManifest) -> bytes:
    """A version's place among its key's versions: smaller is newer."""
    return keys.version_suffix(man.s3_version_id, man.last_modified)


def _plan_late(new: ObjectManifest, current: ObjectManifest, null_noncurrent: ObjectManifest | None) -> Plan:
    """A write stamped before the current version, whose (racing) write took effect first: the later stamp
    stays current, as the newest write wins everywhere in the index, and `new` takes its place among the older
    versions (a null one only if it is the newest null version)."""
    plan = Plan(current=current)
    if not new.s3_version_id:
        rival = current if not current.s3_version_id else null_noncurrent
        if rival is not None and order(rival) < order(new):
            plan.freed = new
            return plan
        if rival is not None:
            plan.drop.append(rival)
            plan.freed = rival
    plan.keep.append(new)
    return plan


def plan_delete_version(
    target: ObjectManifest, current: ObjectManifest | None, newest_others: list[ObjectManifest]
) -> Plan:
    """Removing `target` for good, current in place. `newest_others` are the key's versions-table entries newest
    first (the first two suffice), which may include target: the newest left becomes current unless it is a
    marker."""
    is_current = current is not None and current.version_id == target.version_id
    plan = Plan(current=None if is_current else current, freed=target)
    left = [m for m in newest_others if m.version_id != target.version_id]
    if not is_current:
        plan.drop.append(target)
    if plan.current is None and left and not left[0].delete_marker:
        plan.current = left[0]
        plan.drop.append(left[0])
    return plan
