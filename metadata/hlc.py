"""Hybrid logical clock: timestamps that follow wall time but never go backwards and order causality.

A timestamp is one int: milliseconds since the epoch << 16 | a 16-bit logical counter. A clock that
has observed a timestamp (read from a replica) issues only larger ones afterwards, so a write made
after reading a record always supersedes it, whatever the two machines' wall clocks say.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LOGICAL_BITS = 16


def pack(millis: int, logical: int = 0) -> int:
    return millis << LOGICAL_BITS | logical


def millis(ts: int) -> int:
    return ts >> LOGICAL_BITS


def seconds(ts: int) -> float:
    return millis(ts) / 1000.0


class HLC:
    """Issues strictly increasing timestamps; observe() makes later ones exceed what was seen."""

    def __init__(self, wall_ms: Callable[[], int] | None = None) -> None:
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._last = 0

    def now(self) -> int:
        # max(wall, last + 1): the logical part absorbs bursts within one millisecond and clock steps back.
        self._last = max(pack(self._wall_ms()), self._last + 1)
        return self._last

    def observe(self, ts: int) -> None:
        self._last = max(self._last, ts)

    @property
    def last(self) -> int:
        return self._last
