"""The scrubber: reads every fragment on a node's drives, verifies every chunk, reports the bad ones.

It runs at a bounded rate (bytes per second) so that it never competes with client traffic for
the disks; a pass that finds rot reports each corrupt fragment, which is then rebuilt, never served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from storage_node.drive import Drive, DriveError, FragmentId

log = logging.getLogger(__name__)

# Called with (drive id, fragment, bad chunk indexes) for every corrupt fragment found.
Report = Callable[[str, FragmentId, list[int]], Awaitable[None]]


@dataclass(slots=True)
class ScrubStats:
    fragments: int = 0
    bytes: int = 0
    corrupt: int = 0
    errors: int = 0  # fragments that could not be read at all (vanished mid-pass, I/O errors)
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


class Scrubber:
    def __init__(self, drives: Sequence[Drive], report: Report, rate: float = 50e6) -> None:
        self._drives = drives
        self._report = report
        self.rate = rate  # bytes per second at most, across all drives
        self.last = ScrubStats()
        self.running = False

    async def scrub_pass(self) -> ScrubStats:
        """Verify every fragment once; returns what it saw."""
        stats = ScrubStats()
        started = time.monotonic()
        self.running = True
        try:
            for drive in self._drives:
                async for info in drive.list():
                    await self._verify(drive, info.fid, stats)
                    stats.bytes += info.size
                    await self._throttle(stats.bytes, started)
        finally:
            self.running = False
            stats.seconds = time.monotonic() - started
            self.last = stats
        log.info(
            "scrub pass: %d fragments, %.1f MB at %.1f MB/s, %d corrupt, %d unreadable",
            stats.fragments,
            stats.bytes / 1e6,
            stats.mb_per_s,
            stats.corrupt,
            stats.errors,
        )
        return stats

    async def _verify(self, drive: Drive, fid: FragmentId, stats: ScrubStats) -> None:
        stats.fragments += 1
        try:
            bad = await drive.verify(fid)
        except DriveError as exc:  # deleted since it was listed, or the drive failed: not rot
            log.debug("scrub skipped %s on %s: %r", fid.name, drive.drive_id, exc)
            stats.errors += 1
            return
        if bad:
            stats.corrupt += 1
            log.warning("scrub: %s on drive %s is corrupt in chunks %s", fid.name, drive.drive_id, bad)
            await self._report(drive.drive_id, fid, bad)

    async def _throttle(self, done: int, started: float) -> None:
        ahead = done / self.rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def run_forever(self, every: float) -> None:
        """A pass, then a pause, forever (cancel to stop)."""
        while True:
            try:
                await self.scrub_pass()
            except Exception:  # a failing pass must not end scrubbing for good
                log.exception("scrub pass failed")
            await asyncio.sleep(every)
