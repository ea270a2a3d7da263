"""A local drive set's format records and how a set is assembled from them (blocking code).

Every drive of an embedded deployment carries, in drive.json, the deployment's identity as MinIO's
format.json does: the drives are found by what they hold, not by their order or path.

    {"id": <this drive>, "deployment": <uuid4 hex>, "ec": "4+2",
     "set": [<drive id of member 0>, ...], "system": <drive id holding the index and credentials, or "">}

A drive id names a member of the set: manifests place fragments by drive id, so an empty drive adopted in
place of a lost member takes over that member's id and its fragments are rebuilt there by repair.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from storage_node.drive import DriveUnavailable
from storage_node.drive_dir import FRAGMENTS, IDENTITY, lock_drive, write_identity

FORMAT_FILE = IDENTITY
SYSTEM_DIR = ".tessera-system"


class SetRefused(Exception):
    """The given drives cannot be started as one set; the message is one line naming why."""


@dataclass(frozen=True)
class DriveFormat:
    id: str
    deployment: str = ""  # "" for a drive formatted before deployments existed (only {"id"})
    ec: str = ""
    set: list[str] = field(default_factory=list)
    system: str = ""


def read_format(root: Path) -> DriveFormat | None:
    """The drive's format record, or None when it has none."""
    try:
        raw = json.loads((root / FORMAT_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SetRefused(f"cannot read {root / FORMAT_FILE}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise SetRefused(f"{root / FORMAT_FILE} does not hold a valid drive id")
    return DriveFormat(
        raw["id"], raw.get("deployment", ""), raw.get("ec", ""), list(raw.get("set", [])), raw.get("system", "")
    )


def write_format(root: Path, fmt: DriveFormat) -> None:
    """Replace the record atomically and durably (temporary file, fsync, rename)."""
    write_identity(root, asdict(fmt))


def holds_data(root: Path) -> bool:
    """Whether the directory holds anything of Tessera's: a format record, fragments or a system directory."""
    if (root / FORMAT_FILE).exists() or (root / SYSTEM_DIR).exists():
        return True
    try:
        return any(any(os.scandir(shard.path)) for shard in os.scandir(root / FRAGMENTS) if shard.is_dir())
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class AssembledSet:
    paths: list[Path]  # in set order: member i first... as the format records list them
    format: DriveFormat  # the set's record (its "id" is that of the first member)
    system: Path | None  # the drive directory holding the system directory, None when it lives elsewhere
    new: bool = False  # formatted by this start over empty drives: nothing on them predates this start
    adopted: tuple[Path, ...] = ()  # empty drives this start adopted into lost members' places: repair fills them


def assemble(paths: list[Path], ec: str, ec_given: bool, external_system: bool) -> AssembledSet:
    """Recognise the drives, refuse what cannot be one set, adopt empty drives into lost members' places,
    and format a new deployment only when no drive holds anything. Nothing is written before every check
    has passed. external_system: the index lives outside the drives (`--index`, or the default layout)."""
    for p in paths:
        try:
            lock_drive(p)
        except OSError as exc:
            raise SetRefused(f"cannot use {p} as a drive: {exc.strerror or exc}") from None
        except DriveUnavailable as exc:
            raise SetRefused(str(exc)) from None
    formats = {p: read_format(p) for p in paths}
    if ec_given or not any(f is not None and f.deployment for f in formats.values()):
        _enough(paths, ec)
    deployments = sorted({f.deployment for f in formats.values() if f is not None and f.deployment})
    if len(deployments) > 1:
        raise SetRefused(f"the drives belong to different deployments ({', '.join(deployments)})")
    if not deployments:
        return _format_new(paths, formats, ec, external_system)
    deployment = deployments[0]
    members = {p: f for p, f in formats.items() if f is not None and f.deployment == deployment}
    record = next(iter(members.values()))
    foreign = [p for p in paths if p not in members and holds_data(p)]
    if foreign:
        raise SetRefused(f"{foreign[0]} holds data that is not of this deployment ({deployment})")
    if ec_given and ec != record.ec:
        raise SetRefused(f"the drives were formatted for EC {record.ec}, not {ec}")
    _enough(paths, record.ec)
    k = int(record.ec.split("+")[0])
    by_id: dict[str, Path] = {}
    for p, f in members.items():
        if f.id in by_id:
            raise SetRefused(f"{by_id[f.id]} and {p} carry the same drive id (was one copied from another?)")
        if f.id not in record.set:
            raise SetRefused(f"{p} is no longer a member of deployment {deployment} (it was replaced)")
        by_id[f.id] = p
    if len(by_id) < k:
        raise SetRefused(f"only {len(by_id)} drives of deployment {deployment} are here; EC {record.ec} needs {k}")
    missing = [d for d in record.set if d not in by_id]
    empty = [p for p in paths if p not in members]
    if len(empty) > len(missing):
        raise SetRefused(f"deployment {deployment} has {len(record.set)} drives, but {len(paths)} were given")
    if record.system and record.system not in by_id and not external_system:
        raise SetRefused(
            f"the drive holding the index and credentials (drive {record.system}) is missing;"
            " give it back, or start with --index DIR"
        )
    system_dir = by_id[record.system] / SYSTEM_DIR if record.system in by_id else None
    if system_dir is not None and not external_system and not system_dir.is_dir():
        raise SetRefused(f"{system_dir} (the index and credentials) is missing; restore it, or start with --index DIR")
    adopted = []
    for p, member_id in zip(empty, missing, strict=False):  # adopt: the empty drive becomes the lost member
        write_format(p, DriveFormat(member_id, deployment, record.ec, record.set, record.system))
        by_id[member_id] = p
        adopted.append(p)
    ordered = [by_id[d] for d in record.set if d in by_id]
    return AssembledSet(ordered, record, by_id.get(record.system), adopted=tuple(adopted))


def _enough(paths: list[Path], ec: str) -> None:
    k, m = (int(n) for n in ec.split("+"))
    if len(paths) < k + m:
        raise SetRefused(f"EC {ec} needs {k + m} drives, but {len(paths)} were given")


def _format_new(
    paths: list[Path], formats: dict[Path, DriveFormat | None], ec: str, external_system: bool
) -> AssembledSet:
    """A new deployment over empty drives, or over drives of before format records (only {"id"}), adopted
    with their ids and their system directory where it is (the first drive's, before)."""
    legacy = [p for p, f in formats.items() if f is not None]
    stray = [p for p in paths if p not in legacy and holds_data(p)]
    if stray:
        raise SetRefused(f"{stray[0]} holds Tessera data but no drive identity: refusing to format over it")
    system = next((p for p in paths if (p / SYSTEM_DIR).exists()), None)
    if legacy and system is None and not external_system:
        raise SetRefused(f"{legacy[0]} holds Tessera data, but no given drive holds its index and credentials")
    if system is None and not external_system:
        system = paths[0]
    ids = [f.id if (f := formats[p]) is not None else uuid.uuid4().hex for p in paths]
    if len(set(ids)) != len(ids):
        raise SetRefused("two drive directories carry the same drive id (was one copied from another?)")
    system_id = ids[paths.index(system)] if system is not None else ""
    record = DriveFormat(ids[0], uuid.uuid4().hex, ec, ids, system_id)
    for p, drive_id in zip(paths, ids, strict=True):
        (p / FRAGMENTS).mkdir(parents=True, exist_ok=True)
        write_format(p, DriveFormat(drive_id, record.deployment, ec, ids, system_id))
    return AssembledSet(list(paths), record, system, new=not legacy)
