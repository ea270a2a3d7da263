"""`tessera meta --peers A,B,C`: a replica set as an operator starts it, and the mistakes it refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cli.dev import _free_ports
from cli.launch import launch, stop
from metadata.records import BucketRecord
from metadata.remote.client import RemoteIndex
from tests.test_cli_meta import ENV, SECRET, assert_one_line_error, run_meta


@pytest.mark.parametrize(
    ("peers", "fragment"),
    [
        ("127.0.0.1:7001,127.0.0.1:7002", "own address"),
        ("127.0.0.1:7001,127.0.0.1:7003", "three replicas"),
        ("127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004", "three replicas"),
    ],
)
def test_bad_replica_sets_are_refused(tmp_path: Path, peers: str, fragment: str) -> None:
    res = run_meta(["--data", str(tmp_path / "m"), "--listen", "127.0.0.1:7003", "--peers", peers], tmp_path)
    assert_one_line_error(res, fragment)


def test_a_replica_set_serves_the_index_through_any_member(tmp_path: Path) -> None:
    ports = _free_ports(3)
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    runs = []
    try:
        for i, p in enumerate(ports):
            args = ["meta", "--data", str(tmp_path / f"m{i}"), "--listen", f"127.0.0.1:{p}", "--peers", peers]
            runs.append(launch(args, ENV, tmp_path / f"m{i}.log", banner_end="Endpoint:"))

        async def use() -> None:
            first, other = (
                RemoteIndex(runs[0].endpoint, SECRET.encode()),
                RemoteIndex(runs[2].endpoint, SECRET.encode()),
            )
            try:
                for _ in range(100):  # a brand-new set initializes once all three see each other
                    try:
                        await first.create_bucket(BucketRecord("photos", "AKIAOWNER", 1.0))
                        break
                    except Exception:
                        await asyncio.sleep(0.1)
                assert [b.name for b in await other.list_buckets()] == ["photos"]
            finally:
                await first.close()
                await other.close()

        asyncio.run(use())
    finally:
        for r in runs:
            stop(r.proc)
    assert all(r.proc.returncode == 0 for r in runs)
    assert (tmp_path / "m0" / "replica" / "data.mdb").is_file()
