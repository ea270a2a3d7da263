"""`tessera meta` as an operator meets it: a real process serving the index, its messages and exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.launch import launch, stop, tessera_command
from metadata.records import BucketRecord, DriveRecord, NodeRecord
from metadata.remote.client import RemoteIndex

SECRET = "meta-test-cluster-secret-0123"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
ENV = CLEAN_ENV | {"TESSERA_CLUSTER_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}


def run_meta(args: list[str], cwd: Path, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    """For starts that must fail: they exit by themselves, within the timeout."""
    return subprocess.run(
        [*tessera_command(), "meta", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(res: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def write_then_read(endpoint: str) -> None:
    idx = RemoteIndex(endpoint, SECRET.encode())
    try:
        if await idx.get_bucket("photos") is None:
            await idx.create_bucket(BucketRecord("photos", "AKIAOWNER", 1.0))
        await idx.upsert_node(NodeRecord("n1", "http://127.0.0.1:1", "z1", [DriveRecord("d1", 10, 5)], 1.0, 0.0))
        assert [b.name for b in await idx.list_buckets()] == ["photos"]
        assert [n.node_id for n in await idx.list_nodes()] == ["n1"]
    finally:
        await idx.close()


def test_serves_the_index_and_stops_cleanly(tmp_path: Path) -> None:
    data, log = tmp_path / "meta", tmp_path / "meta.log"
    for sig in (signal.SIGTERM, signal.SIGINT):  # the second run finds the first run's data
        run = launch(["meta", "--data", str(data), "--listen", "127.0.0.1:0"], ENV, log, banner_end="Endpoint:")
        try:
            assert run.banner.strip().splitlines()[-1] == f"Endpoint:  {run.endpoint}"
            assert run.endpoint.startswith("http://127.0.0.1:") and not run.endpoint.endswith(":0")
            asyncio.run(write_then_read(run.endpoint))
            with pytest.raises(urllib.error.HTTPError) as exc:  # unsigned: refused
                urllib.request.urlopen(urllib.request.Request(run.endpoint + "/v1/list_buckets", b"", method="POST"))
            exc.value.close()
            assert exc.value.code == 403
        finally:
            if run.proc.poll() is None:
                os.kill(run.proc.pid, sig)
                run.proc.wait(timeout=15)
            stop(run.proc)
        assert run.proc.returncode == 0, sig
    assert (data / "index" / "data.mdb").is_file()
    assert "Traceback" not in log.read_text()


def test_the_only_peer_may_be_itself(tmp_path: Path) -> None:
    port = free_port()
    me = f"127.0.0.1:{port}"
    run = launch(
        ["meta", "--data", str(tmp_path / "m"), "--listen", me, "--peers", me],
        ENV,
        tmp_path / "log",
        banner_end="Endpoint:",
    )
    stop(run.proc)
    assert run.endpoint == f"http://{me}" and run.proc.returncode == 0


@pytest.mark.parametrize("env", [CLEAN_ENV, CLEAN_ENV | {"TESSERA_CLUSTER_SECRET": "too-short"}])
def test_refuses_to_start_without_the_secret(tmp_path: Path, env: dict[str, str]) -> None:
    res = run_meta(["--data", str(tmp_path / "m"), "--listen", "127.0.0.1:0"], tmp_path, env)
    assert_one_line_error(res, "TESSERA_CLUSTER_SECRET")
    assert not (tmp_path / "m").exists()


def test_bad_peers(tmp_path: Path) -> None:
    res = run_meta(["--data", str(tmp_path / "m"), "--listen", "127.0.0.1:0", "--peers", "nowhere"], tmp_path)
    assert_one_line_error(res, "--peers")


def test_bad_listen(tmp_path: Path) -> None:
    assert_one_line_error(run_meta(["--data", str(tmp_path / "m"), "--listen", "nowhere"], tmp_path), "--listen")


def test_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = run_meta(["--data", str(tmp_path / "m"), "--listen", f"127.0.0.1:{port}"], tmp_path)
    assert_one_line_error(res, f"127.0.0.1:{port}")


def test_unusable_data_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    res = run_meta(["--data", str(tmp_path / "file" / "m"), "--listen", "127.0.0.1:0"], tmp_path)
    assert_one_line_error(res, str(tmp_path / "file" / "m"))


def test_data_is_required(tmp_path: Path) -> None:
    res = run_meta(["--listen", "127.0.0.1:0"], tmp_path)
    assert res.returncode == 2 and "--data" in res.stderr and "Traceback" not in res.stderr
