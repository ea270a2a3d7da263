"""Reed-Solomon segment coding with pyeclib (ISA-L), and the segment arithmetic around it."""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyeclib.ec_iface import ECDriver

from gateway.objects import rs_isal

EC_TYPE = "isa_l_rs_cauchy"  # isa_l_rs_vand can fail to reconstruct with m >= 5
DEFAULT_SEGMENT_SIZE = 1 << 20
log = logging.getLogger(__name__)

# liberasurecode's fragment header (little-endian, packed): idx u32, payload size u32, backend metadata
# size u32, original segment size u64, ..., magic u32 at byte 59; the payload follows at byte 80.
_HEADER_LEN = 80
_META = struct.Struct("<IIIQ")
_MAGIC = struct.Struct("<I")
_MAGIC_AT, _MAGIC_VALUE = 59, 0xB0C5ECC


class SchemeError(ValueError):
    pass


@functools.cache
def _driver(k: int, m: int) -> ECDriver:
    return ECDriver(k=k, m=m, ec_type=EC_TYPE)


def _agrees_with_pyeclib(k: int, m: int, what: str, uses: str, check: Callable[[], bool]) -> bool:
    """Run a check of an rs_isal path against pyeclib; any failure at all keeps `uses` on pyeclib."""
    try:
        ok = check()
    except Exception:
        log.warning("%s with ISA-L directly failed its check; %s use pyeclib", what, uses, exc_info=True)
        return False
    if not ok:
        log.warning("%s %d+%d with ISA-L directly differs from pyeclib; %s use pyeclib", what, k, m, uses)
    return ok


@functools.cache
def _rebuild_checked(k: int, m: int) -> bool:
    """Whether rs_isal rebuilds what pyeclib encodes for k+m (checked once, on a small segment)."""

    def check() -> bool:
        fragments = _driver(k, m).encode(bytes(range(256)) * (k * 8 + 1))
        payloads = {}
        for frag in fragments:
            idx, size = _META.unpack_from(frag, 0)[:2]
            payloads[idx] = memoryview(frag)[_HEADER_LEN : _HEADER_LEN + size]
        lost = list(range(min(k, m)))
        rebuilt = rs_isal.rebuild_data(k, m, {i: p for i, p in payloads.items() if i not in lost}, lost)
        return all(bytes(b) == bytes(payloads[i]) for i, b in zip(lost, rebuilt, strict=True))

    return _agrees_with_pyeclib(k, m, "rebuilding", "degraded reads", check)


def _as_bytes(fragments: Sequence[bytes | bytearray | memoryview]) -> list[bytes]:
    """pyeclib's C code takes bytes only (a bytearray, as rs_isal.encode makes, aborts the process)."""
    return [f if isinstance(f, bytes) else bytes(f) for f in fragments]


@functools.cache
def _encode_checked(k: int, m: int) -> bool:
    """Whether rs_isal writes exactly pyeclib's fragments for k+m (checked once, on a few sizes)."""
    segments = [b"", b"\x01", bytes(range(256)) * (k * 8 + 1), bytes(range(255, -1, -1)) * 37]

    def check() -> bool:
        return all([bytes(f) for f in rs_isal.encode(k, m, s)] == _driver(k, m).encode(s) for s in segments)

    return _agrees_with_pyeclib(k, m, "encoding", "writes", check)


@dataclass(frozen=True, slots=True)
class Scheme:
    k: int
    m: int
    segment_size: int = DEFAULT_SEGMENT_SIZE

    @classmethod
    def parse(cls, text: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Scheme:
        """Parse "K+M" as given on the command line."""
        try:
            k_s, m_s = text.split("+")
            k, m = int(k_s), int(m_s)
        except ValueError:
            raise SchemeError(f"--ec must look like K+M (e.g. 4+2), not {text!r}") from None
        if k < 1 or m < 1 or k + m > 32:
            raise SchemeError(f"--ec {text}: need K >= 1, M >= 1 and K+M <= 32")
        return cls(k, m, segment_size)

    @property
    def width(self) -> int:
        return self.k + self.m

    def __str__(self) -> str:
        return f"{self.k}+{self.m}"

    def encode(self, segment: bytes | bytearray | memoryview) -> list[bytes] | list[bytearray]:
        """One segment into k+m fragments (pyeclib's format, each with its own small header).

        rs_isal writes the same bytes as pyeclib, but holds the GIL only to allocate and label
        the fragments, so the encode can run on a thread beside the event loop.
        """
        segment = segment if isinstance(segment, bytes) else bytes(segment)
        if _encode_checked(self.k, self.m):
            return rs_isal.encode(self.k, self.m, segment)
        return _driver(self.k, self.m).encode(segment)

    def decode(self, fragments: Sequence[bytes]) -> bytes:
        """Any k fragments of one segment back into the segment.

        No maths when they are the k data fragments; with some missing, only those are rebuilt
        (rs_isal, outside the GIL). Anything else, or a fragment that does not look exactly like
        one of this segment's, goes to pyeclib.
        """
        joined = self._join(fragments)
        return joined if joined is not None else _driver(self.k, self.m).decode(_as_bytes(fragments))

    def _join(self, fragments: Sequence[bytes]) -> bytes | None:
        """The segment from k fragments of it, by concatenating the data payloads in order (the
        code is systematic), the missing ones rebuilt first; None if they do not fit that mould.

        pyeclib's decode copies through buffers it allocates and holds the GIL doing so: about 30x
        slower at 1 MiB when every data fragment is there.
        """
        if len(fragments) != self.k:
            return None
        payloads: dict[int, memoryview] = {}
        shape: tuple[int, int] | None = None  # payload size, segment size
        for frag in fragments:
            if len(frag) < _HEADER_LEN or _MAGIC.unpack_from(frag, _MAGIC_AT)[0] != _MAGIC_VALUE:
                return None
            idx, size, backend_meta, orig = _META.unpack_from(frag, 0)
            if backend_meta or idx >= self.width or idx in payloads or _HEADER_LEN + size > len(frag):
                return None
            if shape is None:
                shape = (size, orig)
            if (size, orig) != shape or orig > size * self.k:
                return None
            payloads[idx] = memoryview(frag)[_HEADER_LEN : _HEADER_LEN + size]
        assert shape is not None
        missing = [i for i in range(self.k) if i not in payloads]
        if missing:
            if not _rebuild_checked(self.k, self.m):
                return None
            rebuilt = rs_isal.rebuild_data(self.k, self.m, payloads, missing)
            payloads.update((i, memoryview(b)) for i, b in zip(missing, rebuilt, strict=True))
        left = shape[1]
        pieces: list[memoryview] = []
        for i in range(self.k):
            take = min(shape[0], left)
            pieces.append(payloads[i][:take])
            left -= take
        return b"".join(pieces)

    def reconstruct(self, fragments: dict[int, bytes], wanted: Sequence[int]) -> list[bytes]:
        """The fragments `wanted` of one segment, rebuilt from k others (index -> fragment)."""
        return _driver(self.k, self.m).reconstruct(_as_bytes([fragments[i] for i in sorted(fragments)]), list(wanted))

    def segment_count(self, size: int) -> int:
        # An empty part still has one (empty) segment, so every part has fragments to find.
        return max(1, -(-size // self.segment_size))

    def segment_span(self, size: int, start: int, end: int) -> tuple[int, int]:
        """The segments [first, last+1) that hold bytes [start, end] (inclusive) of a part."""
        if size == 0:
            return 0, 1
        return start // self.segment_size, end // self.segment_size + 1
