"""The console's metrics history: rates and latency percentiles from cumulative counters, counter resets, and
the hour it keeps."""

from __future__ import annotations

import asyncio
import math

from gateway.console.history import History, Totals, point, quantile


def test_quantiles_interpolate_within_the_histogram_bucket() -> None:
    # 100 requests: 50 under 10 ms, 40 more under 100 ms, the last 10 under 1 s.
    cumulative = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert quantile(cumulative, 0.5) == 0.01
    assert abs(quantile(cumulative, 0.7) - 0.055) < 1e-9  # halfway through the 10-100 ms bucket
    assert abs(quantile(cumulative, 0.99) - 0.91) < 1e-9
    assert quantile([(0.01, 0.0), (math.inf, 0.0)], 0.5) is None  # nothing to measure
    assert quantile([(0.01, 0.0), (math.inf, 3.0)], 0.5) == 0.01  # beyond the last bound: its lower edge


def test_a_point_is_the_rate_over_its_interval_and_a_reset_counts_from_zero() -> None:
    before = Totals(100.0, requests=10, client_errors=1, received=1000, sent=0, buckets={0.1: 10.0, math.inf: 10.0})
    after = Totals(105.0, requests=60, client_errors=6, server_errors=5, received=6000, sent=50_000)
    after.buckets.update({0.1: 40.0, math.inf: 60.0})
    p = point(before, after)
    assert (p["rps"], p["errors_4xx"], p["errors_5xx"], p["in_bps"], p["out_bps"]) == (10.0, 1.0, 1.0, 1000.0, 10_000.0)
    # 30 of the interval's 50 were under 100 ms: the median is 25/30 of the way there; p90 is past the last bound.
    assert abs(p["p50"] - 0.083333) < 1e-6 and p["p90"] == 0.1
    restarted = Totals(110.0, requests=5, buckets={0.1: 5.0, math.inf: 5.0})
    assert point(after, restarted)["rps"] == 1.0  # 5 since the reset, not -55


def test_the_history_keeps_an_hour_of_points_and_sums_sibling_workers() -> None:
    clock = iter(range(0, 10_000, 5))

    async def read() -> Totals:
        t = float(next(clock))
        mine = Totals(t, requests=t, buckets={math.inf: t})
        return mine.plus(Totals(t, requests=t, buckets={math.inf: t}))  # another worker's, as many

    history = History(read, interval=5, keep=60)

    async def run() -> None:
        for _ in range(20):
            await history.sample()

    asyncio.run(run())
    points = history.doc()["points"]
    assert len(points) == 12  # 60 s of 5 s points
    assert all(p["rps"] == 2.0 for p in points)
