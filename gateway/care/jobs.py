"""Long-running admin operations (repair, scrub, drain, rebalance) as jobs an operator can poll."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

KEEP = 20  # finished jobs remembered per gateway


@dataclass(slots=True)
class Job:
    kind: str  # "repair" | "scrub" | "drain" | "rebalance"
    target: str = ""  # the node, for a drain
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    phase: str = "starting"
    total: int = 0
    completed: int = 0
    unit: str = "parts"
    bytes: int = 0
    failed: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    message: str = ""

    def doc(self) -> dict[str, Any]:
        return asdict(self)


class JobBoard:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> Job:
        self._jobs[job.id] = job
        task = asyncio.ensure_future(self._run(job, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        finished = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.started)
        for old in finished[:-KEEP]:
            del self._jobs[old.id]
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await work(job)
            job.phase = "done"
        except asyncio.CancelledError:
            job.phase, job.message = "failed", "the gateway shut down"
            raise
        except Exception as exc:
            log.exception("%s job %s failed", job.kind, job.id)
            job.phase, job.message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)[:KEEP]

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
