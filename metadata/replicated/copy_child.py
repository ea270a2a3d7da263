"""An index copy's writer process (`python -m metadata.replicated.copy_child COPY_DIR INODE`), started by the
embedded server for each copy on the drives; why, and its protocol: metadata/replicated/copy_writer.py.

It reads whatever writes have arrived, merges them in one transaction (group commit: one fsync for all of them;
a failing write rolled back alone), answers each once durable, and reads again; at the end of its input it
exits. It imports little (LMDB, msgpack and the record format) and has no event loop: a child per copy.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from metadata.lmdb_open import inode_of, no_room, open_env, run_batch, too_long
from metadata.replica.packed import STORE_TABLES, merge_packed

_READ = 1 << 16


def describe(exc: BaseException, path: str) -> list[str]:
    """A failure as [kind, message], for the server to raise as what it was (copy_writer.rebuild)."""
    if isinstance(exc, lmdb.MapFullError) or (isinstance(exc, Exception) and no_room(exc, path)):
        return ["full", f"no room for the write in {path}: {exc}"]
    if isinstance(exc, lmdb.BadValsizeError):  # a refused argument, worded as in the server (lmdb_env)
        return ["value", str(too_long())]
    if isinstance(exc, ValueError):
        return ["value", str(exc)]
    if isinstance(exc, lmdb.Error):  # the drive's or the file's failure: DriveCopy tells which
        return [f"lmdb:{type(exc).__name__}", str(exc)]
    return ["error", f"{type(exc).__name__}: {exc}"]


def _require_copy(path: Path, inode: int) -> None:
    """Exit unless `path` holds the copy the server opened: a copy is only begun by the server (a drive wiped
    meanwhile is the server's to notice, set aside and rebuild)."""
    try:
        found: int | None = inode_of(path)
    except OSError:
        found = None
    if found != inode:
        sys.exit(f"{path}: not the index copy the server opened; not written here")


def serve(path: Path, inode: int) -> None:
    _require_copy(path, inode)  # before opening: opening an absent environment would begin one
    env, dbs = open_env(path, STORE_TABLES)
    where = str(path)

    unpacker = msgpack.Unpacker()
    try:
        _require_copy(path, inode)  # and after: the file opened is the one checked (wiped in between)
        while data := os.read(0, _READ):
            unpacker.feed(data)
            batch = list(unpacker)
            if not batch:
                continue
            jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [(merge_packed, (dbs, b[1])) for b in batch]
            try:
                outer, outcomes = run_batch(env, jobs)
                outer.commit()
            except Exception as exc:  # the batch did not become durable: none of it is acknowledged
                outcomes = [(False, exc)] * len(batch)
            answer = b"".join(
                msgpack.packb([b[0], ok, value if ok else describe(value, where)])
                for b, (ok, value) in zip(batch, outcomes, strict=True)
            )
            view = memoryview(answer)
            while view:  # blocking: the server always reads its end, and nothing else here waits meanwhile
                view = view[os.write(1, view) :]
    except BrokenPipeError:
        pass  # the server is gone (killed): what was committed stays, nobody waits for the answers
    finally:
        env.close()


def batch_scheduling() -> None:
    """Linux's SCHED_BATCH for this child: its fair share of the CPU as before, but its wake-up (a write arrived)
    no longer preempts the server, which then sends the rest of its turn's writes before the child runs; the
    child finds more writes per read and commits them together. Measured (docs/performance.md, "The writers
    batch-scheduled"): 4 KiB PUTs at 32 clients 1.15x, at 1 and 4 clients the same."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or refused: the default policy works, only less well
        pass


def main() -> None:
    # The server ends this child by closing its input, after its own last writes: a Ctrl-C or a stop signal
    # sent to the whole process group must not cut them off.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batch_scheduling()
    serve(Path(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
