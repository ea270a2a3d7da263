"""Drives recognised by identity: any order, empty replacements adopted, foreign drives and a second process
refused, and never a fresh store over old data. Real `tessera server` processes, real boto3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.launch import tessera_command
from tests.server_process import CLEAN_ENV, assert_one_line_error, run_server
from tests.store_process import Store


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Store, dict[str, bytes]]]:
    """A stopped store holding inline and erasure-coded objects."""
    store = Store(tmp_path)
    store.start()
    objects = store.fill()
    store.stop()
    yield store, objects
    store.stop()


def _replace_with_empty(drive: Path) -> None:
    drive.rename(drive.with_name(drive.name + "-gone"))
    drive.mkdir()


def test_reordered_drives_open_the_same_store(filled: tuple[Store, dict[str, bytes]]) -> None:
    store, objects = filled
    creds = store.creds
    before = store.fragments()
    store.start(store.drives[1:] + store.drives[:1])
    assert store.creds == creds
    store.read_back(objects)
    store.stop()
    assert store.fragments() == before


def test_first_drive_replaced_by_an_empty_one_keeps_the_store(filled: tuple[Store, dict[str, bytes]]) -> None:
    """No drive is special: the index and credentials have copies on others (tests/test_embedded_index.py)."""
    store, objects = filled
    creds = store.creds
    _replace_with_empty(store.drives[0])
    store.start()
    assert store.creds == creds
    store.read_back(objects)


def test_empty_drives_are_adopted_and_repaired(filled: tuple[Store, dict[str, bytes]], tmp_path: Path) -> None:
    store, objects = filled
    _replace_with_empty(store.drives[2])
    run = store.start()
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "admin", "--endpoint", run.endpoint, "repair", "--wait"],
        env={**os.environ, **dict(kv.split("=", 1) for kv in store.creds.split())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert list((store.drives[2] / "fragments").rglob("*.*.*"))  # rebuilt onto the adopted drive
    store.stop()
    # Redundancy is whole again: a second drive can go (and any other as well, with the adopted one holding its share).
    _replace_with_empty(store.drives[3])
    shutil.rmtree(store.drives[4] / "fragments")
    store.start()
    store.read_back(objects)


def test_drives_replaced_before_a_start_show_as_adopted_and_are_refilled_without_a_command(
    filled: tuple[Store, dict[str, bytes]],
) -> None:
    """Drives adopted as the server starts count as adopted, as those adopted while it serves do: `admin status`
    says so (until refilled), and a scan for what they lack runs at once, not at the next hourly scan."""
    store, objects = filled
    replaced = [store.drives[1], store.drives[4]]
    for d in replaced:
        _replace_with_empty(d)
    store.start()
    drives = {d["path"]: d for n in store.status()["nodes"] for d in n["drives"]}
    for d in store.drives:
        doc = drives[str(d)]
        if d in replaced:
            assert doc["adopted"] > 0 and doc["state"] in ("adopted, rebuilding", "ok"), doc
        else:
            assert doc["adopted"] == 0 and doc["state"] == "ok", doc

    def settled() -> bool:
        doc = store.status()
        states = {d["path"]: d["state"] for n in doc["nodes"] for d in n["drives"]}
        copies = {w["name"]: w for w in doc["workers"]}["index-copies"]["counters"]
        refilled = all(list((d / "fragments").rglob("*.*.*")) for d in replaced)
        return refilled and set(states.values()) == {"ok"} and copies["ready"] == 5

    deadline = time.monotonic() + 60
    while not settled():  # no `admin repair`: the adoption's own scan queues the repairs
        assert time.monotonic() < deadline, store.status()
        time.sleep(0.25)
    assert "drive(s) adopted: scanning" in (store.base / "server.log").read_text()
    store.stop()
    # Whole again: two other drives can go.
    _replace_with_empty(store.drives[0])
    shutil.rmtree(store.drives[2] / "fragments")
    store.start()
    store.read_back(objects)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_the_same_drives_is_refused(filled: tuple[Store, dict[str, bytes]], workers: str) -> None:
    store, objects = filled
    run = store.start(extra=("--workers", workers))  # with workers, the first process holds the drives
    res = run_server([*map(str, store.drives), "--listen", "127.0.0.1:0"], store.base)
    assert_one_line_error(res, f"in use by process {run.proc.pid}")
    store.read_back(objects)


def test_a_node_on_a_drive_in_use_is_refused(filled: tuple[Store, dict[str, bytes]]) -> None:
    store, _ = filled
    run = store.start()
    args = ["node", "--data", str(store.drives[0]), "--listen", "127.0.0.1:0", "--meta", "127.0.0.1:1"]
    env = CLEAN_ENV | {"TESSERA_CLUSTER_SECRET": "a-cluster-secret-of-some-length"}
    res = subprocess.run([*tessera_command(), *args], env=env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(res, f"in use by process {run.proc.pid}")


def test_a_drive_of_another_deployment_is_refused(
    filled: tuple[Store, dict[str, bytes]], tmp_path: Path, new_store: Callable[[Path], Store]
) -> None:
    store, _ = filled
    other = new_store(tmp_path / "other")
    other.base.mkdir()
    other.start()
    other.stop()
    before = store.fragments()
    drives = [*store.drives[:5], other.drives[5]]
    res = run_server([*map(str, drives), "--listen", "127.0.0.1:0"], store.base)
    assert_one_line_error(res, "different deployments")
    assert store.fragments() == before


def test_another_ec_scheme_on_a_formatted_set_is_refused(filled: tuple[Store, dict[str, bytes]]) -> None:
    store, _ = filled
    before = store.fragments()
    res = run_server([*map(str, store.drives), "--listen", "127.0.0.1:0", "--ec", "3+3"], store.base)
    assert_one_line_error(res, "formatted for EC 4+2, not 3+3")
    assert store.fragments() == before


def test_a_drive_given_twice_is_refused(tmp_path: Path) -> None:
    drives = [str(tmp_path / f"d{i}") for i in range(5)]
    assert_one_line_error(run_server([*drives, drives[0], "--listen", "127.0.0.1:0"], tmp_path), "twice")


def test_gc_never_collects_from_an_index_younger_than_the_data(filled: tuple[Store, dict[str, bytes]]) -> None:
    """A new, empty index over drives full of data sees every fragment as unreferenced: none may go."""
    store, _ = filled
    before = store.fragments()
    extra = ("--index", str(store.base / "new-index"), "--gc-grace", "0", "--scan-interval", "1")
    store.start(extra=extra)
    log = store.base / "server.log"
    deadline = time.monotonic() + 60
    while "orphans collected" not in log.read_text():
        assert time.monotonic() < deadline, "no background scan within 60 s"
        time.sleep(0.2)
    store.stop()
    assert "0 orphans collected" in log.read_text()
    assert store.fragments() == before


def test_drives_from_before_format_records_are_adopted(tmp_path: Path, new_store: Callable[[Path], Store]) -> None:
    """Drives that carry only {"id"} (and the index on the first one) join a deployment, data and all."""
    store = new_store(tmp_path)
    store.start(extra=("--index", str(store.drives[0] / ".tessera-system")))  # the one index of before
    objects = store.fill()
    store.stop()
    ids = []
    for d in store.drives:
        ids.append(json.loads((d / "drive.json").read_text())["id"])
        (d / "drive.json").write_text(json.dumps({"id": ids[-1]}))
    (store.drives[0] / ".tessera-system" / "origin.json").unlink()
    creds = store.creds
    store.start()
    try:
        assert store.creds == creds
        store.read_back(objects)
    finally:
        store.stop()
    records = [json.loads((d / "drive.json").read_text()) for d in store.drives]
    assert len({r["deployment"] for r in records}) == 1 and all(r["set"] == ids for r in records)
