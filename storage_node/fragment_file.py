"""One fragment file on disk (blocking code, run on a drive's threads): written under a temporary
name and committed durably (TempFile), or opened and read with every chunk verified (OpenFragment).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from storage_node.aligned_writer import AlignedWriter, open_for_write
from storage_node.drive import CorruptFragment, DriveUnavailable, FragmentId, FragmentInfo
from storage_node.drive_dir import fsync_dir
from storage_node.fragment_format import (
    HEADER_SIZE,
    Layout,
    check_chunk,
    chunk_crc,
    encode_header,
    parse_header,
    verify_chunk,
)

# Linux's DONTNEED advice starts writeback of dirty pages in the range and drops only clean ones.
_START_WRITEBACK = getattr(os, "POSIX_FADV_DONTNEED", None) if sys.platform == "linux" else None


class OpenFragment:
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


class TempFile:
    """A fragment being written under root/tmp; commit() makes it durable and visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # abort() must wait for a write running on another thread
        self._fd, direct = open_for_write(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
        self._out = AlignedWriter(self._fd, direct)
        self._out.append([bytes(HEADER_SIZE)])  # the header is written last, once the size is known

    def write(self, payloads: list[bytes]) -> None:
        with self._lock:
            self._write(payloads)

    def commit(self, payloads: list[bytes], layout: Layout, final: Path) -> float:
        """Write the rest and the header, fsync, rename into place, fsync the directory: then the
        fragment survives a crash. Returns its mtime."""
        with self._lock:
            self._write(payloads)
            if self._out.offset != layout.file_size:
                raise AssertionError(f"wrote {self._out.offset} bytes, layout says {layout.file_size}")
            self._out.patch_head(encode_header(layout))
            self._out.finish()
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
                fsync_dir(final.parent.parent)
                os.rename(self.path, final)
            fsync_dir(final.parent)
            return mtime

    def abort(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._out.release()
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
        start, end = self._out.append(buffers)
        if _START_WRITEBACK is not None and end > start:
            # Through the page cache (no O_DIRECT here): start writing these pages out now (pages
            # still dirty stay cached), so the fsync at commit has little left to wait for.
            os.posix_fadvise(self._fd, start, end - start, _START_WRITEBACK)
