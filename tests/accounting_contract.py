"""The quota, usage and event-queue part of the Index contract (docs/quotas.md, docs/notifications.md).

Mixed into each index's test class beside IndexContract (same `index` fixture): LocalIndex, RemoteIndex
and ReplicatedIndex run the same cases.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from metadata.index import Index, NoSuchBucket
from metadata.records import EventRecord, NotifyTarget, Usage, new_version_id
from tests.index_records import make_manifest, make_upload, make_user, new_bucket, new_id
from tests.version_contract import version, versioned_bucket


def event(bucket: str, key: str, name: str = "ObjectCreated:Put") -> EventRecord:
    return EventRecord(new_version_id(1_800_000_000.0) + os.urandom(2).hex(), name, bucket, key, ["hook"], size=3)


async def my_events(index: Index, bucket: str) -> list[EventRecord]:
    return [e for e in await index.list_events(limit=10_000) if e.bucket == bucket]


class AccountingContract:
    async def test_usage_follows_puts_overwrites_deletes(self, index: Index) -> None:
        b = await new_bucket(index, "u")
        assert await index.bucket_usage(b) == Usage(0, 0)
        one, two = make_manifest(b, "k1"), make_manifest(b, "k2")
        await index.put_object(one)
        await index.put_object(two)
        assert await index.bucket_usage(b) == Usage(one.size + two.size, 2)
        bigger = make_manifest(b, "k1")
        bigger.size = one.size + 100
        await index.put_object(bigger)  # an overwrite: the old size leaves, the count stays
        assert await index.bucket_usage(b) == Usage(bigger.size + two.size, 2)
        await index.delete_object(b, "k2")
        await index.delete_object(b, "k2")  # nothing there: no change
        assert await index.bucket_usage(b) == Usage(bigger.size, 1)
        with pytest.raises(NoSuchBucket):
            await index.bucket_usage(new_bucket_name_absent())

    async def test_usage_counts_every_version_not_markers(self, index: Index) -> None:
        b = await versioned_bucket(index)
        v1, v2 = version(b, "k"), version(b, "k")
        await index.put_object(v1)
        await index.put_object(v2)
        assert await index.bucket_usage(b) == Usage(v1.size + v2.size, 2)
        await index.put_object(version(b, "k", marker=True))
        assert await index.bucket_usage(b) == Usage(v1.size + v2.size, 2)
        await index.delete_version(b, "k", v1.s3_version_id)
        assert await index.bucket_usage(b) == Usage(v2.size, 1)

    async def test_usage_of_completed_upload(self, index: Index) -> None:
        b = await new_bucket(index, "u")
        up = make_upload(b, "mp")
        await index.create_upload(up)
        man = make_manifest(b, "mp")
        man.version_id = up.upload_id
        await index.complete_upload(up.upload_id, man)
        assert await index.bucket_usage(b) == Usage(man.size, 1)

    async def test_concurrent_writes_keep_usage_exact(self, index: Index) -> None:
        b = await new_bucket(index, "u")
        mans = [make_manifest(b, f"k{i % 5}") for i in range(20)]
        await asyncio.gather(*(index.put_object(m) for m in mans))
        expect = Usage()
        for key in {m.key for m in mans}:
            cur = await index.get_object(b, key)
            assert cur is not None
            expect.bytes += cur.size
            expect.objects += 1
        assert await index.bucket_usage(b) == expect

    async def test_quotas_are_kept_on_records(self, index: Index) -> None:
        b = await new_bucket(index, "q")
        await index.set_bucket_quota(b, 1000, 7)
        rec = await index.get_bucket(b)
        assert rec is not None and (rec.quota_size, rec.quota_objects) == (1000, 7)
        await index.set_bucket_quota(b, 0, 0)
        rec = await index.get_bucket(b)
        assert rec is not None and (rec.quota_size, rec.quota_objects) == (0, 0)
        with pytest.raises(ValueError):
            await index.set_bucket_quota(b, -1, 0)
        with pytest.raises(NoSuchBucket):
            await index.set_bucket_quota(new_bucket_name_absent(), 1, 1)
        user = make_user(f"uq-{new_id()[:8]}")
        await index.create_user(user)
        got = await index.set_user_quota(user.name, 5 << 30, 0)
        assert got is not None and got.quota_size == 5 << 30
        assert [u.quota_size for u in await index.list_users() if u.name == user.name] == [5 << 30]
        assert await index.set_user_quota(f"nobody-{new_id()[:8]}", 1, 1) is None

    async def test_events_queue_with_their_write(self, index: Index) -> None:
        b = await new_bucket(index, "e")
        ev = event(b, "k")
        await index.put_object(make_manifest(b, "k"), events=[ev])
        gone = event(b, "absent", "ObjectRemoved:Delete")
        await index.delete_object(b, "absent", events=[gone])  # nothing removed: no event
        rm = event(b, "k", "ObjectRemoved:Delete")
        await index.delete_object(b, "k", events=[rm])
        got = await my_events(index, b)
        assert [(e.seq, e.name) for e in got] == sorted([(ev.seq, ev.name), (rm.seq, rm.name)])
        assert await index.event_backlog() >= 2
        first = got[0]
        first.targets, first.attempts = [], 3
        await index.update_events([got[1].seq], [first])
        after = await my_events(index, b)
        assert [(e.seq, e.attempts) for e in after] == [(first.seq, 3)]
        await index.update_events([first.seq], [])
        await index.update_events([], [first])  # dropped meanwhile: not brought back
        assert await my_events(index, b) == []

    async def test_notification_config_and_targets(self, index: Index) -> None:
        b = await new_bucket(index, "n")
        await index.set_notifications(b, '{"rules": []}')
        rec = await index.get_bucket(b)
        assert rec is not None and rec.notifications == '{"rules": []}'
        name = f"t-{new_id()[:8]}"
        await index.put_notify_target(NotifyTarget(name, "http://127.0.0.1:1/hook", "tok"))
        assert [t.url for t in await index.list_notify_targets() if t.name == name] == ["http://127.0.0.1:1/hook"]
        assert await index.remove_notify_target(name)
        assert not await index.remove_notify_target(name)
        assert name not in {t.name for t in await index.list_notify_targets()}


def new_bucket_name_absent() -> str:
    return f"absent-{new_id()[:8]}"
