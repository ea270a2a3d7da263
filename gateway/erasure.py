"""Reed-Solomon segment coding with pyeclib (ISA-L), and the segment arithmetic around it."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pyeclib.ec_iface import ECDriver

EC_TYPE = "isa_l_rs_cauchy"  # isa_l_rs_vand can fail to reconstruct with m >= 5
DEFAULT_SEGMENT_SIZE = 1 << 20


class SchemeError(ValueError):
    pass


@functools.cache
def _driver(k: int, m: int) -> ECDriver:
    return ECDriver(k=k, m=m, ec_type=EC_TYPE)


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

    def encode(self, segment: bytes | bytearray | memoryview) -> list[bytes]:
        """One segment into k+m fragments (pyeclib's, each with its own small header)."""
        return _driver(self.k, self.m).encode(bytes(segment))

    def decode(self, fragments: Sequence[bytes]) -> bytes:
        """Any k fragments of one segment back into the segment (no maths when all are data)."""
        return _driver(self.k, self.m).decode(list(fragments))

    def reconstruct(self, fragments: dict[int, bytes], wanted: Sequence[int]) -> list[bytes]:
        """The fragments `wanted` of one segment, rebuilt from k others (index -> fragment)."""
        return _driver(self.k, self.m).reconstruct([fragments[i] for i in sorted(fragments)], list(wanted))

    def segment_count(self, size: int) -> int:
        # An empty part still has one (empty) segment, so every part has fragments to find.
        return max(1, -(-size // self.segment_size))

    def segment_span(self, size: int, start: int, end: int) -> tuple[int, int]:
        """The segments [first, last+1) that hold bytes [start, end] (inclusive) of a part."""
        if size == 0:
            return 0, 1
        return start // self.segment_size, end // self.segment_size + 1
