"""RemoteDrive: the drive contract over HTTP to a real storage node, and the client's own API (which
drive of which node, sessions, the node's drive list, closing).

The damage helpers edit the node's files directly, behind both drives' backs. The rest of what only a
network adds is in test_remote_drive_{signatures,wire,streaming,failures,health}.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storage_node import fragment_format as ff
from storage_node.client import RemoteDrive, fetch_node_drives
from storage_node.drive import DriveUnavailable, FragmentId, FragmentNotFound
from storage_node.local_drive import LocalDrive
from tests.drive_contract import DriveContract, collect, listed, new_fid, stream
from tests.remote_drive_helpers import SECRET, Node, ls, settle


def _layout(path: Path) -> ff.Layout:
    with open(path, "rb") as f:
        return ff.parse_header(FragmentId.parse(path.name), f.read(ff.HEADER_SIZE))


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


# The local drive behind each remote one, for the damage helpers.
_BACKING: weakref.WeakKeyDictionary[RemoteDrive, LocalDrive] = weakref.WeakKeyDictionary()


class TestRemoteDriveContract(DriveContract):
    @pytest.fixture
    async def drive(self, node: Node, remote: RemoteDrive) -> AsyncIterator[RemoteDrive]:
        _BACKING[remote] = node.drives[0]
        yield remote
        # Nothing a test did may leave a temp file behind on the node (aborted puts included).
        await settle(lambda: ls(node.drives[0].root / "tmp") == [])

    async def corrupt(self, drive: RemoteDrive, fid: FragmentId, chunk: int) -> None:
        path = _BACKING[drive].fragment_path(fid)
        layout = await asyncio.to_thread(_layout, path)
        await asyncio.to_thread(_flip_byte, path, layout.chunk_offset(chunk) + layout.payload_len(chunk) // 2)

    async def truncate(self, drive: RemoteDrive, fid: FragmentId, chunk: int) -> None:
        path = _BACKING[drive].fragment_path(fid)
        layout = await asyncio.to_thread(_layout, path)
        await asyncio.to_thread(os.truncate, path, layout.chunk_offset(chunk))


# -- the client's own API ------------------------------------------------------------------------------


async def test_unknown_drive_is_unavailable(node: Node) -> None:
    elsewhere = RemoteDrive(node.url, uuid.uuid4().hex, SECRET)
    fid = new_fid()
    try:
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await elsewhere.put(fid, stream([b"x"]))
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await elsewhere.stat(fid)
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await collect(elsewhere.get(fid))
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await elsewhere.delete(fid)
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await elsewhere.verify(fid)
        with pytest.raises(DriveUnavailable, match="no_such_drive"):
            await listed(elsewhere)
    finally:
        await elsewhere.close()


async def test_each_drive_of_a_node_is_its_own(node: Node) -> None:
    a, b = (RemoteDrive(node.url, d.drive_id, SECRET) for d in node.drives)
    try:
        fid = new_fid()
        await a.put(fid, stream([b"on a"]))
        with pytest.raises(FragmentNotFound):
            await b.stat(fid)
        assert (await listed(b)) == {}
        assert node.drives[0].fragment_path(fid).exists()
    finally:
        await a.close()
        await b.close()


async def test_shared_session_is_left_open(node: Node) -> None:
    async with aiohttp.ClientSession() as session:
        drives = [RemoteDrive(node.url, d.drive_id, SECRET, session) for d in node.drives]
        fids = [new_fid(), new_fid()]
        await asyncio.gather(*(d.put(f, stream([b"shared"])) for d, f in zip(drives, fids, strict=True)))
        for d in drives:
            await d.close()
        assert not session.closed
        assert [
            await collect(RemoteDrive(node.url, d.drive_id, SECRET, session).get(f))
            for d, f in zip(node.drives, fids, strict=True)
        ] == [[b"shared"], [b"shared"]]


async def test_fetch_node_drives(node: Node) -> None:
    drives = await fetch_node_drives(node.url, SECRET)
    assert [d.id for d in drives] == [d.drive_id for d in node.drives]
    assert [d.path for d in drives] == [str(d.root) for d in node.drives]
    for d in drives:
        assert d.capacity is not None and d.free is not None and 0 < d.free <= d.capacity
    with pytest.raises(DriveUnavailable, match="forbidden"):
        await fetch_node_drives(node.url, b"not-the-cluster-secret-at-all")


async def test_closed_drive_refuses_work(node: Node) -> None:
    remote = RemoteDrive(node.url, node.drives[0].drive_id, SECRET)
    await remote.put(new_fid(), stream([b"x"]))  # so it has a session to close
    await remote.close()
    await remote.close()  # idempotent
    with pytest.raises(DriveUnavailable, match="closed"):
        await remote.stat(new_fid())
    with pytest.raises(DriveUnavailable, match="closed"):
        await remote.put(new_fid(), stream([b"x"]))
