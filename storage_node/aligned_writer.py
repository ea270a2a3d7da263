"""Sequential O_DIRECT writes of a file's unaligned pieces through reused, page-aligned staging buffers.

A fragment file is a 22-byte header and framed chunks whose lengths are anything: none of it is
aligned. Written through the page cache, every byte is copied into the cache and written back later;
here the pieces are copied once into an aligned buffer and whole blocks go straight to the disk, which
the issue measured at a fraction of the kernel CPU per byte. The tail block is written padded and the
file cut to its size at the end; the caller still fsyncs (the file's size and extents are metadata).
Where O_DIRECT is refused (tmpfs, some filesystems), the same calls write through the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Iterable

ALIGN = 4096  # a multiple of every logical block size O_DIRECT asks alignment to
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_BIG_COPY = 16 << 10  # pieces this large are copied by ctypes.memmove, which releases the GIL meanwhile
# Bytes staged per file: a batch larger than this goes out in several writes, so a PUT holds six of
# these rather than a copy of each drive's whole batch.
STAGE = 256 << 10
_POOL_MAX = 32  # idle staging buffers kept for reuse
_pool: list[mmap.mmap] = []
_pool_lock = threading.Lock()


def _round_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _take() -> mmap.mmap:
    """A page-aligned staging buffer (anonymous mmaps are page-aligned)."""
    with _pool_lock:
        if _pool:
            return _pool.pop()
    return mmap.mmap(-1, STAGE)


def _give(buf: mmap.mmap) -> None:
    with _pool_lock:
        if len(_pool) < _POOL_MAX:
            _pool.append(buf)
            return
    try:
        buf.close()
    except BufferError:  # a view of it outlives a failed write (in a traceback): the GC frees it
        pass


def open_for_write(path: os.PathLike[str] | str, flags: int, mode: int = 0o644) -> tuple[int, bool]:
    """os.open with O_DIRECT added where the filesystem takes it; (fd, direct)."""
    if _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, mode), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, mode), False


class AlignedWriter:
    """Appends pieces to a file opened by open_for_write, from offset 0; not thread-safe (callers lock).

    With O_DIRECT, bytes wait in the staging buffer until they fill a block; finish() writes the rest.
    Bytes can be patched at the start (a header known only at the end) with patch_head().
    """

    def __init__(self, fd: int, direct: bool) -> None:
        self._fd = fd
        self.direct = direct
        self._buf: mmap.mmap | None = None
        self._buf_address = 0
        self._fill = 0  # bytes staged in _buf
        self._base = 0  # file offset of _buf[0] (a multiple of ALIGN)
        self._head: bytearray | None = None  # the first block, once written, for patch_head

    @property
    def offset(self) -> int:
        """File offset of the next byte appended."""
        return self._base + self._fill

    def append(self, pieces: Iterable[bytes | memoryview]) -> tuple[int, int]:
        """Append pieces; returns the file range (start, end) written to the page cache, if any was."""
        pieces = list(pieces)
        if not self.direct:
            start = self._base
            self._base = _pwrite_all(self._fd, pieces, start)
            return start, self._base
        if self._buf is None:
            self._buf = _take()
            self._buf_address = _address(self._buf)
        for i, piece in enumerate(pieces):
            staged = self._stage(piece)
            if not self.direct:  # O_DIRECT refused at a write: the rest through the page cache
                start = self._base
                self._base = _pwrite_all(self._fd, [memoryview(piece)[staged:], *pieces[i + 1 :]], start)
                return start, self._base
        self._flush_blocks(self._fill // ALIGN * ALIGN)
        return 0, 0

    def _stage(self, piece: bytes | memoryview) -> int:
        """Copy a piece in, writing the buffer out each time it fills; returns the bytes taken
        (all of them, unless O_DIRECT was refused on the way)."""
        assert self._buf is not None
        n = len(piece)
        # A slice assignment holds the GIL for the whole copy, against the event loop; ctypes releases it.
        source = _address(piece) if n >= _BIG_COPY else 0
        view = memoryview(piece)
        taken = 0
        while taken < n:
            take = min(len(self._buf) - self._fill, n - taken)
            if source:
                ctypes.memmove(self._buf_address + self._fill, source + taken, take)
            else:
                self._buf[self._fill : self._fill + take] = view[taken : taken + take]
            self._fill += take
            taken += take
            if self._fill == len(self._buf):
                self._flush_blocks(self._fill)
                if not self.direct:
                    return taken
        return taken

    def patch_head(self, data: bytes) -> None:
        """Overwrite the file's first len(data) bytes (less than a block) with data."""
        if not self.direct:
            os.pwrite(self._fd, data, 0)
        elif self._base == 0:
            assert self._buf is not None and len(data) <= self._fill
            self._buf[: len(data)] = data
        else:
            assert self._head is not None
            self._head[: len(data)] = data

    def finish(self) -> None:
        """Write what is staged (the tail block padded, then the file cut to size) and the patched head."""
        if not self.direct or self._buf is None:
            return
        size = self.offset
        if self._fill:
            padded = _round_up(self._fill)
            self._buf[self._fill : padded] = bytes(padded - self._fill)
            self._flush_blocks(padded)
        if self._head is not None:
            self._buf[:ALIGN] = self._head
            _pwrite_exact(self._fd, memoryview(self._buf)[:ALIGN], 0)
        os.ftruncate(self._fd, size)
        self.release()

    def release(self) -> None:
        """Give the staging buffer back (also after a failure)."""
        if self._buf is not None:
            _give(self._buf)
            self._buf = None
            self._buf_address = 0

    def _flush_blocks(self, n: int) -> None:
        """Write the first n (aligned) staged bytes; keep the rest at the buffer's start."""
        if not n:
            return
        assert self._buf is not None
        if self._base == 0 and self._head is None:
            self._head = bytearray(self._buf[:ALIGN])
        try:
            _pwrite_exact(self._fd, memoryview(self._buf)[:n], self._base)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._fall_back()
            return
        rest = min(self._fill, len(self._buf)) - n
        if rest > 0:
            self._buf.move(0, n, rest)
        self._base += n
        self._fill = max(rest, 0)

    def _fall_back(self) -> None:
        """O_DIRECT refused at the first write (an alignment this filesystem does not take): go buffered."""
        assert self._buf is not None
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
        self.direct = False
        staged = bytes(self._buf[: self._fill])
        if self._head is not None and self._base > 0:
            os.pwrite(self._fd, self._head, 0)
        self._base = _pwrite_all(self._fd, [staged], self._base)
        self._fill = 0
        self._head = None
        self.release()


_IOV_MAX = os.sysconf("SC_IOV_MAX")


def _address(buf: bytes | bytearray | memoryview | mmap.mmap) -> int:
    """Address of a buffer's first byte (valid while the caller holds the buffer); 0 when ctypes
    cannot give one without a copy (a read-only or non-contiguous view: copied under the GIL)."""
    if isinstance(buf, bytes):
        return ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0
    view = memoryview(buf)
    if view.readonly or not view.contiguous:
        return 0
    c = ctypes.c_char.from_buffer(view)
    address = ctypes.addressof(c)
    del c
    return address


def _pwrite_exact(fd: int, view: memoryview, offset: int) -> None:
    """One aligned range; a short write that breaks the alignment is an I/O error, not a retry."""
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0 or n % ALIGN:
            raise OSError(errno.EIO, f"short O_DIRECT write ({n} bytes)")
        view, offset = view[n:], offset + n


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
