"""The storage node's wire protocol, shared by its HTTP service and the RemoteDrive client.

URLs (every /v1 request carries a cluster signature, cluster/auth.py):

    PUT    /v1/drives/{drive}/fragments/{name}              body: a chained frame stream (signed STREAMING)
    GET    /v1/drives/{drive}/fragments/{name}?first=&end=  response: a frame stream
    DELETE /v1/drives/{drive}/fragments/{name}              {"deleted": bool}
    GET    /v1/drives/{drive}/fragments/{name}/stat         a fragment record
    POST   /v1/drives/{drive}/fragments/{name}/verify       {"bad": [chunk, ...]}
    GET    /v1/drives/{drive}/fragments                     NDJSON: fragment records, then {"end": true, "count": n}
    GET    /v1/drives                                       {"drives": [{"id", "path", "capacity", "free",
                                                                 "state", "detail", "adopted"}]}
    POST   /v1/scrub                                        start a scrub pass unless one runs: a scrub status
    GET    /v1/scrub                                        a scrub status

A scrub status (ScrubStatus below) is {"running", "passes", "fragments", "bytes",
"total_bytes", "corrupt", "errors", "started", "finished", "mb_per_s", "error"}: the pass running, else
the last one. A node without a scrubber answers both with 501 no_scrubber.

A fragment record is {"name", "size", "chunk_size", "chunks", "mtime"}.

A frame stream carries fragment chunks in either direction (integers big-endian u32):

    chunk   length (1..MAX_PAYLOAD) | payload | crc32c(payload) [| MAC, in a chained stream]
    end     length 0 [| MAC over the count, in a chained stream]   the stream is complete; nothing follows
    error   0xFFFFFFFF | json length | JSON {"error": kind, "chunk": n, "message": ...}

A PUT body signed STREAMING is chained (cluster/auth.py FrameChain): each chunk frame carries the
TAG_BYTES MAC of its payload after its crc32c, and the end frame the MAC over the count after its
length 0. The node checks each MAC before it writes the chunk, and commits only after the end MAC:
a frame changed or replayed from another request is refused (403) and nothing is left on disk.
A GET answer is not chained (an answer cannot be replayed into a drive, and the gateway verifies
every chunk's checksum).

A stream without its end frame is incomplete: a PUT commits only after the end frame, so a cut
connection can never make a partial fragment visible, and a GET reader can tell a cut response from
the end of the range. A sender that fails mid-stream says so with an error frame (the GET of a chunk
that turns out corrupt; a PUT whose source failed) and keeps the connection usable.

Errors outside a stream are JSON bodies {"error": kind, "message": ..., "chunk": n} with the status
of STATUS[kind]. The client maps kinds back to the exceptions a LocalDrive raises. Unknown paths,
methods and oversized bodies get the kinds of HTTP_KINDS (after the signature check, for a /v1 path).
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from awscrt.checksums import crc32c

from cluster.auth import TAG_BYTES, FrameChain
from storage_node.drive import (
    CorruptFragment,
    DriveError,
    DriveUnavailable,
    FragmentId,
    FragmentInfo,
    FragmentNotFound,
    InvalidFragmentStream,
)

API = "/v1"
FRAMES_TYPE = "application/x-tessera-frames"
NDJSON_TYPE = "application/x-ndjson"

# A frame's payload is read whole into memory on arrival: this bounds what one request can make a
# node (or a client) allocate. Fragment chunks are one EC segment / k, 256 KiB by default.
MAX_PAYLOAD = 64 << 20
MAX_ERROR_JSON = 64 << 10
ERROR_LEN = 0xFFFFFFFF
# Frames are coalesced into writes of about this size: tiny chunks must not cost one write each,
# and a large chunk goes out on its own at once.
FLUSH_BYTES = 64 << 10

_U32 = struct.Struct(">I")
END_FRAME = _U32.pack(0)
_DRIVE_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,17}")

# Error kinds and their HTTP statuses.
NOT_FOUND = "not_found"  # the fragment does not exist
NO_SUCH_DRIVE = "no_such_drive"  # the node has no drive with that id
CORRUPT = "corrupt"  # a stored chunk failed its checksum (its index in "chunk")
INVALID_STREAM = "invalid_stream"  # a PUT broke the chunk rules
BAD_CHECKSUM = "bad_checksum"  # a chunk was damaged in transit (its index in "chunk")
BAD_FRAMING = "bad_framing"  # the frame stream is malformed
INCOMPLETE = "incomplete"  # the stream ended (or the connection broke) before its end frame
ABORTED = "aborted"  # the sender gave up mid-stream with an error frame
TIMEOUT = "timeout"  # the sender went silent
BAD_REQUEST = "bad_request"  # malformed URL or query
FORBIDDEN = "forbidden"  # missing or invalid cluster signature
UNAVAILABLE = "unavailable"  # the drive cannot be used (I/O error, missing directory)
DRIVE_ERROR = "drive_error"  # any other DriveError
NO_SCRUBBER = "no_scrubber"  # the node runs no scrubber (an in-process node, in tests)
NO_SUCH_ENDPOINT = "no_such_endpoint"  # no route for that path
METHOD_NOT_ALLOWED = "method_not_allowed"  # a route, but not for that method
TOO_LARGE = "too_large"  # a hash-signed body over the size the node reads whole
INTERNAL = "internal"  # a bug on the node

STATUS = {
    NOT_FOUND: 404,
    NO_SUCH_DRIVE: 404,
    CORRUPT: 422,
    INVALID_STREAM: 400,
    BAD_CHECKSUM: 400,
    BAD_FRAMING: 400,
    INCOMPLETE: 400,
    ABORTED: 400,
    TIMEOUT: 408,
    BAD_REQUEST: 400,
    FORBIDDEN: 403,
    UNAVAILABLE: 503,
    DRIVE_ERROR: 500,
    NO_SCRUBBER: 501,
    NO_SUCH_ENDPOINT: 404,
    METHOD_NOT_ALLOWED: 405,
    TOO_LARGE: 413,
    INTERNAL: 500,
}
# The kinds of the errors aiohttp raises itself (no route, a body too large), by status.
HTTP_KINDS = {
    400: BAD_REQUEST,
    403: FORBIDDEN,
    404: NO_SUCH_ENDPOINT,
    405: METHOD_NOT_ALLOWED,
    408: TIMEOUT,
    413: TOO_LARGE,
}


# -- the scrubber's status --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScrubStatus:
    """The scrubber as GET /v1/scrub reports it: the pass running, else the last one (all zero before any)."""

    running: bool = False
    passes: int = 0  # passes completed since the node started
    fragments: int = 0
    bytes: int = 0
    total_bytes: int = 0
    corrupt: int = 0
    errors: int = 0
    started: float | None = None
    finished: float | None = None
    mb_per_s: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> ScrubStatus:
        """Raises ValueError if obj is not a scrub status document."""
        if not isinstance(obj, dict):
            raise ValueError(f"not a scrub status: {obj!r}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            v = obj.get(f.name)
            if f.name == "running":
                ok = type(v) is bool
            elif f.name == "error":
                ok = isinstance(v, str)
            elif f.name in ("started", "finished", "mb_per_s"):
                ok = type(v) in (int, float) or (v is None and f.name != "mb_per_s")
                v = None if v is None else float(v)
            else:
                ok = type(v) is int and v >= 0
            if not ok:
                raise ValueError(f"not a scrub status ({f.name}={obj.get(f.name)!r})")
            values[f.name] = v
        return cls(**values)


# -- URLs --------------------------------------------------------------------------------------------


def check_drive_id(drive_id: str) -> str:
    """Drive ids go into URLs unescaped (and are signed as sent): allow only URL-safe ones."""
    if not _DRIVE_ID_RE.fullmatch(drive_id):
        raise ValueError(f"invalid drive id {drive_id!r}")
    return drive_id


def drives_path() -> str:
    return f"{API}/drives"


def scrub_path() -> str:
    return f"{API}/scrub"


def fragments_path(drive_id: str) -> str:
    return f"{API}/drives/{drive_id}/fragments"


def fragment_path(drive_id: str, name: str) -> str:
    return f"{API}/drives/{drive_id}/fragments/{name}"


def get_path(drive_id: str, name: str, first: int, end: int | None) -> str:
    query = f"?first={first}" if end is None else f"?first={first}&end={end}"
    return fragment_path(drive_id, name) + query


def parse_index(value: str | None, default: int | None) -> int | None:
    """A chunk index from a query parameter: plain ASCII digits only (int() would take ' +1_0')."""
    if value is None:
        return default
    if not _INDEX_RE.fullmatch(value):
        raise ValueError(f"invalid chunk index {value!r}")
    return int(value)


# -- records -----------------------------------------------------------------------------------------


def info_to_json(info: FragmentInfo) -> dict[str, Any]:
    # json writes floats with repr: mtime survives the round trip exactly.
    return {
        "name": info.fid.name,
        "size": info.size,
        "chunk_size": info.chunk_size,
        "chunks": info.chunks,
        "mtime": info.mtime,
    }


def info_from_json(obj: Any) -> FragmentInfo:
    """Raises ValueError if obj is not a fragment record."""
    try:
        fid = FragmentId.parse(obj["name"])
        fields = [obj[k] for k in ("size", "chunk_size", "chunks")]
        mtime = obj["mtime"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a fragment record: {obj!r}") from e
    if not all(type(v) is int and v >= 0 for v in fields) or type(mtime) not in (int, float):
        raise ValueError(f"not a fragment record: {obj!r}")
    return FragmentInfo(fid, fields[0], fields[1], fields[2], float(mtime))


@dataclass(frozen=True, slots=True)
class NodeDrive:
    """One drive of a node, as GET /v1/drives reports it."""

    id: str
    path: str
    capacity: int | None  # bytes; None if the node could not statvfs the drive
    free: int | None  # bytes available to the node


# -- errors ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireError:
    kind: str
    message: str
    chunk: int | None = None

    @property
    def status(self) -> int:
        return STATUS.get(self.kind, 500)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"error": self.kind, "message": self.message}
        if self.chunk is not None:
            obj["chunk"] = self.chunk
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> WireError:
        """Raises ValueError if obj is not an error document."""
        if not isinstance(obj, dict) or not isinstance(obj.get("error"), str):
            raise ValueError(f"not an error document: {obj!r}")
        chunk = obj.get("chunk")
        return cls(obj["error"], str(obj.get("message", "")), chunk if type(chunk) is int and chunk >= 0 else None)


class FramingError(Exception):
    """The frame stream is malformed."""

    kind = BAD_FRAMING


class WireChecksumError(FramingError):
    """A chunk arrived with a crc32c that does not match its payload: damaged in transit."""

    kind = BAD_CHECKSUM

    def __init__(self, frame: int) -> None:
        super().__init__(f"frame {frame} failed its wire checksum")
        self.frame = frame  # index of the frame within this stream


class ErrorFrame(Exception):
    """The sender ended the stream with an error frame."""

    def __init__(self, error: WireError) -> None:
        super().__init__(f"{error.kind}: {error.message}")
        self.error = error


def corrupt_reason(e: CorruptFragment) -> str:
    # CorruptFragment keeps only its formatted message, "fragment <name> chunk <n>: <reason>".
    return str(e).partition(": ")[2] or str(e)


def wire_error(exc: BaseException) -> WireError:
    """What a node answers for an exception raised while serving a request."""
    if isinstance(exc, FragmentNotFound):
        return WireError(NOT_FOUND, f"fragment {exc} not found")
    if isinstance(exc, CorruptFragment):
        return WireError(CORRUPT, corrupt_reason(exc), exc.chunk)
    if isinstance(exc, InvalidFragmentStream):
        return WireError(INVALID_STREAM, str(exc))
    if isinstance(exc, DriveUnavailable):
        return WireError(UNAVAILABLE, str(exc))
    if isinstance(exc, DriveError):
        return WireError(DRIVE_ERROR, str(exc))
    if isinstance(exc, WireChecksumError):
        return WireError(BAD_CHECKSUM, str(exc), exc.frame)
    if isinstance(exc, FramingError):
        return WireError(BAD_FRAMING, str(exc))
    if isinstance(exc, ErrorFrame):
        return WireError(ABORTED, f"the sender aborted the stream: {exc.error.message}")
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
        return WireError(INCOMPLETE, "the stream ended before its end frame")
    if isinstance(exc, TimeoutError):
        return WireError(TIMEOUT, "the sender went silent")
    return WireError(INTERNAL, f"internal error: {type(exc).__name__}")


def drive_error(error: WireError, fid: FragmentId | None, where: str) -> Exception:
    """The exception a client raises for an error a node reported (the one a LocalDrive would raise)."""
    if error.kind == NOT_FOUND and fid is not None:
        return FragmentNotFound(fid.name)
    if error.kind == CORRUPT and fid is not None:
        return CorruptFragment(fid, error.chunk or 0, error.message)
    if error.kind == INVALID_STREAM:
        return InvalidFragmentStream(error.message)
    if error.kind in (DRIVE_ERROR, BAD_REQUEST):
        return DriveError(f"{where}: {error.message}")
    # Everything else means this drive cannot be used through this node right now: unreachable,
    # misconfigured (signature, unknown drive), failing, or damaged bytes in transit.
    return DriveUnavailable(f"{where}: {error.kind}: {error.message}")


# -- frames ------------------------------------------------------------------------------------------


def chunk_frame_parts(payload: bytes | memoryview) -> tuple[bytes, bytes | memoryview, bytes]:
    return _U32.pack(len(payload)), payload, _U32.pack(crc32c(payload))


def error_frame(error: WireError) -> bytes:
    body = json.dumps(error.to_json()).encode()
    return _U32.pack(ERROR_LEN) + _U32.pack(len(body)) + body


class FrameEncoder:
    """Frames chunks, batching small ones into writes of about FLUSH_BYTES; with a chain, each frame
    and the end carry their MACs."""

    def __init__(self, flush_bytes: int = FLUSH_BYTES, chain: FrameChain | None = None) -> None:
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self._flush_bytes = flush_bytes
        self._chain = chain

    def chunk(self, payload: bytes | memoryview) -> bytes | None:
        """Add a chunk; returns bytes to write now, or None while the batch is small."""
        self._parts += chunk_frame_parts(payload)
        if self._chain is not None:
            self._parts.append(self._chain.tag(payload))
        self._size += len(payload) + 8
        return self.take() if self._size >= self._flush_bytes else None

    def end(self) -> bytes:
        self._parts.append(END_FRAME)
        if self._chain is not None:
            self._parts.append(self._chain.end_tag())
        return self.take()

    def error(self, error: WireError, keep_pending: bool = True) -> bytes:
        """The error frame, after the chunks before it (or instead of them, for an aborted upload)."""
        if not keep_pending:
            self._parts.clear()
        self._parts.append(error_frame(error))
        return self.take()

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return data


class ByteReader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...

    async def read(self, n: int = -1) -> bytes: ...


class FrameReader:
    """Reads a frame stream, verifying each chunk's crc32c (and with a chain, its MAC) as it arrives.

    read() raises WireChecksumError, FramingError, ErrorFrame, ClusterAuthError (a MAC that does not
    check), or the reader's own error (asyncio.IncompleteReadError when the stream stops short).
    """

    def __init__(self, reader: ByteReader, hasher: Any = None, chain: FrameChain | None = None) -> None:
        self._reader = reader
        self._hasher = hasher  # sees every byte when the signature claims a body hash
        self._chain = chain
        self.frames = 0  # chunk frames read so far
        self.bytes = 0  # stream bytes read so far
        self.ended = False

    async def _read(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self.bytes += n
        if self._hasher is not None:
            self._hasher.update(data)
        return data

    async def read(self) -> bytes | None:
        """The next verified payload, or None after the end frame."""
        if self.ended:
            return None
        (n,) = _U32.unpack(await self._read(4))
        if n == 0:
            if self._chain is not None:
                self._chain.check_end(await self._read(TAG_BYTES))
            self.ended = True
            return None
        if n == ERROR_LEN:
            (m,) = _U32.unpack(await self._read(4))
            if m > MAX_ERROR_JSON:
                raise FramingError(f"error frame of {m} bytes")
            try:
                error = WireError.from_json(json.loads(await self._read(m)))
            except ValueError as e:
                raise FramingError(f"unreadable error frame: {e}") from None
            raise ErrorFrame(error)
        if n > MAX_PAYLOAD:
            raise FramingError(f"frame {self.frames} claims {n} bytes, more than {MAX_PAYLOAD}")
        payload = await self._read(n)
        (crc,) = _U32.unpack(await self._read(4))
        if crc32c(payload) != crc:
            raise WireChecksumError(self.frames)
        if self._chain is not None:
            self._chain.check(payload, await self._read(TAG_BYTES))
        self.frames += 1
        return payload

    async def expect_eof(self) -> None:
        """After the end frame, the body must end: trailing bytes mean a confused sender."""
        if await self._reader.read(1):
            raise FramingError("bytes after the end frame")
