"""The embedded server's index in copies on its drives: any m of them lost, wiped or damaged, every acknowledged
write stays and the lost copies are rebuilt while serving; none left refuses to start and deletes nothing;
a single-copy index of before is moved into the copies. Real `tessera server` processes, real boto3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.server_process import assert_one_line_error, run_server
from tests.store_process import Store
from tests.test_drive_adoption import _wipe

COPIES = 5  # 4+2 over six drives: 2m+1 copies on the first five members, quorum 3
DEADLINE = 60.0


def _copy(drive: Path) -> Path:
    return drive / ".tessera-system" / "replica"


def _env(store: Store) -> dict[str, str]:
    return {**os.environ, **dict(kv.split("=", 1) for kv in store.creds.split())}


def _admin(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    assert store.running is not None
    cmd = [sys.executable, "-m", "cli.main", "admin", "--endpoint", store.running.endpoint, *args]
    return subprocess.run(cmd, env=_env(store), capture_output=True, text=True, timeout=120)


def _copies_status(store: Store) -> dict[str, Any]:
    workers = {w["name"]: w for w in store.status()["workers"]}
    return workers["index-copies"]["counters"]  # type: ignore[no-any-return]


def _wait_all_copies_ready(store: Store) -> None:
    deadline = time.monotonic() + DEADLINE
    while (st := _copies_status(store))["ready"] != COPIES:
        assert time.monotonic() < deadline, f"copies not rebuilt within {DEADLINE} s: {st}"
        time.sleep(0.2)
    assert st["rebuilding"] == []


def _add_user(store: Store) -> dict[str, str]:
    res = _admin(store, "user", "add", "carol")
    assert res.returncode == 0, res.stderr
    return dict(kv.split("=", 1) for kv in res.stdout.split("export ", 1)[1].split())


def _user_client(store: Store, creds: dict[str, str]) -> Any:
    assert store.running is not None
    return boto3.client(
        "s3",
        endpoint_url=store.running.endpoint,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def _replace_with_empty(drive: Path) -> None:
    drive.rename(drive.with_name(drive.name + f"-gone{time.monotonic_ns()}"))
    drive.mkdir()


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Store, dict[str, bytes], dict[str, str]]]:
    """A stopped store holding inline and erasure-coded objects, and a user with a bucket of their own."""
    store = Store(tmp_path)
    store.start()
    objects = store.fill()
    user = _add_user(store)
    _user_client(store, user).create_bucket(Bucket="carols")
    store.stop()
    yield store, objects, user
    store.stop()


def _check_user(store: Store, user: dict[str, str]) -> None:
    assert [b["Name"] for b in _user_client(store, user).list_buckets()["Buckets"]] == ["carols"]


def test_copies_on_five_drives_and_none_on_the_sixth(filled: tuple[Store, dict[str, bytes], dict[str, str]]) -> None:
    store, _, _ = filled
    holders = [d for d in store.drives if (_copy(d) / "data.mdb").exists()]
    assert len(holders) == COPIES
    for d in holders:
        assert (d / ".tessera-system" / "credentials.json").exists() and (
            d / ".tessera-system" / "origin.json"
        ).exists()


def test_two_wiped_copies_are_rebuilt_while_serving(filled: tuple[Store, dict[str, bytes], dict[str, str]]) -> None:
    store, objects, user = filled
    creds = store.creds
    shutil.rmtree(store.drives[0] / ".tessera-system")  # the first drive's, credentials and all
    shutil.rmtree(_copy(store.drives[3]))
    store.start(store.drives[::-1])  # in another order too
    assert store.creds == creds
    store.read_back(objects)
    _check_user(store, user)
    _wait_all_copies_ready(store)
    assert (store.drives[0] / ".tessera-system" / "credentials.json").exists()
    # `admin status` lists the copies as the index's replicas, each by its directory on its drive.
    meta = store.status()["metadata"]
    holders = [d for d in store.drives if (_copy(d) / "data.mdb").exists()]
    assert sorted(m["address"] for m in meta) == sorted(str(_copy(d)) for d in holders) and len(meta) == COPIES
    assert all(m["ok"] and not m["error"] for m in meta), meta


def test_drives_replaced_twice_lose_nothing(filled: tuple[Store, dict[str, bytes], dict[str, str]]) -> None:
    """The issue's Done-when: two drives replaced by empty ones with a 1 s GC grace, repair, then two others."""
    store, objects, user = filled
    gc = ("--gc-grace", "1", "--scan-interval", "1")
    for pair in (store.drives[:2], store.drives[2:4]):
        for d in pair:
            _replace_with_empty(d)
        store.start(extra=gc)
        store.read_back(objects)
        res = _admin(store, "repair", "--wait")
        assert res.returncode == 0, res.stdout + res.stderr
        _wait_all_copies_ready(store)
        log = store.base / "server.log"
        scans = log.read_text().count("orphans collected")
        deadline = time.monotonic() + DEADLINE
        while log.read_text().count("orphans collected") < scans + 2:  # a whole scan after the repair
            assert time.monotonic() < deadline, "no background scan"
            time.sleep(0.2)
        store.stop()
    store.start()
    store.read_back(objects)
    _check_user(store, user)


