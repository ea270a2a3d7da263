"""Background work as workers of one kind: start, stop, status, yield to clients, rate limit.

A Worker is one named asyncio task that outlives any request: start() is idempotent, stop() cancels the
task and waits for it, status() says what it is doing. Periodic is the form every loop of ours takes:
run a coroutine every N seconds (the first run at once or after N), log a failed run as one warning and
go on. RateLimit paces bytes; yield_to waits, a bounded time, while client traffic should go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RUNNING, IDLE, STOPPED = "running", "idle", "stopped"

Work = Callable[[], Awaitable[object]]


class Finished(Exception):
    """Raised by a run to end its worker for good, without a warning (there is nothing left to do)."""


@dataclass(frozen=True, slots=True)
class Progress:
    done: float
    total: float
    unit: str  # "bytes", "parts", ...


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    name: str
    state: str  # RUNNING | IDLE | STOPPED
    last_start: float | None = None  # epoch seconds; of the latest run
    last_end: float | None = None
    runs: int = 0  # runs completed, failed ones included
    failures: int = 0
    last_error: str = ""  # why the latest completed run failed; "" if it did not
    progress: Progress | None = None
    counters: dict[str, Any] = field(default_factory=dict)  # the worker's own

    def doc(self) -> dict[str, Any]:
        return asdict(self)


class Worker:
    """One named background task. Subclasses write _main() and pass each unit of work through _run_once(),
    which keeps the status. `what` names a run in the warning a failed one logs ("repair round failed")."""

    def __init__(
        self,
        name: str,
        *,
        what: str = "",
        progress: Callable[[], Progress | None] | None = None,
        counters: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.what = what or name
        self._progress = progress
        self._counters = counters
        self._task: asyncio.Task[None] | None = None
        self._in_run = False
        self._last_start: float | None = None
        self._last_end: float | None = None
        self._runs = 0
        self._failures = 0
        self._last_error = ""

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task (in the running event loop) unless it runs already."""
        if self.alive:
            return
        self._starting()
        self._task = asyncio.create_task(self._main(), name=f"worker {self.name}")
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended. Stopping a stopped worker does nothing."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})  # unlike `await task`, never mistakes the task's cancellation for ours

    def status(self) -> WorkerStatus:
        state = STOPPED if not self.alive else RUNNING if self._in_run else IDLE
        return WorkerStatus(
            self.name,
            state,
            self._last_start,
            self._last_end,
            self._runs,
            self._failures,
            self._last_error,
            self._progress() if self._progress is not None else None,
            dict(self._counters()) if self._counters is not None else {},
        )

    def _starting(self) -> None:
        """Called by start() before the task exists: set up what a call right after start() relies on."""

    async def _main(self) -> None:
        raise NotImplementedError

    async def _run_once(self, work: Work) -> None:
        """Run work once, keeping the status; a failure is logged, a Finished passed on once counted."""
        self._in_run = True
        self._last_start = time.time()
        finished = False
        try:
            await work()
            self._last_error = ""
        except Finished:
            self._last_error, finished = "", True
        except Exception as exc:
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s failed: %r", self.what, exc)
        finally:  # a cancelled run is not counted
            self._in_run = False
            self._last_end = time.time()
        self._runs += 1
        if finished:
            raise Finished

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("worker %s stopped by an unexpected error", self.name, exc_info=exc)


class Periodic(Worker):
    """Runs `work` every `every` seconds, counted from the end of the previous run; the first run at once
    (at_once) or one interval after start(). `every` may be a callable, asked after each run; math.inf
    means only when woken. wake() runs it as soon as it is idle; a wake during a run is not remembered."""

    def __init__(
        self,
        name: str,
        work: Work,
        every: float | Callable[[], float],
        *,
        at_once: bool = False,
        what: str = "",
        progress: Callable[[], Progress | None] | None = None,
        counters: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(name, what=what, progress=progress, counters=counters)
        self._work = work
        self._every: Callable[[], float] = every if callable(every) else (lambda: every)
        self._at_once = at_once
        self._due = math.inf  # monotonic time of the next run
        self._poke = asyncio.Event()  # the schedule changed: look at _due again

    def wake(self) -> None:
        """Run now, or as soon as the run in progress ends."""
        self._due = time.monotonic()
        self._poke.set()

    def postpone(self) -> None:
        """The next run a whole interval from now."""
        self._due = time.monotonic() + self._every()
        self._poke.set()

    def _starting(self) -> None:
        self._due = time.monotonic() + (0.0 if self._at_once else self._every())

    async def _main(self) -> None:
        with contextlib.suppress(Finished):
            while True:
                while (delay := self._due - time.monotonic()) > 0:
                    self._poke.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._poke.wait(), None if math.isinf(delay) else delay)
                await self._run_once(self._work)
                self._due = time.monotonic() + self._every()


class RateLimit:
    """At most `rate` bytes per second on average, allowing bursts of up to `burst` seconds' worth.

    pace() is called after the bytes are moved and sleeps for as long as they put the caller ahead of
    the rate by more than the burst. Idle time earns credit for a burst, `burst` seconds' worth at most.
    Concurrent callers share the one budget. `full`: start with a burst's worth of credit, or none.
    """

    def __init__(self, rate: float, burst: float = 1.0, *, full: bool = True) -> None:
        if rate <= 0:
            raise ValueError(f"a rate must be positive, not {rate}")
        self.rate = rate
        self.burst = burst
        self._paid_until = -math.inf if full else time.monotonic()  # monotonic; credit is now minus this

    async def pace(self, nbytes: int) -> None:
        now = time.monotonic()
        self._paid_until = max(self._paid_until, now - self.burst) + nbytes / self.rate
        if self._paid_until > now:
            await asyncio.sleep(self._paid_until - now)


async def yield_to(busy: Callable[[], bool], most: float, step: float = 0.05) -> bool:
    """Wait while busy() says client traffic should go first, `most` seconds at most (background work
    must not starve either); True if it calmed down in time."""
    deadline = time.monotonic() + most
    while busy():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(step, left))
    return True
