"""RemoteDrive and the storage node: the wire format. Broken frames, bad checksums, ranges and names are
refused and change nothing; a chunk damaged on the way is never handed out.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from storage_node import protocol
from storage_node.client import RemoteDrive
from storage_node.drive import DriveUnavailable
from tests.drive_contract import collect_until_error, make_chunks, new_fid, stream
from tests.remote_drive_helpers import SECRET, Node, assert_untouched, frames, ls, raw


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
    assert ls(node.drives[0].root / "fragments") == []


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
