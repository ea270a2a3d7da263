"""LocalDrive: the drive contract over a temp directory, plus what only a local directory has."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage_node import fragment_format as ff
from storage_node.drive import (
    CorruptFragment,
    DriveUnavailable,
    FragmentId,
    FragmentNotFound,
)
from storage_node.local_drive import LocalDrive
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


def frame_chunk(payload: bytes) -> bytes:
    """A chunk as it lies on disk: its payload, then the payload's checksum."""
    return payload + ff.chunk_crc(payload)


def _layout(path: Path) -> ff.Layout:
    with open(path, "rb") as f:
        return ff.parse_header(FragmentId.parse(path.name), f.read(ff.HEADER_SIZE))


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


class TestLocalDriveContract(DriveContract):
    @pytest.fixture
    async def drive(self, tmp_path: Path) -> AsyncIterator[LocalDrive]:
        d = await LocalDrive.open(tmp_path / "drive")
        yield d
        await d.close()

    async def corrupt(self, drive: LocalDrive, fid: FragmentId, chunk: int) -> None:
        path = drive.fragment_path(fid)
        layout = await asyncio.to_thread(_layout, path)
        await asyncio.to_thread(_flip_byte, path, layout.chunk_offset(chunk) + layout.payload_len(chunk) // 2)

    async def truncate(self, drive: LocalDrive, fid: FragmentId, chunk: int) -> None:
        path = drive.fragment_path(fid)
        layout = await asyncio.to_thread(_layout, path)
        await asyncio.to_thread(os.truncate, path, layout.chunk_offset(chunk))


@pytest.fixture
async def drive(tmp_path: Path) -> AsyncIterator[LocalDrive]:
    d = await LocalDrive.open(tmp_path / "drive")
    yield d
    await d.close()


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _ls(path: Path) -> list[str]:
    return sorted(os.listdir(path))


# -- opening ----------------------------------------------------------------------------------------


async def test_drive_id_persists_across_reopen(tmp_path: Path) -> None:
    first = await LocalDrive.open(tmp_path / "d")
    await first.close()
    again = await LocalDrive.open(tmp_path / "d")
    await again.close()
    other = await LocalDrive.open(tmp_path / "e")
    await other.close()
    assert len(first.drive_id) == 32 and int(first.drive_id, 16) >= 0
    assert again.drive_id == first.drive_id
    assert other.drive_id != first.drive_id
    assert json.loads((tmp_path / "d" / "drive.json").read_text()) == {"id": first.drive_id}


async def test_fragments_survive_reopen(tmp_path: Path) -> None:
    d = await LocalDrive.open(tmp_path / "d")
    fid = new_fid()
    info = await d.put(fid, stream([b"abc", b"d"]))
    await d.close()
    d = await LocalDrive.open(tmp_path / "d")
    try:
        assert await d.stat(fid) == info
        assert await collect(d.get(fid)) == [b"abc", b"d"]
    finally:
        await d.close()


async def test_open_accepts_an_existing_empty_directory(tmp_path: Path) -> None:
    d = await LocalDrive.open(str(tmp_path))
    await d.close()
    assert d.root == tmp_path
    assert _ls(tmp_path) == ["drive.json", "fragments", "tessera.lock", "tmp"]


async def test_invalid_drive_json_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "drive.json").write_text('{"id": "not-an-id"}')
    with pytest.raises(DriveUnavailable, match=r"drive\.json"):
        await LocalDrive.open(tmp_path)
    assert (tmp_path / "drive.json").read_text() == '{"id": "not-an-id"}'


async def test_stale_temp_files_cleaned_on_open(tmp_path: Path) -> None:
    d = await LocalDrive.open(tmp_path)
    fid = new_fid()
    await d.put(fid, stream([b"kept"]))
    await d.close()
    (tmp_path / "tmp" / f"{new_fid().name}.1234.tmp").write_bytes(b"half a fragment")
    (tmp_path / "tmp" / "leftover-dir").mkdir()
    (tmp_path / "tmp" / "leftover-dir" / "x").write_bytes(b"x")
    d = await LocalDrive.open(tmp_path)
    try:
        assert _ls(tmp_path / "tmp") == []
        assert await collect(d.get(fid)) == [b"kept"]
    finally:
        await d.close()