def test_two_drives_wiped_while_serving_then_two_others_lost(
    filled: tuple[Store, dict[str, bytes], dict[str, str]],
) -> None:
    """rm -rf of two drives' contents while the server runs: adopted, their copies made again and rebuilt, the
    data repaired; then two other drives go and everything is still there."""
    store, objects, user = filled
    store.start()
    for d in store.drives[:2]:
        _wipe(d)
    deadline = time.monotonic() + DEADLINE
    while not all((_copy(d) / "data.mdb").exists() for d in store.drives[:2]):
        assert time.monotonic() < deadline, "the wiped drives' copies were not made again"
        time.sleep(0.2)
    _wait_all_copies_ready(store)
    res = _admin(store, "repair", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    store.read_back(objects)
    store.stop()
    for d in store.drives[2:4]:
        _replace_with_empty(d)
    store.start()
    store.read_back(objects)
    _check_user(store, user)


def test_no_copy_left_refuses_to_start_and_deletes_nothing(
    filled: tuple[Store, dict[str, bytes], dict[str, str]],
) -> None:
    store, _, _ = filled
    before = store.fragments()
    args = [*map(str, store.drives), "--listen", "127.0.0.1:0", "--gc-grace", "0", "--scan-interval", "1"]
    for d in store.drives[2:5]:  # three copies of five: a quorum is gone
        shutil.rmtree(_copy(d))
    assert_one_line_error(run_server(args, store.base), "only 2 of 5 copies of the index are readable (3 needed)")
    for d in store.drives:
        shutil.rmtree(d / ".tessera-system", ignore_errors=True)
    assert_one_line_error(run_server(args, store.base), "only 0 of 5 copies of the index are readable")
    assert store.fragments() == before


def test_damaged_copies_are_set_aside_and_rebuilt(filled: tuple[Store, dict[str, bytes], dict[str, str]]) -> None:
    store, objects, user = filled
    header = _copy(store.drives[1]) / "data.mdb"
    with open(header, "r+b") as f:  # both meta pages: not an LMDB file any more
        f.write(os.urandom(16384))
    pages = _copy(store.drives[4]) / "data.mdb"
    size = pages.stat().st_size
    with open(pages, "r+b") as f:  # every page after them: the tables' trees
        f.seek(16384)
        f.write(os.urandom(size - 16384))
    store.start()
    store.read_back(objects)
    _check_user(store, user)
    _wait_all_copies_ready(store)
    for d in (store.drives[1], store.drives[4]):
        assert list((d / ".tessera-system").glob("replica.damaged-*")), d


def _name_the_index_drive(store: Store) -> None:
    """The format records of before name the drive holding the one index."""
    first = json.loads((store.drives[0] / "drive.json").read_text())["id"]
    for d in store.drives:
        record = json.loads((d / "drive.json").read_text())
        (d / "drive.json").write_text(json.dumps({**record, "system": first}))


def test_a_single_copy_index_of_before_is_moved_into_copies(tmp_path: Path, new_store: Callable[[Path], Store]) -> None:
    """Drives as the server of before left them: the index, credentials and origin only in DRIVE1/.tessera-system."""
    store = new_store(tmp_path)
    system = store.drives[0] / ".tessera-system"
    store.start(extra=("--index", str(system)))  # --index: one LocalIndex where it is told
    objects = store.fill()
    s3 = store.client()
    upload = s3.create_multipart_upload(Bucket="photos", Key="pending")["UploadId"]
    s3.upload_part(Bucket="photos", Key="pending", UploadId=upload, PartNumber=1, Body=b"p" * 1000)
    user = _add_user(store)
    _user_client(store, user).create_bucket(Bucket="carols")
    store.stop()
    creds = store.creds
    store.start(extra=("--index", str(system)))  # --index still opens the same store
    assert store.creds == creds
    store.read_back(objects)
    store.stop()
    assert not (_copy(store.drives[1])).exists()
    _name_the_index_drive(store)
    # Until it is moved, the drive holding the one index is the only copy: without it, no start.
    shutil.move(store.drives[0], tmp_path / "away")
    store.drives[0].mkdir()
    before = store.fragments()
    res = run_server([*map(str, store.drives), "--listen", "127.0.0.1:0"], store.base)
    assert_one_line_error(res, "the drive holding the index and credentials")
    assert store.fragments() == before
    assert not (store.drives[0] / "drive.json").exists()  # the empty one was not taken into the set
    shutil.rmtree(store.drives[0])
    shutil.move(tmp_path / "away", store.drives[0])

    store.start()
    assert store.creds == creds
    store.read_back(objects)
    _check_user(store, user)
    parts = store.client().list_parts(Bucket="photos", Key="pending", UploadId=upload)["Parts"]
    assert [p["Size"] for p in parts] == [1000]
    assert list(system.glob("index.migrated-*")) and not (system / "index").exists()
    _wait_all_copies_ready(store)
    store.stop()
    # The first drive can go now.
    shutil.rmtree(system)
    store.start()
    store.read_back(objects)
    _check_user(store, user)
