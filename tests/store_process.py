"""A `tessera server` store as a user runs it (started, stopped, its drives moved about), and the fixture that
stops every store a test made, even when the test fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from cli.launch import Launched, launch, stop, tessera_command
from gateway.objects.layer import INLINE_MAX
from tests.server_process import CLEAN_ENV

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

    def status(self) -> dict[str, Any]:
        """`tessera admin status --json` of the running store, as its user would ask for it."""
        assert self.running is not None
        res = subprocess.run(
            [*tessera_command(), "admin", "--endpoint", self.running.endpoint, "status", "--json"],
            env={**os.environ, **dict(kv.split("=", 1) for kv in self.creds.split())},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

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
def new_store() -> Iterator[Callable[[Path], Store]]:
    """Stores made in a test, each stopped at its end even when the test fails."""
    made: list[Store] = []

    def make(base: Path) -> Store:
        made.append(Store(base))
        return made[-1]

    yield make
    for store in made:
        store.stop()
