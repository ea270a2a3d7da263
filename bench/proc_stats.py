"""CPU time and peak memory of a benchmarked process, read from /proc, with its child processes (the embedded
server's index copy writers) counted in: they do the server's work."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live child processes of pid (none once it is gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    kids = []
    for task in tasks:
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return kids


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), of its children that ended (cutime, cstime) and of
    those still running, in seconds. FileNotFoundError once pid is gone."""
    fields = _stat(pid)
    total = sum(int(f) for f in fields[11:15])
    for kid in children(pid):
        try:
            total += sum(int(f) for f in _stat(kid)[11:13])
        except FileNotFoundError:
            continue  # ended meanwhile: the next reading finds it in cutime
    return total / _TICK


def own_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process alone (all its threads, none of its children), in seconds."""
    return sum(int(f) for f in _stat(pid)[11:13]) / _TICK


def peak_rss(pid: int) -> int | None:
    """VmHWM of a live process (None once it is gone, e.g. a node the degraded runs killed)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return None
    return next((int(ln.split()[1]) * 1024 for ln in lines if ln.startswith("VmHWM:")), None)
