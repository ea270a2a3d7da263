"""Checking a drive in use, and adopting an empty one into its member's place (blocking code).

A drive whose contents were wiped, or an empty filesystem mounted in its place, is taken back into use
while the process runs: its layout is made again and its identity (drive.json as read when the drive was
opened) is written back, so the set knows it as the member it replaces and repair fills it. Only an empty
directory is adopted. A path that is missing or cannot be read, a mount point no longer mounted, a drive of
another deployment, or a directory holding anything else stays offline, and nothing on it is touched.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage_node.drive import OFFLINE, OK, DriveUnavailable
from storage_node.drive_dir import (
    FRAGMENTS,
    IDENTITY,
    LOCK_FILE,
    TMP,
    fsync_dir,
    lock_drive,
    read_identity,
    write_identity,
)
from storage_node.drive_format import SYSTEM_DIR

# What an empty drive may hold: a new filesystem's lost+found, our lock file, empty layout directories,
# and an index copy of this deployment (one may be made there again before the drive is adopted).
_EMPTY_ENOUGH = frozenset({"lost+found", LOCK_FILE, TMP, FRAGMENTS, SYSTEM_DIR})
ORIGIN = "origin.json"  # in a system directory: {"deployment": ...} (cli/server.py writes it)


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str  # OK | OFFLINE
    detail: str = ""  # why it is offline (or, adopted, what was made again)
    adopted: bool = False  # this check formatted the drive into its member's place (or remade its fragments/)


def was_mounted(root: Path) -> bool:
    """Whether the drive directory is a mount point now (checked at open: see check_drive)."""
    return os.path.ismount(root)


def check_drive(root: Path, identity: dict[str, Any], mounted: bool, adopt: bool) -> Verdict:
    """The drive's state now; an empty drive is adopted when `adopt` (one process of those sharing a
    drive adopts it). `mounted`: the directory was a mount point when opened, so an empty directory
    that no longer is one is an unmounted disk, not a new one."""
    try:
        return _check(root, identity, mounted, adopt)
    except DriveUnavailable as exc:  # another process holds the new lock file
        return Verdict(OFFLINE, str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(root) else ""
        return Verdict(OFFLINE, f"{root}: {exc.strerror or exc}{where}")


def _check(root: Path, identity: dict[str, Any], mounted: bool, adopt: bool) -> Verdict:
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        return Verdict(OFFLINE, f"{root} is missing")
    if not stat.S_ISDIR(mode):
        return Verdict(OFFLINE, f"{root} is not a directory")
    if mounted and not os.path.ismount(root):
        return Verdict(OFFLINE, f"{root} is no longer a mount point (its disk unmounted?)")
    try:
        found: dict[str, Any] | None = read_identity(root)
    except FileNotFoundError:
        found = None
    except ValueError as exc:
        return Verdict(OFFLINE, f"{root / IDENTITY} is not ours to read ({exc}): not adopted")
    deployment = identity.get("deployment", "")
    if found is not None:
        if found.get("id") != identity.get("id") or found.get("deployment", "") != deployment:
            theirs = f"drive {found.get('id')}"
            if found.get("deployment"):
                theirs += f" of deployment {found['deployment']}"
            return Verdict(OFFLINE, f"{root} holds {theirs}, not this one: not adopted")
        if _layout(root):  # ours, with its fragments gone: like an adoption, repair is to fill it
            return Verdict(OK, f"{root}: its fragments directory was gone: made again, repair will fill it", True)
        return Verdict(OK)
    stray = _stray(root, deployment)
    if stray:
        return Verdict(OFFLINE, f"{root} holds {stray} but no drive identity: not adopted")
    if not adopt:
        return Verdict(OFFLINE, f"{root} is empty: waiting to be adopted")
    lock_drive(root, again=True)  # the wipe took the lock file; a process that took a new one wins
    _layout(root)
    write_identity(root, identity)
    return Verdict(OK, adopted=True)


def _layout(root: Path) -> bool:
    """Make the layout's directories that are missing; True when the fragments directory was."""
    missing = [d for d in (FRAGMENTS, TMP) if not (root / d).is_dir()]
    for d in missing:
        (root / d).mkdir()
    if missing:
        fsync_dir(root)
    return FRAGMENTS in missing


def _stray(root: Path, deployment: str) -> str:
    """The first thing in the directory that an empty drive would not hold ("" when none)."""
    with os.scandir(root) as entries:
        for e in entries:
            if e.name not in _EMPTY_ENOUGH:
                return e.name
            if e.name == FRAGMENTS and _holds_fragments(Path(e.path)):
                return f"{FRAGMENTS}/ with fragments in it"
            if e.name == SYSTEM_DIR and not _system_of(Path(e.path), deployment):
                return f"{SYSTEM_DIR}/ of another deployment"
    return ""


def _holds_fragments(fragments: Path) -> bool:
    with os.scandir(fragments) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                return True
            with os.scandir(shard.path) as files:
                if any(True for _ in files):
                    return True
    return False


def _system_of(system: Path, deployment: str) -> bool:
    """Whether an index directory may be this deployment's: it says so, or does not say yet."""
    if not deployment:
        return False  # a cluster node's drives hold no index
    try:
        origin = json.loads((system / ORIGIN).read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return isinstance(origin, dict) and origin.get("deployment") == deployment
