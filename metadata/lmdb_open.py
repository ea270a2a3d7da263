"""Opening an LMDB environment with our durability settings, and running a batch of writes in one transaction:
the part of metadata/lmdb_env.py that needs no event loop (an index copy's writer process runs on it alone,
metadata/replicated/copy_child.py)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lmdb

MAP_SIZE = 1 << 34  # the most a database may grow to (address space, not disk, is reserved)
MAX_DBS = 32  # named databases, with room for tables still to come


def open_env(
    path: Path, names: Iterable[str], map_size: int = MAP_SIZE, dupsort: Iterable[str] = ()
) -> tuple[lmdb.Environment, dict[str, Any]]:
    """Open (creating if needed) the environment in directory `path` and its named databases."""
    path.mkdir(parents=True, exist_ok=True)
    # sync/metasync on and no writemap: never trade durability of the only copy for speed.
    env = lmdb.open(str(path), map_size=map_size, max_dbs=MAX_DBS, sync=True, metasync=True, writemap=False)
    # Several processes may share an environment: free reader slots that a killed one left behind.
    env.reader_check()
    dup = set(dupsort)
    with env.begin(write=True) as txn:
        dbs = {name: env.open_db(name.encode(), txn=txn, dupsort=name in dup) for name in names}
    return env, dbs


def inode_of(path: Path) -> int:
    """The inode of the environment's data file in directory `path`: which file a process has open."""
    return os.stat(path / "data.mdb").st_ino


def too_long() -> ValueError:
    """What a key or value LMDB refuses for its size is told as (a refused argument, never the drive's fault)."""
    return ValueError("a name or id is empty or too long for the index")


# How LMDB words a write that found no room on disk (it raises DiskError with no errno attached).
_NO_SPACE = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT))
_EIO = os.strerror(errno.EIO)
# LMDB reports a short write (what a full filesystem gives) as EIO: with less room than this left
# on the filesystem, an EIO is taken to be that.
ALMOST_FULL = 1 << 20


def no_room(exc: Exception, path: str | None) -> bool:
    if not isinstance(exc, lmdb.Error):
        return False
    if any(m in str(exc) for m in _NO_SPACE):
        return True
    if _EIO not in str(exc) or path is None:
        return False
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < ALMOST_FULL


def run_batch(
    env: lmdb.Environment,
    jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    error: Callable[[Exception], Exception] = lambda exc: exc,
) -> tuple[lmdb.Transaction, list[tuple[bool, Any]]]:
    """Run the writes fn(txn, *args) in one new transaction, returned uncommitted with (ok, result or exception)
    per write. All at once first; only if one fails, again each nested in the outer transaction, so that
    the failing one is rolled back alone (a nested transaction costs two more calls into LMDB per write,
    each a hand-over of the GIL). A write is a function of the transaction's state and its arguments, so
    running it again gives what it gave the first time. error: what a failed write's exception is told as."""
    outer = env.begin(write=True)
    try:
        return outer, [(True, fn(outer, *args)) for fn, args in jobs]
    except Exception:
        outer.abort()
    outer = env.begin(write=True)
    outcomes: list[tuple[bool, Any]] = []
    try:
        for fn, args in jobs:
            try:
                with env.begin(write=True, parent=outer) as txn:
                    outcomes.append((True, fn(txn, *args)))
            except Exception as exc:
                outcomes.append((False, error(exc)))
    except BaseException:
        outer.abort()
        raise
    return outer, outcomes
