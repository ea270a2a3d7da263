"""RemoteDrive: the drive contract over HTTP to a real storage node, plus what only a network adds.

The node is the real service (storage_node/service.py) on a real socket on 127.0.0.1, run in the
test's own event loop, over a LocalDrive in tmp_path; one test kills a node running in a process of
its own. The damage helpers edit the node's files directly, behind both drives' backs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from cluster import auth
from storage_node import fragment_format as ff
from storage_node import protocol
from storage_node.client import RemoteDrive, fetch_node_drives
from storage_node.drive import DriveUnavailable, FragmentId, FragmentNotFound
from storage_node.local_drive import LocalDrive
from storage_node.service import make_node_app
from tests.drive_contract import (
    Boom,
    DriveContract,
    collect,
    collect_until_error,
    listed,
    make_chunks,
    new_fid,
    stream,
)

SECRET = b"test-cluster-secret-0123456789"
REPO = Path(__file__).resolve().parent.parent


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


def _layout(path: Path) -> ff.Layout:
    with open(path, "rb") as f:
        return ff.parse_header(FragmentId.parse(path.name), f.read(ff.HEADER_SIZE))


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def _ls(path: Path) -> list[str]:
    return sorted(os.listdir(path))


# The local drive behind each remote one, for the damage helpers.
_BACKING: weakref.WeakKeyDictionary[RemoteDrive, LocalDrive] = weakref.WeakKeyDictionary()


class TestRemoteDriveContract(DriveContract):
    @pytest.fixture
    async def drive(self, node: Node, remote: RemoteDrive) -> AsyncIterator[RemoteDrive]:
        _BACKING[remote] = node.drives[0]
        yield remote
        # Nothing a test did may leave a temp file behind on the node (aborted puts included).
        await _settle(lambda: _ls(node.drives[0].root / "tmp") == [])

    async def corrupt(self, drive: RemoteDrive, fid: FragmentId, chunk: int) -> None:
        path = _BACKING[drive].fragment_path(fid)
        layout = await asyncio.to_thread(_layout, path)
        await asyncio.to_thread(_flip_byte, path, layout.chunk_offset(chunk) + layout.payload_len(chunk) // 2)

    async def truncate(self, drive: RemoteDrive, fid: FragmentId, chunk: int) -> None:
        path = _BACKING[drive].fragment_path(fid)
        layout = await asyncio.to_thread(_layout, path)
        await asyncio.to_thread(os.truncate, path, layout.chunk_offset(chunk))


async def _settle(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for something the node finishes after answering (or after its client hung up)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- raw requests --------------------------------------------------------------------------------------

MiB = 1 << 20


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
    await _settle(lambda: _ls(node.drives[0].root / "tmp") == [])


# -- cluster signatures --------------------------------------------------------------------------------


def _bad_signatures(method: str, path: str) -> list[str | None]:
    other = protocol.fragment_path("0" * 32, new_fid().name)
    return [
        None,  # no signature at all
        "",
        "t=1,h=STREAMING",  # malformed
        auth.sign(b"some-other-cluster-secret", method, path, None),
        auth.sign(SECRET, method, other, None),  # signed for another URL
        auth.sign(SECRET, "GET" if method != "GET" else "PUT", path, None),  # for another method
        auth.sign(SECRET, method, path, None, now=time.time() - auth.MAX_SKEW - 60),  # stale
        auth.sign(SECRET, method, path, None, now=time.time() + auth.MAX_SKEW + 60),  # from the future
    ]


async def test_requests_without_a_valid_signature_are_refused(node: Node, remote: RemoteDrive) -> None:
    fid, absent = new_fid(), new_fid()
    old = make_chunks(3, 1000, seed=1)
    await remote.put(fid, stream(old))
    drive_id = node.drives[0].drive_id
    body = frames(make_chunks(2, 500, seed=2))
    for target in (fid, absent):
        path = protocol.fragment_path(drive_id, target.name)
        for method, data in [("PUT", body), ("DELETE", None), ("GET", None), ("POST", None)]:
            p = path + "/verify" if method == "POST" else path
            for signature in _bad_signatures(method, p):
                status, answer = await raw(node, method, p, data, signature)
                assert status == 403, (method, signature)
                assert answer["error"] == "forbidden"
    for path in [protocol.fragments_path(drive_id), protocol.drives_path(), "/v1/nowhere"]:
        status, _ = await raw(node, "GET", path, signature=None)
        assert status == 403
    await assert_untouched(node, remote, {fid: old})


async def test_stale_signature_is_refused(node: Node, remote: RemoteDrive) -> None:
    fid = new_fid()
    await remote.put(fid, stream([b"kept"]))
    path = protocol.fragment_path(node.drives[0].drive_id, fid.name)
    stale = auth.sign(SECRET, "DELETE", path, b"", now=time.time() - auth.MAX_SKEW - 5)
    status, answer = await raw(node, "DELETE", path, signature=stale)
    assert status == 403 and "too old" in answer["message"]
    fresh = auth.sign(SECRET, "DELETE", path, b"", now=time.time() - auth.MAX_SKEW + 30)
    assert (await raw(node, "DELETE", path, signature=fresh)) == (200, {"deleted": True})


async def test_wrong_secret_gives_drive_unavailable(node: Node) -> None:
    fid = new_fid()
    stranger = RemoteDrive(node.url, node.drives[0].drive_id, b"not-the-cluster-secret-at-all")
    try:
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await stranger.put(fid, stream(make_chunks(3, 100)))
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await stranger.stat(fid)
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await collect(stranger.get(fid))
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await listed(stranger)
    finally:
        await stranger.close()
    assert await node.drives[0].delete(fid) is False


async def test_body_hash_claims_are_checked(node: Node, remote: RemoteDrive) -> None:
    fid = new_fid()
    path = protocol.fragment_path(node.drives[0].drive_id, fid.name)
    body = frames([b"hello", b"world"])
    # A put signed with the hash of another body is refused, whatever its frames say.
    wrong = auth.sign(SECRET, "PUT", path, frames([b"hello", b"there"]))
    status, answer = await raw(node, "PUT", path, body, wrong)
    assert status == 403 and answer["error"] == "forbidden"
    await assert_untouched(node, remote, {})
    # Signed with the hash of its own body, it is accepted.
    status, answer = await raw(node, "PUT", path, body, auth.sign(SECRET, "PUT", path, body))
    assert status == 200 and answer["size"] == 10
    # A delete whose (empty) body does not match the claimed hash is refused.
    status, _ = await raw(node, "DELETE", path, signature=auth.sign(SECRET, "DELETE", path, b"x"))
    assert status == 403
    await assert_untouched(node, remote, {fid: [b"hello", b"world"]})


# -- the wire format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True])
async def test_put_with_a_bad_wire_checksum_is_refused(node: Node, remote: RemoteDrive, existing: bool) -> None:
    fid = new_fid()
    old = make_chunks(2, 300, seed=1)
    if existing:
        await remote.put(fid, stream(old))
    chunks = make_chunks(4, 64 * 1024, seed=2)
    body = bytearray(frames(chunks))
    body[3 * (64 * 1024 + 8) - 1] ^= 1  # the last byte of frame 2: its crc
    status, answer = await raw(node, "PUT", protocol.fragment_path(node.drives[0].drive_id, fid.name), bytes(body))
    assert status == 400
    assert answer["error"] == "bad_checksum" and answer["chunk"] == 2
    await assert_untouched(node, remote, {fid: old} if existing else {})


_GOOD = make_chunks(3, 1000, last=10, seed=3)
_BROKEN_BODIES = {
    "no end frame": (frames(_GOOD, end=False), "incomplete"),
    "cut inside a payload": (frames(_GOOD)[:1500], "incomplete"),
    "cut inside a header": (frames(_GOOD)[:1010], "incomplete"),
    "empty body": (b"", "incomplete"),
    "bytes after the end frame": (frames(_GOOD) + b"x", "bad_framing"),
    "a frame after the end frame": (frames(_GOOD) + frames([b"more"]), "bad_framing"),
    "oversized frame": ((protocol.MAX_PAYLOAD + 1).to_bytes(4, "big") + b"x" * 100, "bad_framing"),
    "sender's error frame": (
        frames(_GOOD[:2], end=False) + protocol.error_frame(protocol.WireError("aborted", "source failed")),
        "aborted",
    ),
    "garbled error frame": (b"\xff\xff\xff\xff\x00\x00\x00\x03abc", "bad_framing"),
    "a chunk rule broken": (frames([b"abc", b"abcd"]), "invalid_stream"),
    "no chunks": (protocol.END_FRAME, "invalid_stream"),
}


@pytest.mark.parametrize("case", _BROKEN_BODIES, ids=str)
async def test_broken_put_streams_change_nothing(node: Node, remote: RemoteDrive, case: str) -> None:
    body, kind = _BROKEN_BODIES[case]
    fid = new_fid()
    old = make_chunks(2, 300, seed=1)
    await remote.put(fid, stream(old))
    for target in (fid, new_fid()):
        path = protocol.fragment_path(node.drives[0].drive_id, target.name)
        status, answer = await raw(node, "PUT", path, body)
        assert (status, answer["error"]) == (protocol.STATUS[kind], kind)
    await assert_untouched(node, remote, {fid: old})


@pytest.mark.parametrize(
    "query", ["?first=-1", "?first=01", "?first=%2B1", "?first=1&end=x", "?first=1_0", "?first=" + "9" * 30]
)
async def test_bad_ranges_are_refused(node: Node, remote: RemoteDrive, query: str) -> None:
    fid = new_fid()
    await remote.put(fid, stream([b"abc"]))
    status, answer = await raw(node, "GET", protocol.fragment_path(node.drives[0].drive_id, fid.name) + query)
    assert (status, answer["error"]) == (400, "bad_request")


async def test_bad_fragment_names_are_refused(node: Node) -> None:
    drive_id = node.drives[0].drive_id
    for name in ["x", "A" * 32 + ".0.0", "a" * 32 + ".01.0", "..", "a" * 32 + ".0.0%0A"]:
        status, answer = await raw(node, "GET", protocol.fragment_path(drive_id, name) + "/stat")
        assert (status, answer["error"]) == (400, "bad_request"), name
        status, answer = await raw(node, "PUT", protocol.fragment_path(drive_id, name), frames([b"x"]))
        assert (status, answer["error"]) == (400, "bad_request"), name
    assert _ls(node.drives[0].root / "fragments") == []


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


# -- streaming ------------------------------------------------------------------------------------------


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
        await _settle(lambda: not open_on_node())
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


# -- failures of the network and of the node -------------------------------------------------------


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
        await _settle(lambda: _ls(drive.root / "tmp") == [])
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
            assert _ls(node.drives[0].root / "tmp") == []
        with pytest.raises(FragmentNotFound):
            await remote.stat(fid)
        await remote.put(fid, stream([b"x"] * 3))
        assert await collect(remote.get(fid)) == [b"x"] * 3
        assert created == 1


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


# -- health and metrics --------------------------------------------------------------------------------


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
        await _settle(lambda: any(_fd_target(fd) == path for fd in _fds()))
        await _settle(lambda: all(_fd_target(fd) != path for fd in _fds()), within=10)  # cut off, file closed
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


async def test_closed_drive_refuses_work(node: Node) -> None:
    remote = RemoteDrive(node.url, node.drives[0].drive_id, SECRET)
    await remote.put(new_fid(), stream([b"x"]))  # so it has a session to close
    await remote.close()
    await remote.close()  # idempotent
    with pytest.raises(DriveUnavailable, match="closed"):
        await remote.stat(new_fid())
    with pytest.raises(DriveUnavailable, match="closed"):
        await remote.put(new_fid(), stream([b"x"]))


async def test_chunk_damaged_in_transit_is_never_returned() -> None:
    # A peer whose second frame arrives with a wrong crc (as a flipped bit on the way would make it).
    chunks = make_chunks(3, 1000, seed=7)
    body = bytearray(frames(chunks))
    body[2 * 1008 - 1] ^= 1

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {protocol.FRAMES_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    remote = RemoteDrive(f"http://127.0.0.1:{port}", uuid.uuid4().hex, SECRET)
    try:
        got, error = await collect_until_error(remote.get(new_fid(), 5))
        assert got == chunks[:1]
        assert isinstance(error, DriveUnavailable) and "chunk 6" in str(error) and "wire checksum" in str(error)
    finally:
        await remote.close()
        server.close()
        await server.wait_closed()
