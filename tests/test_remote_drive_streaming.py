"""RemoteDrive and the storage node: puts, gets and listings stream (nothing is buffered whole), abandoning
one frees the node, and a node's memory stays bounded per request.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster import auth
from storage_node import protocol
from storage_node.client import RemoteDrive
from storage_node.drive import DriveUnavailable
from storage_node.local_drive import LocalDrive
from tests.drive_contract import collect, listed, make_chunks, new_fid, stream
from tests.remote_drive_helpers import SECRET, MiB, Node, settle, start_node


async def test_put_streams_without_buffering(node: Node, remote: RemoteDrive) -> None:
    # Neither the client nor the node holds the fragment back: megabytes reach the node's temp file
    # while the producer still has not finished.
    seen_on_disk = asyncio.Event()
    tmp = node.drives[0].root / "tmp"

    async def producer() -> AsyncIterator[bytes]:
        for chunk in make_chunks(16, MiB):
            yield chunk
        for _ in range(500):
            if any(p.stat().st_size > 4 * MiB for p in tmp.iterdir()):
                seen_on_disk.set()
                break
            await asyncio.sleep(0.01)
        yield b"end"

    info = await remote.put(new_fid(), producer())
    assert seen_on_disk.is_set()
    assert info.size == 16 * MiB + 3


async def test_get_streams_and_abandoning_it_frees_the_node(node: Node, remote: RemoteDrive) -> None:
    fid = new_fid()
    chunks = make_chunks(48, MiB, seed=4)  # far more than socket buffers hold
    await remote.put(fid, stream(chunks))
    path = str(node.drives[0].fragment_path(fid))

    def open_on_node() -> bool:
        return any(os.readlink(f"/proc/self/fd/{fd}") == path for fd in _fds())

    for _ in range(3):
        it = remote.get(fid)
        assert await it.__anext__() == chunks[0]
        assert open_on_node()  # the node is still streaming it, not done reading it all
        await it.aclose()  # type: ignore[attr-defined]
        await settle(lambda: not open_on_node())
    assert await collect(remote.get(fid, 47)) == chunks[47:]


def _fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{fd}")
            out.append(fd)
        except OSError:
            pass
    return out


async def test_list_streams_many_fragments(node: Node, remote: RemoteDrive) -> None:
    local = node.drives[0]
    fids = [new_fid(part=n % 7, index=n % 5) for n in range(2500)]
    infos = {}
    for i in range(0, len(fids), 100):
        batch = fids[i : i + 100]
        for fid, info in zip(
            batch, await asyncio.gather(*(local.put(f, stream([f.name.encode()])) for f in batch)), strict=True
        ):
            infos[fid] = info
    assert await listed(remote) == infos
    # Abandoning a listing midway is fine, and the next one is whole.
    it = remote.list()
    await it.__anext__()
    await it.aclose()  # type: ignore[attr-defined]
    assert len(await listed(remote)) == 2500


async def test_node_cuts_off_a_client_that_stops_reading(tmp_path: Path) -> None:
    drive = await LocalDrive.open(tmp_path / "drive")
    n = await start_node([drive], io_timeout=0.3)
    remote = RemoteDrive(n.url, drive.drive_id, SECRET)
    fid = new_fid()
    try:
        await remote.put(fid, stream(make_chunks(32, MiB)))
        path = str(drive.fragment_path(fid))
        # A client that asks for 32 MiB and then reads nothing, without hanging up.
        port = int(n.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        target = protocol.get_path(drive.drive_id, fid.name, 0, None)
        signature = auth.sign(SECRET, "GET", target, b"")
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth.HEADER}: {signature}\r\n\r\n".encode())
        await writer.drain()
        await settle(lambda: any(_fd_target(fd) == path for fd in _fds()))
        await settle(lambda: all(_fd_target(fd) != path for fd in _fds()), within=10)  # cut off, file closed
        assert await reader.read(100)  # it did start answering
        writer.close()
        assert await collect(remote.get(fid, 31)) == make_chunks(32, MiB)[31:]
    finally:
        await remote.close()
        await n.runner.cleanup()
        await drive.close()


def _fd_target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


async def test_refused_put_stops_reading_its_source(node: Node) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            await asyncio.sleep(0.001)
            yield b"x" * 10_000

    elsewhere = RemoteDrive(node.url, uuid.uuid4().hex, SECRET)
    source = endless()
    try:
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await elsewhere.put(new_fid(), source)
        await asyncio.sleep(0.05)
        before = pulled
        await asyncio.sleep(0.2)
        assert pulled == before
    finally:
        await elsewhere.close()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_node_memory_is_bounded_per_request(node_process: tuple[asyncio.subprocess.Process, RemoteDrive]) -> None:
    proc, remote = node_process
    chunk = make_chunks(1, MiB, seed=6)[0]
    warm = new_fid()
    await remote.put(warm, stream([chunk] * 8))
    await collect(remote.get(warm))
    before = _peak_rss(proc.pid)

    async def big() -> AsyncIterator[bytes]:
        for _ in range(256):
            yield chunk

    fid = new_fid()
    info = await remote.put(fid, big())
    assert info.size == 256 * MiB
    n = 0
    async for got in remote.get(fid):
        assert got == chunk
        n += 1
    assert n == 256
    assert _peak_rss(proc.pid) - before < 32 * MiB