async def test_unusable_directory_gives_drive_unavailable(tmp_path: Path) -> None:
    # Tests run as root, for whom permission bits block nothing: use a regular file as the parent.
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DriveUnavailable) as ei:
        await LocalDrive.open(blocker / "drive")
    message = str(ei.value)
    assert "\n" not in message
    assert str(blocker / "drive") in message
    assert "Not a directory" in message or "File exists" in message


async def test_root_that_is_a_file_gives_drive_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"")
    with pytest.raises(DriveUnavailable, match=str(root)):
        await LocalDrive.open(root)


# -- layout on disk --------------------------------------------------------------------------------


async def test_file_layout(drive: LocalDrive) -> None:
    fid = new_fid(part=2, index=4)
    chunks = make_chunks(3, 1000, last=10)
    await drive.put(fid, stream(chunks))
    path = drive.fragment_path(fid)
    assert path == drive.root / "fragments" / fid.version[:2] / f"{fid.version}.2.4"
    data = path.read_bytes()
    assert data[:4] == b"TSF1"
    assert len(data) == ff.HEADER_SIZE + 2010 + 3 * ff.CRC_SIZE
    layout = ff.parse_header(fid, data)
    assert (layout.chunk_size, layout.size, layout.chunks) == (1000, 2010, 3)
    for j, chunk in enumerate(chunks):
        off = layout.chunk_offset(j)
        assert data[off : off + layout.framed_len(j)] == frame_chunk(chunk)
    assert _ls(drive.root / "tmp") == []


async def test_failed_put_removes_its_temp_file(drive: LocalDrive) -> None:
    with pytest.raises(Boom):
        await drive.put(new_fid(), stream(make_chunks(40, 100_000), fail_after=30))
    assert _ls(drive.root / "tmp") == []


async def test_cancelled_put_removes_its_temp_file(drive: LocalDrive) -> None:
    gate = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for chunk in make_chunks(30, 100_000):
            yield chunk
        gate.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(drive.put(new_fid(), stalled()))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _ls(drive.root / "tmp") == []


async def test_list_skips_temp_and_stray_files(drive: LocalDrive) -> None:
    fid = new_fid()
    info = await drive.put(fid, stream([b"real"]))
    shard = drive.fragment_path(fid).parent
    (shard / f"{fid.name}.tmp").write_bytes(b"x")
    (shard / "README").write_bytes(b"x")
    (shard / f"{fid.version}.00.0").write_bytes(b"x")  # non-canonical spelling of a fragment id
    (drive.root / "fragments" / "zz").mkdir()
    (drive.root / "fragments" / "zz" / new_fid().name).write_bytes(b"x")
    (drive.root / "fragments" / "stray-file").write_bytes(b"x")
    # A copy of another fragment in the wrong shard must not make list() report that one twice.
    other = FragmentId(("00" if fid.version[:2] != "00" else "11") + fid.version[2:], 0, 0)
    other_info = await drive.put(other, stream([b"other"]))
    shutil.copy(drive.fragment_path(other), shard / other.name)
    assert await listed(drive) == {fid: info, other: other_info}


async def test_directory_removed_gives_drive_unavailable(drive: LocalDrive) -> None:
    fid = new_fid()
    await drive.put(fid, stream([b"abc"]))
    shutil.rmtree(drive.root)
    with pytest.raises(DriveUnavailable):
        await drive.stat(fid)
    with pytest.raises(DriveUnavailable):
        await collect(drive.get(fid))
    with pytest.raises(DriveUnavailable):
        await drive.delete(fid)
    with pytest.raises(DriveUnavailable):
        await drive.verify(fid)
    with pytest.raises(DriveUnavailable):
        await drive.put(new_fid(), stream([b"abc"]))
    with pytest.raises(DriveUnavailable):
        await listed(drive)
    assert not drive.root.exists()  # nothing recreated on what may be the wrong filesystem


async def test_os_error_gives_drive_unavailable(drive: LocalDrive) -> None:
    fid = new_fid()
    await drive.put(fid, stream([b"abc"]))
    shard = drive.fragment_path(fid).parent
    shutil.rmtree(shard)
    shard.write_bytes(b"")  # now every path through it fails with ENOTDIR
    with pytest.raises(DriveUnavailable):
        await drive.stat(fid)
    with pytest.raises(DriveUnavailable):
        await collect(drive.get(fid))
    with pytest.raises(DriveUnavailable):
        await drive.put(fid, stream([b"abc"]))
    assert _ls(drive.root / "tmp") == []


