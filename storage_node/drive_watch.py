"""The drive watch: checks a process's local drives every few seconds, and at once when one reports trouble.

An empty directory found in a drive's place (contents wiped, or an empty filesystem mounted there) is
adopted into the set as that drive (storage_node/drive_adopt.py) and put back in use: repair fills it.
A drive that is missing, unreadable, unmounted or foreign is offline until a later check finds it back.
Each change of a drive's state is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from cluster.workers import Periodic
from storage_node.drive import OFFLINE
from storage_node.local_drive import LocalDrive

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0  # seconds between checks of every drive
OFFLINE_EVERY = 1.0  # while a drive is offline: it gets no requests to fail, so only a check finds it back
TROUBLE_GAP = 0.5  # seconds at least between checks woken by trouble (a failing drive fails every request)


class DriveWatch:
    """Checks `drives` (in the order of their numbers in logs). adopt: this process formats empty drives
    (one of several processes sharing the drives does). on_adopt is called after a drive is adopted."""

    def __init__(
        self,
        drives: Sequence[LocalDrive],
        *,
        adopt: bool = True,
        every: float = CHECK_EVERY,
        on_adopt: Callable[[LocalDrive], None] | None = None,
    ) -> None:
        self._drives = list(drives)
        self._adopt = adopt
        self._on_adopt = on_adopt
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last = 0.0  # monotonic time of the last check
        self.adoptions = 0
        self.worker = Periodic(
            "drive-watch",
            self.check_all,
            lambda: min(every, OFFLINE_EVERY) if self._offline() else every,
            what="drive check",
            counters=self._counters,
        )
        for d in self._drives:
            d.on_trouble = self.notice

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.worker.start()

    async def stop(self) -> None:
        self._loop = None
        await self.worker.stop()

    def notice(self) -> None:
        """A drive met an I/O error or found its layout gone: check soon. Safe from any thread."""
        loop = self._loop
        if loop is not None and time.monotonic() - self._last >= TROUBLE_GAP:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to check any more
                loop.call_soon_threadsafe(self.worker.wake)

    def _offline(self) -> int:
        return sum(d.health.state == OFFLINE for d in self._drives)

    def _counters(self) -> dict[str, Any]:
        return {"drives": len(self._drives), "offline": self._offline(), "adopted": self.adoptions}

    async def check_all(self) -> None:
        self._last = time.monotonic()
        before = [(d.health.state, d.health.detail) for d in self._drives]
        verdicts = await asyncio.gather(*(d.check(self._adopt) for d in self._drives))
        for n, (drive, was, verdict) in enumerate(zip(self._drives, before, verdicts, strict=True), 1):
            if verdict.adopted:
                self.adoptions += 1
                if verdict.detail:  # its own drive, with its fragments gone
                    log.warning("drive %d (%s): %s", n, drive.drive_id, verdict.detail)
                else:
                    log.warning(
                        "drive %d at %s was empty: formatted into the set as %s, repair will fill it",
                        n,
                        drive.root,
                        drive.drive_id,
                    )
                if self._on_adopt is not None:
                    try:
                        await asyncio.to_thread(self._on_adopt, drive)
                    except OSError as exc:
                        log.error("drive %d at %s: after its adoption: %s", n, drive.root, exc)
            elif verdict.state == OFFLINE and (verdict.state, verdict.detail) != was:
                log.error("drive %d (%s) is offline: %s", n, drive.drive_id, verdict.detail)
            elif verdict.state != OFFLINE and was[0] == OFFLINE:
                log.info("drive %d at %s is back in use", n, drive.root)
