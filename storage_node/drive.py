"""The drive seam: what the gateway needs from a place that stores fragments.

A fragment is one erasure-coded shard of one part of one object version, stored as a
sequence of chunks (one chunk per EC segment). Every chunk is checksummed on disk, so a
reader verifies exactly the bytes it returns. Implementations: LocalDrive (a directory)
and, later, a remote drive on a storage node. Both pass tests/drive_contract.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

# fullmatch, ASCII digits, no leading zeros: one spelling per fragment id (`$` would accept a
# trailing newline, `\d` any Unicode digit, and "01" an alias of "1").
_NAME_RE = re.compile(r"([0-9a-f]{32})\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,2})")


@dataclass(frozen=True, slots=True)
class FragmentId:
    """Addresses a fragment; object keys never reach the filesystem."""

    version: str  # 32 lowercase hex digits: the data version (uuid4().hex)
    part: int  # 0 for a single PUT, 1..10000 for multipart parts
    index: int  # fragment index within the EC stripe, 0..k+m-1

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"invalid fragment id {self!r}")

    @property
    def name(self) -> str:
        return f"{self.version}.{self.part}.{self.index}"

    @classmethod
    def parse(cls, name: str) -> FragmentId:
        m = _NAME_RE.fullmatch(name)
        if not m:
            raise ValueError(f"invalid fragment name {name!r}")
        return cls(m.group(1), int(m.group(2)), int(m.group(3)))


@dataclass(frozen=True, slots=True)
class FragmentInfo:
    fid: FragmentId
    size: int  # payload bytes: the sum of all chunk payloads
    chunk_size: int  # payload size of every chunk but the last
    chunks: int
    mtime: float  # seconds since the epoch, when the fragment became durable


OK, OFFLINE = "ok", "offline"


@dataclass(slots=True)
class DriveHealth:
    """What the last check of a local drive found (storage_node/drive_watch.py keeps it current)."""

    state: str = OK  # OK | OFFLINE: an offline drive takes no fragments and serves none
    detail: str = ""  # why it is offline, in one line
    adopted: float = 0.0  # epoch seconds it was last adopted (found empty and formatted in), 0 if never


class DriveError(Exception):
    """Base of the errors a drive raises."""


class FragmentNotFound(DriveError):
    pass


class CorruptFragment(DriveError):
    """A chunk failed its checksum (or the file is truncated or malformed)."""

    def __init__(self, fid: FragmentId, chunk: int, reason: str = "checksum mismatch") -> None:
        super().__init__(f"fragment {fid.name} chunk {chunk}: {reason}")
        self.fid = fid
        self.chunk = chunk


class DriveUnavailable(DriveError):
    """The drive cannot be reached or used at all (I/O error, node down)."""


class InvalidFragmentStream(DriveError):
    """A put stream broke the chunk rules (no chunk, an empty chunk, a short chunk before the
    last, or a chunk larger than the first)."""


class Drive(Protocol):
    drive_id: str  # stable id, persisted with the drive

    async def put(self, fid: FragmentId, chunks: AsyncIterable[bytes]) -> FragmentInfo:
        """Store a fragment from its chunks, durably, replacing any fragment with the same id.

        Every chunk but the last must have the size of the first, and the last may not be larger
        (chunks are located by arithmetic); there must be at least one, and none may be empty.
        The fragment becomes visible only complete and fsynced (temp name, fsync, rename).
        If the stream raises, nothing becomes visible and the error propagates.
        """
        ...

    def get(self, fid: FragmentId, first_chunk: int = 0, end_chunk: int | None = None) -> AsyncIterator[bytes]:
        """Yield the verified payloads of chunks [first_chunk, end_chunk) in order.

        Raises FragmentNotFound before yielding anything if the fragment does not exist, and
        CorruptFragment when a chunk fails its checksum (before yielding that chunk's bytes).
        A range past the last chunk is clipped (an empty range yields nothing).
        """
        ...

    async def stat(self, fid: FragmentId) -> FragmentInfo:
        """Raises FragmentNotFound."""
        ...

    async def delete(self, fid: FragmentId) -> bool:
        """Remove a fragment; False if there was none. Idempotent."""
        ...

    def list(self) -> AsyncIterator[FragmentInfo]:
        """Every complete fragment on the drive, in no particular order."""
        ...

    async def verify(self, fid: FragmentId) -> list[int]:
        """Read every chunk; return the indexes of chunks that fail their checksum.

        Raises FragmentNotFound. A truncated file reports its missing chunks as bad.
        """
        ...