async def test_closed_drive_refuses_work(tmp_path: Path) -> None:
    d = await LocalDrive.open(tmp_path)
    await d.close()
    with pytest.raises(DriveUnavailable):
        await d.stat(new_fid())
    with pytest.raises(DriveUnavailable):
        await d.put(new_fid(), stream([b"x"]))


async def test_put_streams_without_reading_ahead(drive: LocalDrive) -> None:
    # The drive consumes the stream as it writes: a producer that has handed over N chunks
    # sees data on disk before the stream ends (memory stays bounded by a few chunks).
    seen_on_disk = asyncio.Event()

    async def producer() -> AsyncIterator[bytes]:
        for chunk in make_chunks(16, 1 << 20):
            yield chunk
        for _ in range(200):
            if any(p.stat().st_size > 4 << 20 for p in (drive.root / "tmp").iterdir()):
                seen_on_disk.set()
                break
            await asyncio.sleep(0.01)
        yield b"end"

    await drive.put(new_fid(), producer())
    assert seen_on_disk.is_set()


# -- reading ------------------------------------------------------------------------------------------


async def test_get_reads_one_version_while_overwritten(drive: LocalDrive) -> None:
    fid = new_fid()
    old = make_chunks(20, 1 << 20, seed=1)
    await drive.put(fid, stream(old))
    it = drive.get(fid)
    first = await it.__anext__()
    new = make_chunks(20, 1 << 20, seed=2)
    await drive.put(fid, stream(new))
    rest = [c async for c in it]
    assert [first, *rest] == old
    assert await collect(drive.get(fid)) == new


# One read batch, and several: then the next batch is being read when the reader walks away.
@pytest.mark.parametrize("count,size", [(4, 1000), (8, 512 << 10)])
async def test_abandoned_get_closes_its_file(drive: LocalDrive, count: int, size: int) -> None:
    fid = new_fid()
    chunks = make_chunks(count, size)
    await drive.put(fid, stream(chunks))
    await drive.stat(fid)
    before = _open_fds()
    for _ in range(20):
        it = drive.get(fid)
        await it.__anext__()
        await it.aclose()
    assert await collect(drive.get(fid)) == chunks
    await drive.verify(fid)
    for _ in range(200):  # closes run on the drive's pool, after any read still running there
        if _open_fds() <= before:
            break
        await asyncio.sleep(0.01)
    assert _open_fds() <= before


@pytest.mark.parametrize("keep", [1, 3, 4, 5, 500, 999, 1003])
async def test_truncated_inside_a_chunk(drive: LocalDrive, keep: int) -> None:
    fid = new_fid()
    chunks = make_chunks(4, 1000, last=600)
    await drive.put(fid, stream(chunks))
    path = drive.fragment_path(fid)
    layout = _layout(path)
    os.truncate(path, layout.chunk_offset(2) + keep)
    bad = 2 if keep < 1004 else 3
    assert await drive.verify(fid) == list(range(bad, 4))
    got, error = await collect_until_error(drive.get(fid))
    assert got == chunks[:bad]
    assert isinstance(error, CorruptFragment) and error.chunk == bad


async def test_trailing_bytes_flag_the_last_chunk(drive: LocalDrive) -> None:
    fid = new_fid()
    chunks = make_chunks(3, 100)
    await drive.put(fid, stream(chunks))
    _append(drive.fragment_path(fid), b"junk")
    assert await drive.verify(fid) == [2]
    got, error = await collect_until_error(drive.get(fid))
    assert got == chunks[:2] and isinstance(error, CorruptFragment) and error.chunk == 2


@pytest.mark.parametrize("offset", [0, 4, 6, 10, 18, 21])
async def test_damaged_header(drive: LocalDrive, offset: int) -> None:
    fid = new_fid()
    await drive.put(fid, stream(make_chunks(3, 100)))
    _flip_byte(drive.fragment_path(fid), offset)
    with pytest.raises(CorruptFragment) as ei:
        await drive.stat(fid)
    assert ei.value.chunk == 0
    assert await drive.verify(fid) == [0]
    got, error = await collect_until_error(drive.get(fid, 1))
    assert got == [] and isinstance(error, CorruptFragment) and error.chunk == 1
    # Still listed, so a scrubber finds it.
    (info,) = (await listed(drive)).values()
    assert (info.fid, info.chunks, info.size) == (fid, 0, 0)


async def test_file_shorter_than_header(drive: LocalDrive) -> None:
    fid = new_fid()
    await drive.put(fid, stream([b"x"]))
    os.truncate(drive.fragment_path(fid), 7)
    assert await drive.verify(fid) == [0]
    with pytest.raises(CorruptFragment):
        await collect(drive.get(fid))


