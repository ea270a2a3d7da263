"""The node's scrubber over its HTTP API: `tessera meta` and `tessera node` as real processes, fragments
written through RemoteDrive, one damaged on disk behind the node's back, a pass started and watched
through NodeClient. Plus the answers of an in-process node without a scrubber."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from metadata.remote.client import RemoteIndex
from storage_node import fragment_format as ff
from storage_node import protocol
from storage_node.client import NodeClient, NodeError, RemoteDrive, fetch_node_drives
from storage_node.drive import FragmentId
from storage_node.local_drive import LocalDrive
from storage_node.protocol import ScrubStatus
from storage_node.service import make_node_app
from tests.meta_node import MetaAndNode as Cluster
from tests.meta_node import meta_and_node

KiB = 1 << 10
CHUNK = 64 * KiB


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with meta_and_node(tmp_path_factory.mktemp("scrub"), 2, ["--scrub-interval", "0", "--scrub-rate", "100"]) as c:
        yield c


async def chunks(n: int, size: int, seed: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([(seed + i) % 251]) * size


def flip_byte(path: Path, chunk: int) -> None:
    with open(path, "rb") as f:
        layout = ff.parse_header(FragmentId.parse(path.name), f.read(ff.HEADER_SIZE))
    offset = layout.chunk_offset(chunk) + layout.payload_len(chunk) // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def read_url(address: str) -> str:
    with urllib.request.urlopen(address, timeout=10) as resp:
        return resp.read().decode()


async def wait_done(client: NodeClient, within: float = 30.0) -> ScrubStatus:
    deadline = time.monotonic() + within
    while True:
        status = await client.scrub_status()
        if not status.running:
            return status
        assert time.monotonic() < deadline, f"the scrub pass did not finish within {within} s: {status}"
        await asyncio.sleep(0.05)


async def test_node_scrub_finds_the_damaged_fragment(cluster: Cluster) -> None:
    served = await fetch_node_drives(cluster.node.endpoint, cluster.secret)
    assert sorted(d.path for d in served) == sorted(map(str, cluster.drives))
    remotes = [RemoteDrive(cluster.node.endpoint, d.id, cluster.secret) for d in served]
    client = NodeClient(cluster.node.endpoint, cluster.secret)
    try:
        before = await client.scrub_status()
        assert not before.running and before.passes == 0  # --scrub-interval 0: no periodic pass
        fids = [FragmentId(os.urandom(16).hex(), 0, i) for i in range(6)]
        sizes = 0
        for i, f in enumerate(fids):
            info = await remotes[i % 2].put(f, chunks(3, CHUNK, i))
            sizes += info.size
        damaged = fids[3]  # on the second drive
        path = Path(served[1].path) / "fragments" / damaged.version[:2] / damaged.name
        await asyncio.to_thread(flip_byte, path, 1)

        started = await client.start_scrub()
        assert started.running and started.passes == 0 and started.started is not None
        done = await wait_done(client)
        assert done.passes == 1 and done.error == "" and done.started == started.started
        assert done.fragments == 6 and done.corrupt == 1 and done.errors == 0
        assert done.bytes == done.total_bytes == sizes == 6 * 3 * CHUNK
        assert done.finished is not None and done.finished >= done.started and done.mb_per_s > 0

        # The routes are counted under their own names.
        metrics = await asyncio.to_thread(read_url, cluster.node.endpoint + "/metrics")
        assert 'operation="scrub_start"' in metrics and 'operation="scrub_status"' in metrics
        assert "tessera_node_scrub_corrupt_fragments 1.0" in metrics

        # The node queued the damaged fragment for repair before its pass counted as done.
        index = RemoteIndex(cluster.meta.endpoint, cluster.secret)
        try:
            queued = [e for e in await index.list_repairs() if e.reason == "scrub"]
        finally:
            await index.close()
        assert [(e.data_id, e.part, e.index, e.drive_id, e.surviving) for e in queued] == [
            (damaged.version, 0, 3, served[1].id, 0)
        ]
        assert queued[0].bucket == "" and 0 < queued[0].queued <= time.time()
    finally:
        await client.close()
        for r in remotes:
            await r.close()


async def test_node_scrub_refuses_a_wrong_secret(cluster: Cluster) -> None:
    client = NodeClient(cluster.node.endpoint, b"not-the-cluster-secret-at-all")
    try:
        with pytest.raises(NodeError, match="forbidden") as err:
            await client.start_scrub()
        assert err.value.kind == protocol.FORBIDDEN
    finally:
        await client.close()


async def test_node_without_a_scrubber_says_so(tmp_path: Path) -> None:
    secret = b"test-cluster-secret-0123456789"
    drive = await LocalDrive.open(tmp_path / "d")
    runner = web.AppRunner(make_node_app([drive], secret), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    client = NodeClient(f"http://{host}:{port}", secret)
    try:
        for call in (client.start_scrub, client.scrub_status):
            with pytest.raises(NodeError, match="no scrubber") as err:
                await call()
            assert err.value.kind == protocol.NO_SCRUBBER
    finally:
        await client.close()
        await runner.cleanup()
        await drive.close()


async def test_unreachable_node_is_a_node_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = NodeClient(f"http://127.0.0.1:{port}", b"secret", timeout=5)
    try:
        with pytest.raises(NodeError):
            await client.scrub_status()
    finally:
        await client.close()
