"""Shared by the test_remote_drive* modules: a real storage node (storage_node/service.py) on a real
socket on 127.0.0.1, run in the test's own event loop over LocalDrives in tmp_path, or in a process of
its own to kill; a RemoteDrive on it; raw requests to it as anyone could send them.

Its fixtures (node, remote, node_process) reach the test modules through `pytest_plugins` in conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from cluster import auth
from storage_node import protocol
from storage_node.client import RemoteDrive
from storage_node.drive import FragmentId
from storage_node.local_drive import LocalDrive
from storage_node.service import make_node_app
from tests.drive_contract import collect, listed

SECRET = b"test-cluster-secret-0123456789"
REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20


@dataclass
class Node:
    url: str
    drives: list[LocalDrive]
    runner: web.AppRunner


async def start_node(drives: list[LocalDrive], **options: Any) -> Node:
    runner = web.AppRunner(make_node_app(drives, SECRET, **options), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return Node(f"http://{host}:{port}", drives, runner)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    drives = [await LocalDrive.open(tmp_path / f"drive{i}") for i in range(2)]
    n = await start_node(drives)
    yield n
    await n.runner.cleanup()
    for d in drives:
        await d.close()


@pytest.fixture
async def remote(node: Node) -> AsyncIterator[RemoteDrive]:
    r = RemoteDrive(node.url, node.drives[0].drive_id, SECRET)
    yield r
    await r.close()


def ls(path: Path) -> list[str]:
    return sorted(os.listdir(path))


async def settle(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for something the node finishes after answering (or after its client hung up)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def frames(chunks: list[bytes], end: bool = True) -> bytes:
    parts = [b"".join(protocol.chunk_frame_parts(c)) for c in chunks]
    return b"".join(parts) + (protocol.END_FRAME if end else b"")


async def raw(
    node: Node,
    method: str,
    path_qs: str,
    body: bytes | None = None,
    signature: str | bool | None = True,
) -> tuple[int, Any]:
    """One request as sent by anyone: signature True signs it properly (over the body's hash: its
    frames are plain, not chained), a string is sent as is."""
    headers = {}
    if signature is True:
        signature = auth.sign(SECRET, method, path_qs, body or b"")
    if isinstance(signature, str):
        headers[auth.HEADER] = signature
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, URL(node.url + path_qs, encoded=True), data=body, headers=headers) as resp,
    ):
        data = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, json.loads(data)
        return resp.status, data


async def assert_untouched(node: Node, remote: RemoteDrive, kept: dict[FragmentId, list[bytes]]) -> None:
    """Exactly the fragments in `kept` are there, unchanged, and no put left a temp file."""
    assert (await listed(remote)).keys() == kept.keys()
    for fid, chunks in kept.items():
        assert await collect(remote.get(fid)) == chunks
    await settle(lambda: ls(node.drives[0].root / "tmp") == [])


NODE_SCRIPT = """
import asyncio, sys
from aiohttp import web
from storage_node.local_drive import LocalDrive
from storage_node.service import make_node_app

async def main():
    drive = await LocalDrive.open(sys.argv[1])
    runner = web.AppRunner(make_node_app([drive], sys.argv[2].encode()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], drive.drive_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def node_process(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, RemoteDrive]]:
    """A storage node in a process of its own, to kill."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        NODE_SCRIPT,
        str(tmp_path / "drive"),
        SECRET.decode(),
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    try:
        port, drive_id = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        remote = RemoteDrive(f"http://127.0.0.1:{port}", drive_id, SECRET, timeout=10)
        yield proc, remote
        await remote.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
