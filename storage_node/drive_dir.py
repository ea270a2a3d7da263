"""A drive's directory: its layout, its identity, and making it ready for use (blocking code).

root/drive.json                     {"id": <uuid4 hex>}, the drive's stable identity
root/fragments/<vv>/<fid.name>      complete fragments; vv = first two hex digits of the version
root/tmp/                           fragments being written; emptied on open
root/tessera.lock                   flock-ed by the process using the drive; holds its PID
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from storage_node.drive import DriveUnavailable, FragmentId

_DRIVE_ID_RE = re.compile(r"[0-9a-f]{32}")


IDENTITY = "drive.json"
FRAGMENTS = "fragments"
TMP = "tmp"
LOCK_FILE = "tessera.lock"

_held: dict[Path, int] = {}  # drive root -> lock fd, held for the life of the process (and its forks)


def shard_name(fid: FragmentId) -> str:
    """The directory under fragments/ that holds the fragment."""
    return fid.version[:2]


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a rename, a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_drive(root: Path, clear_tmp: bool = True) -> str:
    """Make root a usable drive (blocking); return its id. Raises DriveUnavailable with a one-line reason."""
    try:
        return _prepare(root, clear_tmp)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(root) else ""
        raise DriveUnavailable(f"cannot use {root} as a drive: {e.strerror or e}{where}") from e


def _prepare(root: Path, clear_tmp: bool) -> str:
    for d in (root, root / FRAGMENTS, root / TMP):
        d.mkdir(parents=True, exist_ok=True)
    if clear_tmp:  # keep_tmp is a forked worker: its first process holds the lock
        lock_drive(root)
    fsync_dir(root)
    # Anything in tmp/ is a put that never committed (crash or kill): it was never visible.
    for entry in os.scandir(root / TMP) if clear_tmp else ():
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    # Prove the directory takes writes and fsyncs now, not at the first client PUT.
    probe = root / TMP / f"probe.{uuid.uuid4().hex}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b"probe")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(probe)
    return _load_or_create_id(root)


def _load_or_create_id(root: Path) -> str:
    path = root / IDENTITY
    try:
        text = path.read_text()
    except FileNotFoundError:
        drive_id = uuid.uuid4().hex
        write_identity(root, {"id": drive_id})
        return drive_id
    # Never replace an identity we cannot read: the cluster knows the drive by it.
    try:
        drive_id = json.loads(text)["id"]
    except (ValueError, KeyError, TypeError):
        drive_id = None
    if not isinstance(drive_id, str) or not _DRIVE_ID_RE.fullmatch(drive_id):
        raise DriveUnavailable(f"cannot use {root} as a drive: {path} does not hold a valid drive id")
    return drive_id


def write_identity(root: Path, record: dict[str, Any]) -> None:
    """Replace drive.json atomically and durably (temporary file in tmp/, fsync, rename)."""
    (root / TMP).mkdir(parents=True, exist_ok=True)
    tmp = root / TMP / f"{IDENTITY}.{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, root / IDENTITY)
    fsync_dir(root)


def read_identity(root: Path) -> dict[str, Any]:
    """The drive's drive.json as it stands (raises OSError, ValueError): what adoption writes back."""
    raw = json.loads((root / IDENTITY).read_text())
    if not isinstance(raw, dict):
        raise ValueError("drive.json is not an object")
    return raw


def lock_drive(root: Path, again: bool = False) -> None:
    """Hold the drive for this process (and its forked workers) until it exits; the lock file names the PID.
    again: the lock file was deleted with the drive's contents (a wipe): take a new one, or fail.
    Raises DriveUnavailable naming the process that holds it."""
    key = root.resolve()
    if key in _held and (not again or _same_file(_held[key], root / LOCK_FILE)):
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DriveUnavailable(f"drive {root} is in use by process {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    old = _held.get(key)
    _held[key] = fd
    if old is not None:
        os.close(old)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
