"""Event notifications: delivering the index's event queue to webhooks, at least once (docs/notifications.md).

Writes queue their events in the index, in their own transaction (handlers/notifications.py). One gateway at a
time delivers, the holder of the index lease "notify": it reads the queue in order, POSTs each event as S3 event
JSON to each of its targets, and drops an event from the queue once every target took it (2xx). A target that
fails is paused with exponential backoff (its later events wait, so each target sees its events in order) and
the event keeps the targets still owed. A crash between a POST and the queue update delivers the event again.
The queue is bounded: past `max_backlog` the oldest events are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from cluster.workers import Periodic, yield_to
from metadata.index import Index
from metadata.records import EventRecord, NotifyTarget

log = logging.getLogger(__name__)

LEASE = "notify"
YIELD_MOST = 1.0  # seconds a batch waits for client traffic to calm down, at most
DROP_STEP = 10_000  # events dropped per step when the backlog is over its bound (the pass goes on)


@dataclass(slots=True)
class NotifySettings:
    interval: float = 0.5  # seconds between looks at the queue
    batch: int = 256  # events read per look
    max_backlog: int = 100_000  # queued events kept; past it the oldest are dropped
    timeout: float = 5.0  # seconds one POST may take
    backoff_base: float = 0.5  # seconds a failing target is paused after its first failure, doubling after
    backoff_cap: float = 60.0
    lease_ttl: float = 10.0
    region: str = "us-east-1"


@dataclass(slots=True)
class NotifyStats:
    delivered: int = 0  # (event, target) deliveries a webhook accepted
    retried: int = 0  # failed attempts, each tried again later
    dropped: int = 0  # events dropped: past the backlog bound, or for a target no longer registered
    backlog: int = 0  # events queued at the last count


def event_json(ev: EventRecord, region: str, target: str) -> dict[str, Any]:
    """The S3 event document for one event (key URL-encoded, as S3 sends it)."""
    obj: dict[str, Any] = {"key": quote_plus(ev.key, safe="/"), "sequencer": ev.seq.upper()}
    if ev.name.startswith("ObjectCreated"):
        obj.update(size=ev.size, eTag=ev.etag)
    if ev.version_id:
        obj["versionId"] = ev.version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": "tessera:s3",
        "awsRegion": region,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ev.time)) + f".{int(ev.time * 1000) % 1000:03d}Z",
        "eventName": ev.name,
        "userIdentity": {"principalId": ev.principal},
        "requestParameters": {},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": target,
            "bucket": {"name": ev.bucket, "arn": f"arn:aws:s3:::{ev.bucket}"},
            "object": obj,
        },
    }
    return {"Records": [record]}


@dataclass
class Notifier:
    index: Index
    holder: str
    settings: NotifySettings = field(default_factory=NotifySettings)
    busy: Callable[[], bool] = lambda: False  # client traffic goes first (a bounded wait per batch)
    stats: NotifyStats = field(default_factory=NotifyStats)
    worker: Periodic = field(init=False)
    _paused: dict[str, tuple[int, float]] = field(default_factory=dict)  # target -> (failures, until)
    _lease_until: float = 0.0  # monotonic: when our lease needs renewing (0: not held)
    _next_try: float = 0.0  # monotonic: when a gateway without the lease asks for it again
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.worker = Periodic(
            "notify",
            self._pass,
            self.settings.interval,
            what="event delivery",
            counters=lambda: {
                "delivered": self.stats.delivered,
                "retried": self.stats.retried,
                "dropped": self.stats.dropped,
                "backlog": self.stats.backlog,
            },
        )

    async def close(self) -> None:
        await self.worker.stop()
        if self._lease_until:
            try:
                await self.index.release_lease(LEASE, self.holder)
            except Exception as exc:  # the lease runs out by itself
                log.info("notify: could not release the lease: %r", exc)
        if self._session is not None:
            await self._session.close()

    async def _leased(self) -> bool:
        now = time.monotonic()
        if self._lease_until and now < self._lease_until:
            return True
        if not self._lease_until and now < self._next_try:
            return False
        ttl = self.settings.lease_ttl
        if await self.index.acquire_lease(LEASE, self.holder, ttl):
            self._lease_until = now + ttl / 2
            return True
        self._lease_until, self._next_try = 0.0, now + ttl / 3
        return False

    async def _pass(self) -> None:
        # The lease is renewed between batches, so a long pass never outlives it.
        while await self._leased():
            await yield_to(self.busy, YIELD_MOST)  # then deliver anyway: events must not starve either
            if not await self.deliver_some():
                break

    async def deliver_some(self) -> bool:
        """One batch of the queue; True if a full batch was read and something changed (look again at once)."""
        s = self.settings
        events = await self.index.list_events(limit=s.batch)
        if len(events) >= s.batch:
            self.stats.backlog = await self.index.event_backlog()
            if self.stats.backlog > s.max_backlog:
                excess = await self.index.list_events(limit=min(self.stats.backlog - s.max_backlog, DROP_STEP))
                await self.index.update_events([e.seq for e in excess], [])
                self.stats.dropped += len(excess)
                log.warning("notify: backlog over %d: dropped the %d oldest events", s.max_backlog, len(excess))
                return True
        else:
            self.stats.backlog = len(events)
        if not events:
            return False
        targets = {t.name: t for t in await self.index.list_notify_targets()}
        done, retry = await self._deliver(events, targets)
        if done or retry:
            await self.index.update_events(done, retry)
        return len(events) >= s.batch and bool(done)

    async def _deliver(
        self, events: list[EventRecord], targets: dict[str, NotifyTarget]
    ) -> tuple[list[str], list[EventRecord]]:
        """Each target's events in queue order, targets side by side; a target stops at its first failure."""
        by_target: dict[str, list[EventRecord]] = {}
        changed: dict[str, EventRecord] = {}
        for ev in events:
            for name in ev.targets:
                if name not in targets:  # removed by the operator: nothing to deliver to
                    ev.targets = [t for t in ev.targets if t != name]
                    changed[ev.seq] = ev
                    self.stats.dropped += not ev.targets
                else:
                    by_target.setdefault(name, []).append(ev)
        now = time.monotonic()
        runs = [self._run_target(targets[n], evs, changed) for n, evs in by_target.items() if self._ready(n, now)]
        await asyncio.gather(*runs)
        done = [seq for seq, ev in changed.items() if not ev.targets]
        return done, [ev for ev in changed.values() if ev.targets]

    def _ready(self, target: str, now: float) -> bool:
        return self._paused.get(target, (0, 0.0))[1] <= now

    async def _run_target(
        self, target: NotifyTarget, events: list[EventRecord], changed: dict[str, EventRecord]
    ) -> None:
        for ev in events:
            if not await self._post(target, ev):
                ev.attempts += 1
                changed[ev.seq] = ev
                self.stats.retried += 1
                failures = self._paused.get(target.name, (0, 0.0))[0] + 1
                pause = min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (failures - 1))
                self._paused[target.name] = (failures, time.monotonic() + pause * random.uniform(0.5, 1.0))
                return
            self._paused.pop(target.name, None)
            ev.targets = [t for t in ev.targets if t != target.name]
            changed[ev.seq] = ev
            self.stats.delivered += 1

    async def _post(self, target: NotifyTarget, ev: EventRecord) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        headers = {"Authorization": f"Bearer {target.auth_token}"} if target.auth_token else {}
        try:
            body = event_json(ev, self.settings.region, target.name)
            async with self._session.post(target.url, json=body, headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True
                log.info("notify: %s answered %d for event %s", target.name, resp.status, ev.seq)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("notify: %s unreachable for event %s: %r", target.name, ev.seq, exc)
        return False
