"""The last hour of the gateway's own request metrics, sampled in memory every few seconds for the console's
charts: no Prometheus needed. Each point is the rate over the interval before it."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cluster.workers import Periodic

INTERVAL = 5.0  # seconds between samples
KEEP = 3600.0  # seconds of history
_QUIET = frozenset({"live", "ready", "metrics"})  # probes and scrapes are not traffic


@dataclass(frozen=True, slots=True)
class Totals:
    """Cumulative counters at one moment."""

    at: float
    requests: float = 0.0
    client_errors: float = 0.0  # 4xx
    server_errors: float = 0.0  # 5xx
    received: float = 0.0
    sent: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # latency upper bound -> cumulative count

    def plus(self, other: Totals) -> Totals:
        """Two processes' counters together (the workers of `tessera server --workers N`)."""
        buckets = dict(self.buckets)
        for le, count in other.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
        return Totals(
            self.at,
            self.requests + other.requests,
            self.client_errors + other.client_errors,
            self.server_errors + other.server_errors,
            self.received + other.received,
            self.sent + other.sent,
            buckets,
        )


def totals_of(families: Iterable[Any], now: float | None = None) -> Totals:
    """The S3 front's counters, summed over operations, from prometheus metric families (a registry's
    collect(), or a parsed /metrics text)."""
    requests = client = server = received = sent = 0.0
    buckets: dict[float, float] = {}
    for family in families:
        for s in family.samples:
            op = s.labels.get("operation", "")
            if op in _QUIET:
                continue
            if s.name.endswith("_requests_total"):
                requests += s.value
                status = s.labels.get("status", "")
                client += s.value if status.startswith("4") else 0.0
                server += s.value if status.startswith("5") else 0.0
            elif s.name.endswith("_received_bytes_total"):
                received += s.value
            elif s.name.endswith("_sent_bytes_total"):
                sent += s.value
            elif s.name.endswith("_bucket") and "le" in s.labels:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    return Totals(time.time() if now is None else now, requests, client, server, received, sent, buckets)


def quantile(deltas: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a histogram given as (upper bound, cumulative count) pairs, linear within a bucket."""
    if not deltas or deltas[-1][1] <= 0:
        return None
    target = q * deltas[-1][1]
    low, below = 0.0, 0.0
    for bound, count in deltas:
        if count >= target:
            if math.isinf(bound):
                return low
            inside = count - below
            return low + (bound - low) * ((target - below) / inside if inside else 1.0)
        low, below = bound, count
    return low


def point(before: Totals, after: Totals) -> dict[str, Any]:
    span = max(after.at - before.at, 1e-9)
    # A counter that went down was reset (a restarted worker): that interval counts from zero.
    reset = after.requests < before.requests

    def rate(a: float, b: float) -> float:
        return round((b if reset else max(b - a, 0.0)) / span, 3)

    deltas = sorted(
        (le, count - (0.0 if reset else before.buckets.get(le, 0.0))) for le, count in after.buckets.items()
    )
    latency = {name: quantile(deltas, q) for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
    return {
        "t": round(after.at, 3),
        "rps": rate(before.requests, after.requests),
        "errors_4xx": rate(before.client_errors, after.client_errors),
        "errors_5xx": rate(before.server_errors, after.server_errors),
        "in_bps": rate(before.received, after.received),
        "out_bps": rate(before.sent, after.sent),
        **{k: (round(v, 6) if v is not None else None) for k, v in latency.items()},
    }


class History:
    def __init__(self, read: Callable[[], Awaitable[Totals]], interval: float = INTERVAL, keep: float = KEEP) -> None:
        self._read = read
        self.interval = interval
        self._points: deque[dict[str, Any]] = deque(maxlen=max(2, int(keep / interval)))
        self._last: Totals | None = None
        self.worker = Periodic("console metrics", self.sample, interval, at_once=True, what="console metrics")

    async def sample(self) -> None:
        now = await self._read()
        if self._last is not None:
            self._points.append(point(self._last, now))
        self._last = now

    def doc(self) -> dict[str, Any]:
        return {"interval": self.interval, "points": list(self._points)}
