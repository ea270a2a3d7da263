"""cluster/workers.py on a real event loop with real time: start, stop, status, periodic runs, the rate
limit and yielding to clients. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable

import pytest

from cluster.workers import IDLE, RUNNING, STOPPED, Finished, Periodic, Progress, RateLimit, yield_to


async def wait_for(cond: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def tasks_named(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"worker {name}" and not t.done()]


async def test_start_is_idempotent_and_stop_leaves_no_task() -> None:
    runs: list[float] = []

    async def work() -> None:
        runs.append(time.monotonic())

    w = Periodic("tick", work, 0.05, at_once=True, counters=lambda: {"seen": len(runs)})
    assert w.status().state == STOPPED
    w.start()
    w.start()
    assert len(tasks_named("tick")) == 1
    await wait_for(lambda: w.status().runs >= 3)
    st = w.status()
    assert st.state in (IDLE, RUNNING) and st.last_start is not None and st.last_end is not None
    assert st.counters["seen"] >= 3 and st.progress is None
    json.dumps(st.doc())  # what the admin API sends
    await w.stop()
    assert w.status().state == STOPPED and tasks_named("tick") == []
    count = len(runs)
    await asyncio.sleep(0.2)
    assert len(runs) == count  # nothing runs after stop
    await w.stop()  # stopping again does nothing
    w.start()  # and it can start again
    await wait_for(lambda: len(runs) > count)
    await w.stop()


async def test_the_first_run_comes_one_interval_after_start_unless_at_once() -> None:
    later, now = [], []

    async def tick(into: list[float]) -> None:
        into.append(time.monotonic())

    started = time.monotonic()
    patient = Periodic("patient", lambda: tick(later), 0.4)
    eager = Periodic("eager", lambda: tick(now), 0.4, at_once=True)
    patient.start()
    eager.start()
    try:
        await wait_for(lambda: len(later) == 2)
        assert later[0] - started >= 0.39 and later[1] - later[0] >= 0.39
        assert now[0] - started < 0.2
    finally:
        await asyncio.gather(patient.stop(), eager.stop())


async def test_a_failing_run_is_logged_once_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError(f"index down ({calls})")

    w = Periodic("flaky", flaky, 0.05, at_once=True, what="flaky round")
    with caplog.at_level(logging.WARNING, logger="cluster.workers"):
        w.start()
        await wait_for(lambda: w.status().failures == 1)
        assert "index down (1)" in w.status().last_error
        await wait_for(lambda: w.status().runs >= 4)
        await w.stop()
    st = w.status()
    assert st.failures == 2 and st.last_error == ""  # the latest run went well
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "flaky round failed: ConnectionError('index down (1)')",
        "flaky round failed: ConnectionError('index down (2)')",
    ]


async def test_stop_cancels_a_run_in_progress() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    w = Periodic("slow", slow, 1.0, at_once=True)
    w.start()
    await wait_for(lambda: w.status().state == RUNNING)
    started = time.monotonic()
    await w.stop()
    assert time.monotonic() - started < 1.0 and cancelled.is_set()
    st = w.status()
    assert st.state == STOPPED and st.runs == 0 and tasks_named("slow") == []


async def test_wake_runs_at_once_and_finished_ends_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            raise Finished

    w = Periodic("on-demand", work, math.inf, progress=lambda: Progress(runs, 2, "runs"))
    w.start()
    await asyncio.sleep(0.2)
    assert runs == 0 and w.status().state == IDLE  # math.inf: only when woken
    with caplog.at_level(logging.WARNING, logger="cluster.workers"):
        w.wake()
        await wait_for(lambda: runs == 1)
        w.wake()
        await wait_for(lambda: w.status().state == STOPPED)
    st = w.status()
    assert runs == 2 and st.runs == 2 and st.failures == 0 and st.progress == Progress(2, 2, "runs")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_postpone_moves_the_next_run_a_whole_interval_away() -> None:
    runs: list[float] = []

    async def work() -> None:
        runs.append(time.monotonic())

    w = Periodic("postponed", work, 0.5)
    w.start()
    try:
        await asyncio.sleep(0.3)
        moved = time.monotonic()
        w.postpone()
        await wait_for(lambda: len(runs) == 1)
        assert runs[0] - moved >= 0.49
    finally:
        await w.stop()


async def test_the_rate_limit_paces_bytes() -> None:
    rate = 1_000_000  # bytes/s
    empty = RateLimit(rate, burst=0.1, full=False)
    started = time.monotonic()
    for _ in range(5):
        await empty.pace(100_000)
    assert 0.45 <= time.monotonic() - started < 2.0  # 500 kB at 1 MB/s, no credit to start with

    full = RateLimit(rate, burst=0.2)
    started = time.monotonic()
    await full.pace(200_000)  # a burst's worth: at once
    assert time.monotonic() - started < 0.1
    await full.pace(200_000)
    assert time.monotonic() - started >= 0.15

    # Idle time earns a burst's worth of credit at most.
    await asyncio.sleep(0.6)
    started = time.monotonic()
    await full.pace(500_000)
    assert 0.25 <= time.monotonic() - started < 1.5  # 0.5 s of bytes less 0.2 s of credit

    with pytest.raises(ValueError):
        RateLimit(0)


async def test_the_rate_limit_is_shared_by_concurrent_callers() -> None:
    limit = RateLimit(1_000_000, burst=0.0, full=False)
    started = time.monotonic()
    await asyncio.gather(*(limit.pace(100_000) for _ in range(4)))
    assert time.monotonic() - started >= 0.38


async def test_yielding_waits_while_busy_and_no_longer_than_its_bound() -> None:
    calm_at = time.monotonic() + 0.3
    started = time.monotonic()
    assert await yield_to(lambda: time.monotonic() < calm_at, most=5.0)
    assert 0.29 <= time.monotonic() - started < 2.0

    started = time.monotonic()
    assert not await yield_to(lambda: True, most=0.3)
    assert 0.29 <= time.monotonic() - started < 1.0

    started = time.monotonic()
    assert await yield_to(lambda: False, most=5.0)
    assert time.monotonic() - started < 0.05
