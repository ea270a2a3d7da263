"""LocalDrive: the Drive seam over a directory.

    root/drive.json                     {"id": <uuid4 hex>}, the drive's stable identity
    root/fragments/<vv>/<fid.name>      complete fragments; vv = first two hex digits of the version
    root/tmp/                           fragments being written; emptied on open

Blocking file I/O runs on a small thread pool owned by the drive, so a hung disk ties up its
own threads and not the event loop or the other drives.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from storage_node.drive import (
    CorruptFragment,
    DriveError,
    DriveUnavailable,
    FragmentId,
    FragmentInfo,
    FragmentNotFound,
    InvalidFragmentStream,
)
from storage_node.fragment_format import (
    CRC_SIZE,
    HEADER_SIZE,
    MAX_CHUNK_SIZE,
    Layout,
    check_chunk,
    chunk_crc,
    encode_header,
    parse_header,
    verify_chunk,
)

T = TypeVar("T")

# One thread hop moves about this much data: big enough to amortise the hop over tiny chunks,
# small enough that memory stays within a few chunks and the first bytes of a get come soon.
WRITE_BATCH_BYTES = 1 << 20
# Linux's DONTNEED advice starts writeback of dirty pages in the range and drops only clean ones.
_START_WRITEBACK = getattr(os, "POSIX_FADV_DONTNEED", None) if sys.platform == "linux" else None
READ_BATCH_BYTES = 1 << 20
VERIFY_BATCH_BYTES = 4 << 20
LIST_BATCH_FILES = 256

_IOV_MAX = os.sysconf("SC_IOV_MAX")
_DRIVE_ID_RE = re.compile(r"[0-9a-f]{32}")


class LocalDrive:
    """A Drive over a local directory. Create with `await LocalDrive.open(root)`."""

    def __init__(self, root: Path, drive_id: str, executor: ThreadPoolExecutor) -> None:
        self.root = root
        self.drive_id = drive_id
        self._fragments = root / "fragments"
        self._tmp = root / "tmp"
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, root: Path | str, *, io_threads: int = 8, keep_tmp: bool = False) -> LocalDrive:
        """Create the layout if needed, check the directory is writable, clear stale temp files.

        keep_tmp: another process shares the drive and may be writing (the drive was prepared,
        and its temp files cleared, before that process started).
        Raises DriveUnavailable, with a one-line message, if the directory cannot be used.
        """
        root = Path(root)
        executor = ThreadPoolExecutor(io_threads, thread_name_prefix=f"drive-{root.name}")
        try:
            drive_id = await asyncio.get_running_loop().run_in_executor(executor, prepare_drive, root, not keep_tmp)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(root, drive_id, executor)

    async def close(self) -> None:
        """Stop accepting work and wait for in-flight I/O (and its file closes) to finish."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._executor.shutdown, True)

    def __repr__(self) -> str:
        return f"LocalDrive({str(self.root)!r}, id={self.drive_id})"

    def fragment_path(self, fid: FragmentId) -> Path:
        return self._fragments / fid.version[:2] / fid.name

    # -- the Drive seam -------------------------------------------------------------------------

    async def put(self, fid: FragmentId, chunks: AsyncIterable[bytes]) -> FragmentInfo:
        tmp = self._tmp / f"{fid.name}.{uuid.uuid4().hex}.tmp"
        writer: _TempFile = await self._run_owned(_TempFile.abort, _TempFile, tmp)
        inflight: asyncio.Future[None] | None = None
        try:
            chunk_size = size = 0
            last_len = 0
            batch: list[bytes] = []
            batch_bytes = 0
            async for chunk in chunks:
                n = len(chunk)
                if n == 0:
                    raise InvalidFragmentStream(f"{fid.name}: empty chunk")
                if chunk_size == 0:
                    if n > MAX_CHUNK_SIZE:
                        raise InvalidFragmentStream(f"{fid.name}: chunk of {n} bytes is too large")
                    chunk_size = n
                elif last_len != chunk_size:
                    raise InvalidFragmentStream(f"{fid.name}: {last_len}-byte chunk before the last, not {chunk_size}")
                elif n > chunk_size:
                    raise InvalidFragmentStream(f"{fid.name}: a {n}-byte chunk after {chunk_size}-byte ones")
                last_len = n
                size += n
                batch.append(chunk)
                batch_bytes += n
                if batch_bytes >= WRITE_BATCH_BYTES:
                    # One write in flight while the next batch arrives: memory is two batches.
                    if inflight is not None:
                        await self._wait(inflight)
                    inflight = self._submit(writer.write, batch)
                    batch, batch_bytes = [], 0
            if chunk_size == 0:
                raise InvalidFragmentStream(f"{fid.name}: no chunks")
            if inflight is not None:
                await self._wait(inflight)
                inflight = None
            layout = Layout(chunk_size, size)
            mtime = await self._run(writer.commit, batch, layout, self.fragment_path(fid))
        except BaseException:
            if inflight is not None:
                inflight.cancel()  # its outcome no longer matters; abort() waits if it is running
            # abort must run even if we are cancelled again meanwhile: shielded, not awaited directly.
            try:
                await asyncio.shield(asyncio.wrap_future(self._executor.submit(writer.abort)))
            except RuntimeError:  # pool shut down: nothing of ours is running on it any more
                writer.abort()
            except OSError:
                pass  # the temp file is cleared on the next open; the original error matters more
            raise
        return FragmentInfo(fid, layout.size, layout.chunk_size, layout.chunks, mtime)

    async def get(self, fid: FragmentId, first_chunk: int = 0, end_chunk: int | None = None) -> AsyncIterator[bytes]:
        if first_chunk < 0 or (end_chunk is not None and end_chunk < 0):
            raise ValueError(f"invalid chunk range [{first_chunk}, {end_chunk})")
        try:
            frag: _OpenFragment = await self._run_owned(_OpenFragment.close, self._open_fragment, fid)
        except CorruptFragment as e:
            # Without a header no chunk can be located: the first one asked for is the one lost.
            raise CorruptFragment(fid, first_chunk, e.args[0].partition(": ")[2]) from e
        ahead: asyncio.Future[tuple[list[bytes], CorruptFragment | None]] | None = None
        try:
            layout = frag.layout
            end = layout.chunks if end_chunk is None else min(end_chunk, layout.chunks)
            step = max(1, READ_BATCH_BYTES // (layout.chunk_size + CRC_SIZE))
            j = first_chunk
            if j < end:
                ahead = self._submit(frag.read, j, min(step, end - j))
            while ahead is not None:
                payloads, error = await self._wait(ahead)
                j += min(step, end - j)
                # The next batch is read while this one is consumed: a reader sending to a client
                # would otherwise wait for the disk at every batch.
                ahead = self._submit(frag.read, j, min(step, end - j)) if j < end and error is None else None
                for payload in payloads:
                    yield payload
                if error is not None:
                    raise error
        finally:
            if ahead is not None:
                ahead.cancel()  # a consumer that stopped early does not want it; close waits for it
            self._close_later(frag)

    async def stat(self, fid: FragmentId) -> FragmentInfo:
        return await self._run(self._stat, fid)

    async def delete(self, fid: FragmentId) -> bool:
        return await self._run(self._delete, fid)

    async def list(self) -> AsyncIterator[FragmentInfo]:
        shards: list[str] = await self._run(self._list_shards)
        for shard in shards:
            names: list[str] = await self._run(self._list_shard, shard)
            for i in range(0, len(names), LIST_BATCH_FILES):
                infos = await self._run(self._describe, shard, names[i : i + LIST_BATCH_FILES])
                for info in infos:
                    yield info

    async def verify(self, fid: FragmentId) -> list[int]:
        try:
            frag: _OpenFragment = await self._run_owned(_OpenFragment.close, self._open_fragment, fid)
        except CorruptFragment:
            return [0]  # unreadable header: nothing can be located, report the first chunk
        try:
            layout = frag.layout
            step = max(1, VERIFY_BATCH_BYTES // (layout.chunk_size + CRC_SIZE))
            bad: list[int] = []
            for j in range(0, layout.chunks, step):
                bad += await self._run(frag.verify, j, min(step, layout.chunks - j))
            return bad
        finally:
            self._close_later(frag)

    # -- plumbing ---------------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise DriveUnavailable(f"drive {self.root} is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _wait(self, fut: asyncio.Future[T]) -> T:
        try:
            return await fut
        except OSError as e:
            raise DriveUnavailable(f"drive {self.root}: {e.strerror or e}") from e

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._wait(self._submit(fn, *args))

    async def _run_owned(self, release: Callable[[T], object], fn: Callable[..., T], *args: Any) -> T:
        """Like _run for a call that returns an open resource: if we are cancelled while it runs,
        `release` disposes of the result once the call finishes, so no descriptor or file leaks."""
        if self._closed:
            raise DriveUnavailable(f"drive {self.root} is closed")
        cf = self._executor.submit(fn, *args)
        try:
            return await self._wait(asyncio.wrap_future(cf))
        except asyncio.CancelledError:
            cf.add_done_callback(lambda f: f.cancelled() or f.exception() or release(f.result()))
            raise

    def _close_later(self, frag: _OpenFragment) -> None:
        """Close on the pool, after any read still running there; never awaits (used in finally)."""
        try:
            self._executor.submit(frag.close)
        except RuntimeError:  # pool shut down: no read can be running any more
            frag.close()

    def _missing(self, fid: FragmentId) -> DriveError:
        # A fragments directory that is gone means an unmounted or wiped drive, not a missing fragment.
        if self._fragments.is_dir():
            return FragmentNotFound(fid.name)
        return DriveUnavailable(f"drive {self.root}: fragments directory is missing")

    # The methods below run on the pool.

    def _open_fragment(self, fid: FragmentId) -> _OpenFragment:
        try:
            fd = os.open(self.fragment_path(fid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._missing(fid) from None
        try:
            return _OpenFragment(fid, fd)
        except BaseException:
            os.close(fd)
            raise

    def _stat(self, fid: FragmentId) -> FragmentInfo:
        frag = self._open_fragment(fid)
        frag.close()
        return frag.info

    def _delete(self, fid: FragmentId) -> bool:
        path = self.fragment_path(fid)
        try:
            os.unlink(path)
        except FileNotFoundError:
            error = self._missing(fid)
            if isinstance(error, FragmentNotFound):
                return False
            raise error from None
        _fsync_dir(path.parent)
        return True

    def _list_shards(self) -> list[str]:
        try:
            entries = list(os.scandir(self._fragments))
        except FileNotFoundError:
            raise DriveUnavailable(f"drive {self.root}: fragments directory is missing") from None
        return [e.name for e in entries if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]

    def _list_shard(self, shard: str) -> list[str]:
        try:
            return os.listdir(self._fragments / shard)
        except FileNotFoundError:
            return []

    def _describe(self, shard: str, names: list[str]) -> list[FragmentInfo]:
        infos = []
        for name in names:
            try:
                fid = FragmentId.parse(name)
            except ValueError:
                continue  # temp or stray file
            if fid.name != name or fid.version[:2] != shard:
                continue  # not where put() would have written it, so get() could not read it
            try:
                infos.append(self._stat(fid))
            except FragmentNotFound:
                continue  # deleted since the directory was read
            except CorruptFragment:
                # Listed anyway, with zero sizes, so a scrubber finds it; verify reports chunk 0.
                try:
                    mtime = os.stat(self.fragment_path(fid)).st_mtime
                except FileNotFoundError:
                    continue
                infos.append(FragmentInfo(fid, 0, 0, 0, mtime))
        return infos


class _OpenFragment:
    """An open fragment file. All reads use this one descriptor, so a get that races an
    overwrite keeps reading the version it opened instead of mixing two."""

    def __init__(self, fid: FragmentId, fd: int) -> None:
        self.fid = fid
        self._fd = fd
        self._lock = threading.Lock()  # orders close() after a read running on another thread
        st = os.fstat(fd)
        self.layout = parse_header(fid, os.pread(fd, HEADER_SIZE, 0))
        self.file_size = st.st_size
        self.intact = self.layout.intact_chunks(st.st_size)
        self.info = FragmentInfo(fid, self.layout.size, self.layout.chunk_size, self.layout.chunks, st.st_mtime)

    def read(self, first: int, count: int) -> tuple[list[bytes], CorruptFragment | None]:
        """Verified payloads of chunks [first, first+count), up to the first bad one, and its error."""
        end = first + count
        readable = min(end, self.intact)
        payloads: list[bytes] = []
        if first < readable:
            frames = self._read_frames(first, readable)
            for j, frame in enumerate(frames, first):
                try:
                    if len(frame) != self.layout.framed_len(j):
                        raise CorruptFragment(self.fid, j, "truncated")
                    payloads.append(verify_chunk(self.fid, j, frame))
                except CorruptFragment as e:
                    return payloads, e
        if readable < end:
            return payloads, CorruptFragment(self.fid, max(first, readable), self._damage())
        return payloads, None

    def verify(self, first: int, count: int) -> list[int]:
        end = first + count
        readable = min(end, self.intact)
        bad = []
        if first < readable:
            frames = self._read_frames(first, readable)
            bad = [
                j
                for j, frame in enumerate(frames, first)
                if len(frame) != self.layout.framed_len(j) or not check_chunk(frame)
            ]
        return bad + list(range(max(first, readable), end))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _read_frames(self, first: int, end: int) -> list[memoryview]:
        offset, length = self.layout.span(first, end)
        with self._lock:
            if self._fd < 0:
                raise DriveUnavailable(f"fragment {self.fid.name}: read after close")
            data = memoryview(os.pread(self._fd, length, offset))
        frames, pos = [], 0
        for j in range(first, end):
            n = self.layout.framed_len(j)
            frames.append(data[pos : pos + n])  # short if the file shrank since it was opened
            pos += n
        return frames

    def _damage(self) -> str:
        return "trailing bytes after the last chunk" if self.file_size > self.layout.file_size else "truncated"


class _TempFile:
    """A fragment being written under root/tmp; commit() makes it durable and visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # abort() must wait for a write running on another thread
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._offset = HEADER_SIZE  # the header is written last, once the size is known

    def write(self, payloads: list[bytes]) -> None:
        with self._lock:
            self._write(payloads)

    def commit(self, payloads: list[bytes], layout: Layout, final: Path) -> float:
        """Write the rest and the header, fsync, rename into place, fsync the directory: then the
        fragment survives a crash. Returns its mtime."""
        with self._lock:
            self._write(payloads)
            if self._offset != layout.file_size:
                raise AssertionError(f"wrote {self._offset} bytes, layout says {layout.file_size}")
            os.pwrite(self._fd, encode_header(layout), 0)
            os.fsync(self._fd)
            mtime = os.fstat(self._fd).st_mtime
            os.close(self._fd)
            self._fd = -1
            try:
                os.rename(self.path, final)
            except FileNotFoundError:
                # First fragment in this shard: create the shard directory, durably, and retry.
                # os.mkdir (not makedirs) so a missing fragments/ directory fails loudly.
                try:
                    os.mkdir(final.parent)
                except FileExistsError:
                    pass
                _fsync_dir(final.parent.parent)
                os.rename(self.path, final)
            _fsync_dir(final.parent)
            return mtime

    def abort(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _write(self, payloads: list[bytes]) -> None:
        if self._fd < 0:
            raise DriveUnavailable(f"{self.path}: write after close")
        buffers: list[bytes | memoryview] = []
        for payload in payloads:
            buffers += (payload, chunk_crc(payload))
        start = self._offset
        self._offset = _pwrite_all(self._fd, buffers, start)
        if _START_WRITEBACK is not None:
            # Start writing these pages out now (pages still dirty stay cached), so the fsync at
            # commit has little left to wait for instead of the whole fragment.
            os.posix_fadvise(self._fd, start, self._offset - start, _START_WRITEBACK)


def _pwrite_all(fd: int, buffers: list[bytes | memoryview], offset: int) -> int:
    """Write buffers at offset with as few syscalls as the iovec limit allows; returns the end offset."""
    views = [memoryview(b) for b in buffers]
    i = 0
    while i < len(views):
        n = os.pwritev(fd, views[i : i + _IOV_MAX], offset)
        if n == 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        offset += n
        while n:  # skip what was written; a partial write leaves the tail of one buffer
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0
    return offset


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_drive(root: Path, clear_tmp: bool = True) -> str:
    """Make root a usable drive (blocking); return its id. Raises DriveUnavailable with a one-line reason."""
    try:
        return _prepare(root, clear_tmp)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(root) else ""
        raise DriveUnavailable(f"cannot use {root} as a drive: {e.strerror or e}{where}") from e


def _prepare(root: Path, clear_tmp: bool) -> str:
    for d in (root, root / "fragments", root / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    _fsync_dir(root)
    # Anything in tmp/ is a put that never committed (crash or kill): it was never visible.
    for entry in os.scandir(root / "tmp") if clear_tmp else ():
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    # Prove the directory takes writes and fsyncs now, not at the first client PUT.
    probe = root / "tmp" / f"probe.{uuid.uuid4().hex}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b"probe")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(probe)
    return _load_or_create_id(root)


def _load_or_create_id(root: Path) -> str:
    path = root / "drive.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        drive_id = uuid.uuid4().hex
        tmp = root / "tmp" / f"drive.json.{uuid.uuid4().hex}"
        with open(tmp, "w") as f:
            json.dump({"id": drive_id}, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        _fsync_dir(root)
        return drive_id
    # Never replace an identity we cannot read: the cluster knows the drive by it.
    try:
        drive_id = json.loads(text)["id"]
    except (ValueError, KeyError, TypeError):
        drive_id = None
    if not isinstance(drive_id, str) or not _DRIVE_ID_RE.fullmatch(drive_id):
        raise DriveUnavailable(f"cannot use {root} as a drive: {path} does not hold a valid drive id")
    return drive_id
