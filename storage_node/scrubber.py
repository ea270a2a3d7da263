"""The scrubber: reads every fragment on a node's drives, verifies every chunk, reports the bad ones.

It runs at a bounded rate (bytes per second) so that it never competes with client traffic for
the disks; a pass that finds rot reports each corrupt fragment, which is then rebuilt, never served.
Passes run in one worker, every `interval` seconds and on demand (start()), never two at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cluster.workers import Finished, Periodic, Progress, RateLimit
from storage_node.drive import Drive, DriveError, FragmentId
from storage_node.protocol import ScrubStatus

log = logging.getLogger(__name__)

RATE_BURST = 1.0  # seconds' worth of bytes a pass may read ahead of its rate, after falling behind

# Called with (drive id, fragment, bad chunk indexes) for every corrupt fragment found.
Report = Callable[[str, FragmentId, list[int]], Awaitable[None]]


@dataclass(slots=True)
class ScrubStats:
    fragments: int = 0
    bytes: int = 0
    # Payload bytes listed when the pass began: the denominator of its progress. Fragments written
    # during the pass are verified too, so `bytes` can end a little above it.
    total_bytes: int = 0
    corrupt: int = 0
    errors: int = 0  # fragments (or whole drive listings) that could not be read: vanished mid-pass, I/O errors
    seconds: float = 0.0
    started: float | None = None  # epoch seconds
    finished: float | None = None
    error: str = ""  # why the pass stopped short, if it did

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


class Scrubber:
    """Verifies every fragment on `drives` at `rate` bytes/s at most, every `interval` seconds
    (0: only when asked). open() starts the periodic passes, close() stops everything."""

    def __init__(self, drives: Sequence[Drive], report: Report, rate: float = 50e6, interval: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError(f"scrub rate must be positive, not {rate}")
        if interval < 0:
            raise ValueError(f"scrub interval must not be negative, not {interval}")
        self._drives = drives
        self._report = report
        self.rate = rate  # bytes per second at most, across all drives
        self.interval = interval
        self.last = ScrubStats()
        self.passes = 0
        self._current: ScrubStats | None = None
        self._pass: asyncio.Future[ScrubStats] | None = None  # the pass asked for or running; done once over
        self._started_mono = 0.0  # monotonic start of the pass running
        self._opened = False
        self._closed = False
        # Every pass runs in this worker: on schedule `interval` after the latest pass ended (once open),
        # or when woken by start(). It starts with open(), or for a pass start() asks for before that.
        self.worker = Periodic(
            "scrub",
            self._scheduled_pass,
            lambda: self.interval if self._opened and self.interval > 0 else math.inf,
            what="scrub pass",
            progress=self._progress,
            counters=self._counters,
        )

    @property
    def running(self) -> bool:
        return self._pass is not None and not self._pass.done()

    def open(self) -> None:
        """Start the periodic passes (if interval > 0): the first one interval from now, not at startup."""
        if self._closed:
            raise RuntimeError("the scrubber is closed")
        if not self._opened:
            self._opened = True
            self.worker.start()
            if not self.running:
                self.worker.postpone()

    async def close(self) -> None:
        """Stop the periodic passes and cancel a pass in progress."""
        self._closed = True
        await self.worker.stop()
        if self._pass is not None:
            self._pass.cancel()  # asked for, but the worker never got to it

    def start(self) -> ScrubStatus:
        """Begin a pass now, unless one is running (then this is that pass's status)."""
        self._begin()
        return self.status()

    def status(self) -> ScrubStatus:
        stats = self._current if self.running and self._current is not None else self.last
        seconds = time.monotonic() - self._started_mono if self.running else stats.seconds
        return ScrubStatus(
            running=self.running,
            passes=self.passes,
            fragments=stats.fragments,
            bytes=stats.bytes,
            total_bytes=stats.total_bytes,
            corrupt=stats.corrupt,
            errors=stats.errors,
            started=stats.started,
            finished=stats.finished,
            mb_per_s=stats.bytes / seconds / 1e6 if seconds > 0 else 0.0,
            error=stats.error,
        )

    async def scrub_pass(self) -> ScrubStats:
        """Run a pass (or join the one running) and return what it saw."""
        task = self._begin()
        # shield: a caller that gives up must not cancel a pass others (or the schedule) rely on.
        return await asyncio.shield(task)

    def _begin(self) -> asyncio.Future[ScrubStats]:
        """The pass asked for (a new one unless one is asked for or running already), woken in the worker."""
        done = self._ask()
        self.worker.start()
        self.worker.wake()
        return done

    def _ask(self) -> asyncio.Future[ScrubStats]:
        if self._closed:
            raise RuntimeError("the scrubber is closed")
        if self._pass is None or self._pass.done():
            # Set up synchronously, so a status() right after start() already shows the new pass.
            self._current = ScrubStats(started=time.time())
            self._started_mono = time.monotonic()
            self._pass = asyncio.get_running_loop().create_future()
        return self._pass

    async def _scheduled_pass(self) -> None:
        """The worker's run: the pass start() asked for, or else the one the schedule says is due."""
        done = self._ask()
        assert self._current is not None
        try:
            stats = await self._run_pass(self._current)
        except BaseException:
            done.cancel()
            raise
        done.set_result(stats)
        if not self._opened:
            raise Finished  # only asked for: nothing is scheduled, so no task is left waiting

    def _progress(self) -> Progress | None:
        st = self.status()
        return Progress(st.bytes, st.total_bytes, "bytes") if st.started is not None else None

    def _counters(self) -> dict[str, Any]:
        st = self.status()
        return {"passes": st.passes, "corrupt": st.corrupt, "errors": st.errors, "error": st.error}

    async def _run_pass(self, stats: ScrubStats) -> ScrubStats:
        started = self._started_mono
        pace = RateLimit(self.rate, RATE_BURST, full=False)
        try:
            stats.total_bytes = await self._count()
            for drive in self._drives:
                try:
                    async for info in drive.list():
                        await self._verify(drive, info.fid, stats)
                        stats.bytes += info.size
                        stats.seconds = time.monotonic() - started
                        await pace.pace(info.size)
                except DriveError as exc:  # one failing drive must not keep the others unscrubbed
                    log.warning("scrub: cannot list drive %s: %s", drive.drive_id, exc)
                    stats.errors += 1
        except asyncio.CancelledError:
            stats.error = "cancelled"  # not a completed pass: `passes` stays
            raise
        except Exception as exc:  # a bug: keep the node serving, and say so in the status
            log.exception("scrub pass failed")
            stats.error = f"{type(exc).__name__}: {exc}"
        finally:
            stats.seconds = time.monotonic() - started
            stats.finished = time.time()
            self.last = stats
        self.passes += 1
        log.info(
            "scrub pass: %d fragments, %.1f MB at %.1f MB/s, %d corrupt, %d unreadable",
            stats.fragments,
            stats.bytes / 1e6,
            stats.mb_per_s,
            stats.corrupt,
            stats.errors,
        )
        return stats

    async def _count(self) -> int:
        """Payload bytes on every drive now. A second listing costs far less than the reads that follow,
        and keeps memory flat however many fragments there are."""
        total = 0
        for drive in self._drives:
            try:
                async for info in drive.list():
                    total += info.size
            except DriveError:
                pass  # counted as an error by the pass itself
        return total

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
            try:
                await self._report(drive.drive_id, fid, bad)
            except Exception:  # the next pass reports it again
                log.exception("scrub: reporting %s on drive %s failed", fid.name, drive.drive_id)
