"""The event delivery worker (gateway/care/notify.py) on a real LocalIndex and a real HTTP receiver: the backlog
bound, backoff of a failing target, targets removed, and one deliverer per lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.care.notify import Notifier, NotifySettings
from metadata.local.store import LocalIndex
from metadata.records import BucketRecord, EventRecord, NotifyTarget, new_version_id
from tests.index_records import make_manifest
from tests.webhook_receiver import Receiver, free_port


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[LocalIndex]:
    idx = LocalIndex.open(tmp_path / "index")
    await idx.create_bucket(BucketRecord("b", "owner", 0.0))
    yield idx
    await idx.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    r.close()


async def queue(index: LocalIndex, n: int, targets: list[str]) -> list[str]:
    keys = []
    for i in range(n):
        key = f"k{i:03d}"
        ev = EventRecord(new_version_id(1_800_000_000.0 + i), "ObjectCreated:Put", "b", key, targets, size=1)
        await index.put_object(make_manifest("b", key), events=[ev])
        keys.append(key)
    return keys


def fast(**kw: float) -> NotifySettings:
    return NotifySettings(**{"interval": 0.05, "batch": 4, "backoff_base": 0.05, "backoff_cap": 0.2, **kw})


async def test_backlog_past_its_bound_drops_the_oldest(index: LocalIndex, receiver: Receiver) -> None:
    await index.put_notify_target(NotifyTarget("hook", receiver.url))
    keys = await queue(index, 10, ["hook"])
    notifier = Notifier(index, "me", fast(max_backlog=6))
    while await notifier.deliver_some():
        pass
    await notifier.close()
    assert notifier.stats.dropped == 4
    delivered = {r["s3"]["object"]["key"] for r in receiver.got()}
    assert delivered == set(keys[4:])  # the four oldest were dropped
    assert await index.event_backlog() == 0


async def test_a_failing_target_backs_off_and_keeps_order(index: LocalIndex, receiver: Receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    await index.put_notify_target(NotifyTarget("dead", dead))
    await index.put_notify_target(NotifyTarget("live", receiver.url))
    await queue(index, 3, ["dead", "live"])
    notifier = Notifier(index, "me", fast(backoff_base=0.5, backoff_cap=0.5))  # paused 0.25 to 0.5 s
    await notifier.deliver_some()
    assert notifier.stats.retried == 1  # the dead target stopped at its first event; the live one took all three
    assert notifier.stats.delivered == 3
    await notifier.deliver_some()  # paused: not tried again at once
    assert notifier.stats.retried == 1
    left = await index.list_events()
    assert [e.targets for e in left] == [["dead"]] * 3 and left[0].attempts == 1
    await index.put_notify_target(NotifyTarget("dead", receiver.url))  # the operator points it elsewhere
    for _ in range(100):  # bounded: the pause is at most backoff_cap
        await notifier.deliver_some()
        if not await index.event_backlog():
            break
        await asyncio.sleep(0.05)
    await notifier.close()
    assert await index.event_backlog() == 0
    keys = [r["s3"]["object"]["key"] for r in receiver.got()]
    assert keys[3:] == ["k000", "k001", "k002"]  # the once-dead target's events, in queue order


async def test_events_for_a_removed_target_are_dropped(index: LocalIndex) -> None:
    await queue(index, 2, ["gone"])
    notifier = Notifier(index, "me", fast())
    await notifier.deliver_some()
    await notifier.close()
    assert notifier.stats.dropped == 2 and await index.event_backlog() == 0


async def test_one_deliverer_holds_the_lease(index: LocalIndex, receiver: Receiver) -> None:
    await index.put_notify_target(NotifyTarget("hook", receiver.url))
    first, second = Notifier(index, "one", fast()), Notifier(index, "two", fast())
    first.worker.start()
    second.worker.start()
    try:
        keys = await queue(index, 5, ["hook"])
        for _ in range(200):
            if len(receiver.got()) >= 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await first.close()
        await second.close()
    assert sorted(r["s3"]["object"]["key"] for r in receiver.got()) == keys  # each once
    assert (first.stats.delivered, second.stats.delivered) in ((5, 0), (0, 5))
