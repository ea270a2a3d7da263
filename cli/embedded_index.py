"""`tessera server`'s index without `--index`: copies on the drives (metadata/replicated/on_drives.py), where
they are, what they are checked and migrated for at start, and the credentials and origin kept beside each copy.

Each copy lives in DRIVE/.tessera-system/replica on the first min(2m+1, drives) members of the set, in the
order the format records list them (so reordering drives changes nothing); credentials.json and origin.json
are written beside every copy and read back by majority.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cli import event_loop
from cli.addresses import StartupError
from gateway.accounts.credentials import Credentials, credentials_from_env, generate
from metadata.index import IndexUnavailable
from metadata.local.store import LocalIndex
from metadata.replicated.drive_copies import copy_count, open_copies
from metadata.replicated.migrate import migrate
from metadata.replicated.on_drives import EmbeddedIndex
from storage_node.drive_format import SYSTEM_DIR, AssembledSet, SetRefused, read_format

log = logging.getLogger(__name__)

COPY_DIR = "replica"  # a copy's directory in a drive's system directory
LEGACY_INDEX = "index"  # the single copy of before, in DRIVE1/.tessera-system (or the default layout's system)
CREDENTIALS, ORIGIN = "credentials.json", "origin.json"


@dataclass(frozen=True)
class Copies:
    dirs: list[Path | None]  # each copy's directory; None where its drive is missing
    members: list[str]  # the drive id each copy belongs on
    deployment: str
    legacy: Path | None  # the system directory of a single-copy index of before, if one may be there
    new: bool  # a new deployment: nothing on the drives predates this start

    @property
    def systems(self) -> list[Path]:
        return [d.parent for d in self.dirs if d is not None]


def has_copies(drives: list[Path]) -> bool:
    """Whether any of the drives holds an index copy (before they are assembled into a set)."""
    return any((d / SYSTEM_DIR / COPY_DIR).is_dir() for d in drives)


def plan(found: AssembledSet, m: int, legacy: Path | None) -> Copies:
    """Where the copies are: on the set's first members, by drive id, whatever the drives' order or paths."""
    by_id = {}
    for p in found.paths:
        fmt = read_format(p)
        if fmt is not None:
            by_id[fmt.id] = p
    members = found.format.set[: copy_count(m, len(found.format.set))]
    dirs = [by_id[d] / SYSTEM_DIR / COPY_DIR if d in by_id else None for d in members]
    return Copies(dirs, members, found.format.deployment, legacy, found.new)


def prepare(copies: Copies) -> None:
    """Before serving (once for all worker processes): check every copy (setting damaged ones aside), migrate a
    single-copy index of before, and refuse to start without a quorum of initialized copies."""
    event_loop.run(_prepare(copies))


async def _prepare(copies: Copies) -> None:
    for d in copies.dirs:
        if d is not None:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("index copy %s cannot be created: %s", d, exc.strerror or exc)
    index = EmbeddedIndex(await open_copies(copies.dirs, verify=True))
    try:
        legacy = copies.legacy / LEGACY_INDEX if copies.legacy is not None else None
        if copies.new:
            await index.mark_all_initialized()
        elif legacy is not None and (legacy / "data.mdb").exists():
            if index.ready == 0:
                await _migrate(index, legacy)
            _set_legacy_aside(legacy)
        try:
            index.require_quorum()
        except IndexUnavailable as exc:
            raise StartupError(
                f"{exc}: give back the drives holding them (DRIVE/{SYSTEM_DIR}/{COPY_DIR}), or start with"
                " --index DIR if the index lives elsewhere; nothing was deleted"
            ) from None
        damaged = [f"{c.name} ({c.why})" for c in index.copies if c.store is None]
        if damaged:
            log.warning("index copies not in use: %s", "; ".join(damaged))
    finally:
        await index.close()


async def _migrate(index: EmbeddedIndex, legacy: Path) -> None:
    source = LocalIndex.open(legacy)
    try:
        count, took = await migrate(source, index.copies, index.quorum)
    except IndexUnavailable as exc:
        raise StartupError(f"cannot move the index in {legacy} into copies on the drives: {exc}") from None
    finally:
        await source.close()
    await index.mark_all_initialized(took)
    log.info("index in %s moved into %d copies on the drives (%d records)", legacy, len(took), count)


def _set_legacy_aside(legacy: Path) -> None:
    aside = legacy.with_name(f"{LEGACY_INDEX}.migrated-{int(time.time())}")
    legacy.rename(aside)
    log.info("the single-copy index of before is kept as %s (remove it once satisfied)", aside)


async def open_index(copies: Copies, heal: bool, alone: bool) -> EmbeddedIndex:
    """The index over the copies prepare() checked; heal: run the rebuilding worker here (one process only);
    alone: no other process has the copies open (no `--workers`), so a damaged one may be replaced while serving."""
    renew = partial(_member, copies) if alone else None
    index = EmbeddedIndex(await open_copies(copies.dirs, verify=False), renew=renew, solo=alone)
    try:
        index.require_quorum()
    except IndexUnavailable as exc:
        await index.close()
        raise StartupError(str(exc)) from None
    if alone:
        await index.start_writers()
    index.start(heal)
    return index


def _member(copies: Copies, copy_dir: Path) -> bool:
    """Whether the drive of a copy's directory is (again) the member it belongs on: never write a copy on a
    foreign or not yet adopted drive."""
    drive = copy_dir.parent.parent
    try:
        fmt = read_format(drive)
    except SetRefused:
        return False
    member = copies.members[copies.dirs.index(copy_dir)]
    return fmt is not None and fmt.deployment == copies.deployment and fmt.id == member


# -- the credentials and the origin record, beside every copy


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    return doc if isinstance(doc, dict) else None


def _agreed(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The document most copies hold (they are written once and the same everywhere)."""
    if not docs:
        return None
    counts = Counter(json.dumps(d, sort_keys=True) for d in docs)
    return json.loads(counts.most_common(1)[0][0])  # type: ignore[no-any-return]


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Replace the file durably (temporary, fsync, rename), readable by its owner only; a failing drive is logged."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc.strerror or exc)
        tmp.unlink(missing_ok=True)


