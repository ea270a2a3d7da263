"""The storage node's health checks, metrics and request log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cluster import auth
from storage_node import protocol
from storage_node.client import RemoteDrive
from storage_node.drive import FragmentNotFound
from storage_node.local_drive import LocalDrive
from tests.drive_contract import collect, make_chunks, new_fid, stream
from tests.remote_drive_helpers import Node, raw, start_node


async def test_health(node: Node) -> None:
    assert await raw(node, "GET", "/health/live", signature=None) == (200, {"status": "ok"})
    status, answer = await raw(node, "GET", "/health/ready", signature=None)
    assert (status, answer["status"]) == (200, "ready")
    shutil.rmtree(node.drives[1].root / "fragments")  # a wiped disk
    status, answer = await raw(node, "GET", "/health/ready", signature=None)
    assert (status, answer["status"]) == (503, "not ready")
    assert list(answer["drives"]) == [node.drives[1].drive_id]
    assert (await raw(node, "GET", "/health/live", signature=None))[0] == 200  # shallow: still alive


async def test_metrics(node: Node, remote: RemoteDrive) -> None:
    fid = new_fid()
    await remote.put(fid, stream(make_chunks(4, 100_000)))
    await collect(remote.get(fid))
    with pytest.raises(FragmentNotFound):
        await remote.stat(new_fid())
    await raw(node, "DELETE", protocol.fragment_path(node.drives[0].drive_id, fid.name), signature=None)
    status, text = await raw(node, "GET", "/metrics", signature=None)
    assert status == 200
    samples = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['tessera_node_requests_total{operation="put",status="200"}'] == 1
    assert samples['tessera_node_requests_total{operation="get",status="200"}'] == 1
    assert samples['tessera_node_requests_total{operation="stat",status="404"}'] == 1
    assert samples['tessera_node_requests_total{operation="delete",status="403"}'] == 1
    assert samples['tessera_node_errors_total{error="not_found",operation="stat"}'] == 1
    assert samples['tessera_node_errors_total{error="forbidden",operation="delete"}'] == 1
    assert samples['tessera_node_received_bytes_total{operation="put"}'] >= 400_000
    assert samples['tessera_node_sent_bytes_total{operation="get"}'] >= 400_000
    assert samples['tessera_node_request_duration_seconds_count{operation="put"}'] == 1
    assert samples["tessera_node_requests_in_flight"] == 1  # this scrape


async def test_apps_in_one_process_keep_their_own_metrics(tmp_path: Path) -> None:
    drive = await LocalDrive.open(tmp_path / "drive")
    nodes = [await start_node([drive]) for _ in range(2)]
    try:
        await raw(nodes[0], "GET", "/health/live", signature=None)
        counts = []
        for n in nodes:
            _, text = await raw(n, "GET", "/metrics", signature=None)
            counts.append('tessera_node_requests_total{operation="live",status="200"} 1.0' in text.decode())
        assert counts == [True, False]
    finally:
        for n in nodes:
            await n.runner.cleanup()
        await drive.close()


async def test_one_log_line_per_request(node: Node, remote: RemoteDrive, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="storage_node.service")
    fid = new_fid()
    await remote.put(fid, stream(make_chunks(2, 1000)))
    with pytest.raises(FragmentNotFound):
        await remote.stat(new_fid())
    records = [r for r in caplog.records if r.name == "storage_node.service"]
    assert len(records) == 2
    put, stat = (r.tessera_request for r in records)  # type: ignore[attr-defined]
    framed = 2000 + 2 * (8 + auth.TAG_BYTES) + 4 + auth.TAG_BYTES  # two chained chunks and the end
    assert (put["method"], put["status"], put["bytes_in"]) == ("PUT", 200, framed)
    assert put["path"] == protocol.fragment_path(node.drives[0].drive_id, fid.name)
    assert (stat["status"], stat["error"]) == (404, "not_found")
    logged = json.loads(records[1].getMessage())  # the line itself is JSON, like every service's
    assert logged["status"] == 404 and "duration_ms" in logged
