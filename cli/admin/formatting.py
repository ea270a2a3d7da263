"""How `tessera admin` writes numbers, times, states and health: plain text and styled table cells."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

Doc = dict[str, Any]

STATE_STYLE = {
    # fragments
    "ok": "green",
    "missing": "red",
    "corrupt": "bold red",
    "unreachable": "yellow",
    # nodes
    "active": "green",
    "draining": "yellow",
    "retired": "dim",
    # objects and parts
    "healthy": "green",
    "degraded": "yellow",
    "unreadable": "bold red",
    # jobs
    "done": "green",
    "failed": "bold red",
    # workers
    "running": "green",
    "stopped": "dim",
}
BYTES_VERB = {"repair": "rebuilt", "drain": "moved", "scrub": "verified", "rebalance": "moved"}


def human_bytes(n: float | None) -> str:
    """Binary units, as drives and object sizes are usually thought of in powers of two."""
    value = float(n or 0)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


def human_duration(seconds: float) -> str:
    """The two largest units: 45s, 11m40s, 1h, 2d3h."""
    rest = int(max(0.0, float(seconds)))
    units = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
    for i, (size, unit) in enumerate(units[:-1]):
        if rest >= size:
            whole, rest = divmod(rest, size)
            small, small_unit = units[i + 1]
            return f"{whole}{unit}" + (f"{rest // small}{small_unit}" if rest >= small else "")
    return f"{rest}s"


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "never"
    return f"{human_duration((time.time() if now is None else now) - ts)} ago"


def amount(value: float | None, unit: str) -> str:
    """A count of work in the job's unit: parts as a number, bytes human-readable."""
    return human_bytes(value) if unit == "bytes" else f"{int(value or 0)} {unit}"


def styled(value: object, style_key: str | None = None) -> Text:
    """A table cell: Text, never markup, since keys and messages can contain '[...]'."""
    text = "" if value is None else str(value)
    return Text(text, style=STATE_STYLE.get(style_key if style_key is not None else text, ""))


def timestamp(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def ec_width(ec: str) -> int | None:
    """k+m of an "k+m" scheme, or None if it is not one."""
    k, sep, m = str(ec).partition("+")
    return int(k) + int(m) if sep and k.isdigit() and m.isdigit() else None


def ec_k(ec: str) -> int | None:
    k, sep, m = str(ec).partition("+")
    return int(k) if sep and k.isdigit() and m.isdigit() else None


def part_health(part: Doc) -> str:
    """As the API defines an object's health, per part: all k+m ok, at least k ok, or fewer."""
    if part.get("inline"):
        return "healthy"
    width, k, healthy = ec_width(part.get("ec", "")), ec_k(part.get("ec", "")), int(part.get("healthy", 0))
    if width is None or k is None:
        return "unknown"
    return "healthy" if healthy >= width else "degraded" if healthy >= k else "unreadable"