# -- fragment ids stay inside the drive ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../" + "a" * 32 + ".0.0",
        "a" * 32 + ".0.0/../../x",
        "/etc/passwd",
        "..",
        "a" * 32 + ".0.0\n",
        "A" * 32 + ".0.0",
        "a" * 31 + ".0.0",
        "a" * 32 + ".01.0",
        "a" * 32 + ".0.\u0663",  # a non-ASCII digit
        "a" * 32 + ".100000.0",
        "a" * 32 + ".-1.0",
        "a" * 32 + ".0",
    ],
)
def test_bad_fragment_names_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        FragmentId.parse(name)


@pytest.mark.parametrize(
    ("version", "part", "index"),
    [("../" + "a" * 29, 0, 0), ("a" * 32, "0/../..", 0), ("a" * 32, 0, "1/x"), ("a" * 32, -1, 0), ("", 0, 0)],
)
def test_bad_fragment_ids_rejected(version: str, part: object, index: object) -> None:
    with pytest.raises(ValueError):
        FragmentId(version, part, index)  # type: ignore[arg-type]


async def test_fragment_paths_stay_under_root(drive: LocalDrive) -> None:
    for fid in [new_fid(), FragmentId("0" * 32, 10000, 999), FragmentId("f" * 32, 0, 0)]:
        path = drive.fragment_path(fid)
        assert path.resolve().is_relative_to((drive.root / "fragments").resolve())
        assert path.name == fid.name and FragmentId.parse(path.name) == fid
    with pytest.raises(FragmentNotFound):
        await drive.stat(FragmentId("0" * 32, 10000, 999))


# -- the format on its own ------------------------------------------------------------------------


def test_layout_arithmetic() -> None:
    layout = ff.Layout(chunk_size=10, size=25)
    assert layout.chunks == 3
    assert [layout.payload_len(j) for j in range(3)] == [10, 10, 5]
    assert [layout.chunk_offset(j) for j in range(3)] == [ff.HEADER_SIZE + 14 * j for j in range(3)]
    assert layout.file_size == ff.HEADER_SIZE + 25 + 12
    assert layout.span(1, 3) == (ff.HEADER_SIZE + 14, 14 + 9)
    assert layout.intact_chunks(layout.file_size) == 3
    assert layout.intact_chunks(layout.file_size - 1) == 2
    assert layout.intact_chunks(ff.HEADER_SIZE + 28) == 2  # cut at a chunk boundary
    assert layout.intact_chunks(ff.HEADER_SIZE + 27) == 1
    assert layout.intact_chunks(3) == 0
    assert layout.intact_chunks(layout.file_size + 1) == 2
    assert ff.Layout(10, 30).chunks == 3 and ff.Layout(10, 30).payload_len(2) == 10
    with pytest.raises(IndexError):
        layout.chunk_offset(3)
    for bad in [(0, 1), (1, 0), (2**32, 1)]:
        with pytest.raises(ValueError):
            ff.Layout(*bad)


def test_header_round_trip_and_damage() -> None:
    fid = new_fid()
    layout = ff.Layout(1 << 20, 5 * (1 << 20) + 3)
    header = ff.encode_header(layout)
    assert len(header) == ff.HEADER_SIZE and header.startswith(b"TSF1")
    assert ff.parse_header(fid, header + b"rest of file") == layout
    for i in range(len(header)):
        damaged = bytearray(header)
        damaged[i] ^= 1
        with pytest.raises(CorruptFragment):
            ff.parse_header(fid, bytes(damaged))
    with pytest.raises(CorruptFragment, match="truncated header"):
        ff.parse_header(fid, header[:-1])


def test_chunk_framing() -> None:
    fid = new_fid()
    framed = frame_chunk(b"hello")
    assert len(framed) == 5 + ff.CRC_SIZE
    assert framed[5:] == (0x9A71BB4C).to_bytes(4, "big")  # crc32c("hello")
    assert ff.verify_chunk(fid, 7, framed) == b"hello"
    assert ff.check_chunk(framed)
    for damaged in [b"jello" + framed[5:], framed[:5] + b"\0\0\0\0", framed[:4], b""]:
        assert not ff.check_chunk(damaged)
        with pytest.raises(CorruptFragment) as ei:
            ff.verify_chunk(fid, 7, damaged)
        assert ei.value.chunk == 7 and ei.value.fid == fid
