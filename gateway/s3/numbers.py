"""Decimal numbers as requests carry them (query parameters, headers, XML): ASCII digits, a bounded count, a range.

str.isdigit() and int() take more than the wire allows: '²' passes isdigit() and then int() raises; int()
accepts full-width and Arabic-Indic digits, ' 7', '+7' and '1_000'; and int() of thousands of digits burns CPU
before it refuses.
Every number that comes from a request goes through decimal(); each caller answers a None with the S3
error AWS gives for that parameter.
"""

from __future__ import annotations

import re

MAX_DIGITS = 19  # everything S3 counts (bytes up to 5 TiB, parts, keys, epoch seconds) fits in 19 digits
MAX_VALUE = (1 << 63) - 1
_DECIMAL_RE = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")  # [0-9] is ASCII only, unlike \d


def decimal(text: str | None, low: int = 0, high: int = MAX_VALUE) -> int | None:
    """The value of `text` when it is 1-19 ASCII digits and nothing else (no sign, space or '_') and lies in
    [low, high]; otherwise None."""
    if text is None or not _DECIMAL_RE.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def position(digits: str) -> int:
    """A byte position written as ASCII digits ([0-9]+, any count): its value, or MAX_VALUE + 1 when
    it is beyond anything (more digits than any object size needs), so a range of absurd numbers is judged
    as one past the end instead of being converted."""
    value = decimal(digits)
    return MAX_VALUE + 1 if value is None else value