def _spread(name: str, copies: Copies, make: Any) -> dict[str, Any] | None:
    """make(the agreed document `name`, or None), written beside every copy that lacks or differs from it."""
    sources = [*([copies.legacy] if copies.legacy is not None else []), *copies.systems]
    found = {s: _read(s / name) for s in sources}
    doc = make(_agreed([d for d in found.values() if d is not None]))
    for s in copies.systems:
        if doc is not None and found.get(s) != doc:
            _write(s / name, doc)
    return doc  # type: ignore[no-any-return]


def system_files(copies: Copies, deployment: str) -> tuple[Credentials, float]:
    """The root credentials and the index's birth (the GC guard), agreed among the copies and written to all."""

    def origin(doc: dict[str, Any] | None) -> dict[str, Any]:
        if doc is None:
            # An index created with its drives, or one of before origin records, is as old as its data: 0.
            # Copies without any origin record left (never written by us): born now, so GC spares old data.
            old = copies.new or (copies.legacy is not None and copies.legacy.is_dir())
            return {"deployment": deployment, "created": 0.0 if old else time.time()}
        if doc.get("deployment") != deployment:
            raise StartupError(f"the index copies are of deployment {doc.get('deployment')}, not {deployment}")
        return doc

    from_env = credentials_from_env()  # wins when set; then none are generated (as root_credentials does)

    def credentials(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        if doc is not None and isinstance(doc.get("access_key"), str) and isinstance(doc.get("secret_key"), str):
            return doc
        if from_env is not None:
            return None
        creds = generate()
        return {"access_key": creds.access_key, "secret_key": creds.secret_key}

    created = float(_spread(ORIGIN, copies, origin)["created"])  # type: ignore[index]
    stored = _spread(CREDENTIALS, copies, credentials)
    if from_env is not None:
        return from_env, created
    assert stored is not None
    return Credentials(stored["access_key"], stored["secret_key"]), created
