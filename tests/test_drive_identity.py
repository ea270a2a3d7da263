"""Drives recognised by identity: any order, empty replacements adopted, foreign drives and a second process
refused, and never a fresh store over old data. Real `tessera server` processes, real boto3."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from cli.launch import Launched, launch, stop, tessera_command
from gateway.objects.layer import INLINE_MAX
from tests.server_process import CLEAN_ENV, assert_one_line_error, run_server

MiB = 1 << 20
SIZES = {"empty": 0, "tiny": 100, "inline-max": INLINE_MAX, "on-drives": INLINE_MAX + 1, "segments": 2 * MiB + 5}


class Store:
    """A server's drives, started and stopped as a user would, with the credentials it generated."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.drives = [base / f"d{i + 1}" for i in range(6)]
        self.creds = ""
        self.running: Launched | None = None

    def start(self, drives: list[Path] | None = None, extra: tuple[str, ...] = ()) -> Launched:
        args = ["server", *map(str, drives or self.drives), "--listen", "127.0.0.1:0", *extra]
        self.running = launch(args, CLEAN_ENV, self.base / "server.log", cwd=self.base)
        self.creds = re.search(r"export (AWS_ACCESS_KEY_ID=.*)", self.running.banner).group(1)  # type: ignore[union-attr]
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            stop(self.running.proc)
            self.running = None

    def client(self) -> Any:
        assert self.running is not None
        key, secret = re.fullmatch(r"AWS_ACCESS_KEY_ID=(\S+)\s+AWS_SECRET_ACCESS_KEY=(\S+)", self.creds).groups()  # type: ignore[union-attr]
        return boto3.client(
            "s3",
            endpoint_url=self.running.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    def read_back(self, objects: dict[str, bytes]) -> None:
        s3 = self.client()
        for key, data in objects.items():
            assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == data, key

    def fill(self) -> dict[str, bytes]:
        """A bucket "photos" with inline and erasure-coded objects: what was written."""
        s3 = self.client()
        s3.create_bucket(Bucket="photos")
        objects = {name: os.urandom(size) for name, size in SIZES.items()}
        for key, data in objects.items():
            s3.put_object(Bucket="photos", Key=key, Body=data)
        return objects

    def fragments(self) -> list[tuple[str, int]]:
        """Every fragment file under the store's directory, also on drives taken out of the set."""
        return sorted((f.name, f.stat().st_size) for f in self.base.glob("*/fragments/*/*.*.*"))


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


def test_a_drive_of_another_deployment_is_refused(filled: tuple[Store, dict[str, bytes]], tmp_path: Path) -> None:
    store, _ = filled
    other = Store(tmp_path / "other")
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


def test_drives_from_before_format_records_are_adopted(tmp_path: Path) -> None:
    """Drives that carry only {"id"} (and the index on the first one) join a deployment, data and all."""
    store = Store(tmp_path)
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
