"""RemoteDrive and the storage node: failures of the network and of the node (refused, hung, killed,
silent or failing sources) give DriveUnavailable in bounded time and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage_node.client import RemoteDrive, fetch_node_drives
from storage_node.drive import DriveUnavailable, FragmentNotFound
from storage_node.local_drive import LocalDrive
from tests.drive_contract import Boom, collect, collect_until_error, listed, make_chunks, new_fid, stream
from tests.remote_drive_helpers import SECRET, MiB, Node, ls, settle, start_node


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_gives_drive_unavailable() -> None:
    remote = RemoteDrive(f"http://127.0.0.1:{_free_port()}", uuid.uuid4().hex, SECRET, timeout=5)
    fid = new_fid()
    try:
        start = time.monotonic()
        with pytest.raises(DriveUnavailable):
            await remote.put(fid, stream(make_chunks(3, 100)))
        with pytest.raises(DriveUnavailable):
            await remote.stat(fid)
        with pytest.raises(DriveUnavailable):
            await collect(remote.get(fid))
        with pytest.raises(DriveUnavailable):
            await remote.delete(fid)
        with pytest.raises(DriveUnavailable):
            await listed(remote)
        with pytest.raises(DriveUnavailable):
            await fetch_node_drives(remote.base_url, SECRET)
        assert time.monotonic() - start < 5  # refused at once, not timed out
    finally:
        await remote.close()


@pytest.fixture
async def silent_peer() -> AsyncIterator[str]:
    """A peer that accepts connections and then neither reads nor answers: a hung node."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


async def test_hung_node_times_out(silent_peer: str) -> None:
    remote = RemoteDrive(silent_peer, uuid.uuid4().hex, SECRET, timeout=0.5)
    fid = new_fid()

    async def endless() -> AsyncIterator[bytes]:
        chunk = b"x" * MiB
        for _ in range(10_000):  # 10 GB: far beyond what socket buffers absorb
            yield chunk

    try:
        for attempt in (remote.stat(fid), collect(remote.get(fid)), remote.put(fid, endless())):
            start = time.monotonic()
            with pytest.raises(DriveUnavailable):
                await attempt
            assert time.monotonic() - start < 10
    finally:
        await remote.close()


async def test_slow_source_is_not_the_nodes_fault(node: Node, remote: RemoteDrive) -> None:
    # The client times out waits on the node, not waits on its own caller's stream.
    fast = RemoteDrive(node.url, node.drives[0].drive_id, SECRET, timeout=0.3)

    async def slow() -> AsyncIterator[bytes]:
        for chunk in make_chunks(3, 1000):
            await asyncio.sleep(0.5)
            yield chunk

    try:
        info = await fast.put(new_fid(), slow())
        assert info.chunks == 3
    finally:
        await fast.close()


async def test_node_drops_a_put_whose_client_goes_silent(tmp_path: Path) -> None:
    drive = await LocalDrive.open(tmp_path / "drive")
    n = await start_node([drive], io_timeout=0.3)
    remote = RemoteDrive(n.url, drive.drive_id, SECRET)
    fid = new_fid()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.sleep(30)
        yield b"b" * 1000

    try:
        start = time.monotonic()
        with pytest.raises(DriveUnavailable, match="timeout"):
            await remote.put(fid, stalls())
        assert time.monotonic() - start < 10
        with pytest.raises(FragmentNotFound):
            await remote.stat(fid)
        await settle(lambda: ls(drive.root / "tmp") == [])
    finally:
        await remote.close()
        await n.runner.cleanup()
        await drive.close()


async def test_failed_source_keeps_the_connection(node: Node) -> None:
    # A failed source is reported to the node with an error frame: the node drops the fragment
    # before the put returns, and the connection goes back to the pool instead of being cut.
    created = 0

    async def on_create(*_: Any) -> None:
        nonlocal created
        created += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        remote = RemoteDrive(node.url, node.drives[0].drive_id, SECRET, session)
        fid = new_fid()
        for _ in range(3):
            with pytest.raises(Boom):
                await remote.put(fid, stream(make_chunks(4, 100_000), fail_after=2))
            assert ls(node.drives[0].root / "tmp") == []
        with pytest.raises(FragmentNotFound):
            await remote.stat(fid)
        await remote.put(fid, stream([b"x"] * 3))
        assert await collect(remote.get(fid)) == [b"x"] * 3
        assert created == 1


async def test_node_killed_mid_get_gives_drive_unavailable(
    node_process: tuple[asyncio.subprocess.Process, RemoteDrive],
) -> None:
    proc, remote = node_process
    fid = new_fid()
    chunks = make_chunks(64, MiB, seed=5)
    await remote.put(fid, stream(chunks))
    it = remote.get(fid)
    assert await it.__anext__() == chunks[0]
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    got, error = await collect_until_error(it)
    assert isinstance(error, DriveUnavailable)
    assert got == chunks[1 : 1 + len(got)]  # what arrived before the cut was good, and nothing else
    with pytest.raises(DriveUnavailable):
        await remote.stat(fid)  # and now the port refuses connections
