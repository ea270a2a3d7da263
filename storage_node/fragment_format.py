"""The on-disk format of a fragment file: pure layout and checksum code, no I/O.

    header   magic b"TSF1" | version u16 | chunk_size u32 | size u64 | crc32c(previous 18 bytes) u32
    chunk j  payload | crc32c(payload) u32            (all integers big-endian)

Every chunk but the last carries exactly chunk_size payload bytes, so chunk j starts at
HEADER_SIZE + j * (chunk_size + CRC_SIZE): random access needs no index. The header records
the total payload size (written last, before fsync), so a file cut exactly at a chunk boundary is
still recognised as truncated rather than mistaken for a shorter complete fragment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from awscrt.checksums import crc32c

from storage_node.drive import CorruptFragment, FragmentId

MAGIC = b"TSF1"
FORMAT_VERSION = 1
CRC_SIZE = 4
MAX_CHUNK_SIZE = 2**32 - 1

_FIELDS = struct.Struct(">4sHIQ")
_CRC = struct.Struct(">I")
HEADER_SIZE = _FIELDS.size + CRC_SIZE


@dataclass(frozen=True, slots=True)
class Layout:
    """Where every chunk of a fragment lies, from its chunk size and total payload size."""

    chunk_size: int  # payload bytes of every chunk but the last
    size: int  # total payload bytes

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE or self.size < 1:
            raise ValueError(f"invalid layout {self!r}")

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk_size)

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + self.size + self.chunks * CRC_SIZE

    def payload_len(self, j: int) -> int:
        self._check(j)
        return self.size - j * self.chunk_size if j == self.chunks - 1 else self.chunk_size

    def framed_len(self, j: int) -> int:
        return self.payload_len(j) + CRC_SIZE

    def chunk_offset(self, j: int) -> int:
        self._check(j)
        return HEADER_SIZE + j * (self.chunk_size + CRC_SIZE)

    def span(self, first: int, end: int) -> tuple[int, int]:
        """File offset and length of framed chunks [first, end), for one read call."""
        if not 0 <= first < end <= self.chunks:
            raise ValueError(f"chunk range [{first}, {end}) outside 0..{self.chunks}")
        start = self.chunk_offset(first)
        return start, self.chunk_offset(end - 1) + self.framed_len(end - 1) - start

    def intact_chunks(self, file_size: int) -> int:
        """How many leading chunks a file of this size holds in full.

        Fewer than `chunks` means the rest is damaged: missing or partial (a truncated file), or,
        for a file longer than the layout, the last chunk is suspect (stray bytes follow it).
        """
        if file_size == self.file_size:
            return self.chunks
        if file_size > self.file_size:
            return self.chunks - 1
        body = max(0, file_size - HEADER_SIZE)
        return min(body // (self.chunk_size + CRC_SIZE), self.chunks - 1)

    def _check(self, j: int) -> None:
        if not 0 <= j < self.chunks:
            raise IndexError(f"chunk {j} outside 0..{self.chunks - 1}")


def encode_header(layout: Layout) -> bytes:
    fields = _FIELDS.pack(MAGIC, FORMAT_VERSION, layout.chunk_size, layout.size)
    return fields + _CRC.pack(crc32c(fields))


def parse_header(fid: FragmentId, data: bytes) -> Layout:
    """Decode a header (the first HEADER_SIZE bytes of a file); damage is reported as chunk 0."""
    if len(data) < HEADER_SIZE:
        raise CorruptFragment(fid, 0, "truncated header")
    fields = data[: _FIELDS.size]
    (crc,) = _CRC.unpack_from(data, _FIELDS.size)
    magic, version, chunk_size, size = _FIELDS.unpack(fields)
    if magic != MAGIC:
        raise CorruptFragment(fid, 0, "not a fragment file (bad magic)")
    if crc32c(fields) != crc:
        raise CorruptFragment(fid, 0, "header checksum mismatch")
    if version != FORMAT_VERSION:
        raise CorruptFragment(fid, 0, f"unsupported format version {version}")
    try:
        return Layout(chunk_size, size)
    except ValueError:
        raise CorruptFragment(fid, 0, f"invalid header: chunk_size {chunk_size}, size {size}") from None


def chunk_crc(payload: bytes | memoryview) -> bytes:
    """The 4 bytes that follow a payload on disk."""
    return _CRC.pack(crc32c(payload))


def check_chunk(framed: bytes | memoryview) -> bool:
    """True if a framed chunk (payload + crc) is intact; no payload copy, for scrubbing."""
    if len(framed) <= CRC_SIZE:
        return False
    view = memoryview(framed)
    return crc32c(view[:-CRC_SIZE]) == _CRC.unpack_from(view, len(view) - CRC_SIZE)[0]


def verify_chunk(fid: FragmentId, j: int, framed: bytes | memoryview) -> bytes:
    """Return the payload of framed chunk j, or raise CorruptFragment for chunk j."""
    if len(framed) <= CRC_SIZE:
        raise CorruptFragment(fid, j, "truncated chunk")
    if not check_chunk(framed):
        raise CorruptFragment(fid, j)
    return bytes(memoryview(framed)[:-CRC_SIZE])
