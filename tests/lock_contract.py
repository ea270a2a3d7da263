"""The object lock part of the Index contract (metadata/index.py, metadata/object_lock.py, docs/object-lock.md).

Mixed into each index's test class beside IndexContract and VersionContract (same `index` fixture): LocalIndex,
RemoteIndex and ReplicatedIndex run the same cases.
"""

from __future__ import annotations

import pytest

from metadata.index import Index, NoSuchBucket, ObjectLocked
from metadata.records import LockGuard
from tests.index_records import new_bucket
from tests.version_contract import version, versioned_bucket

NOW = 1_900_000_000.0  # the guards' clock: after every version's time in these tests
LATER = NOW + 3600


async def locked_bucket(index: Index, mode: str = "", days: int = 0) -> str:
    name = await versioned_bucket(index)
    await index.set_bucket_lock(name, mode, days)
    return name


class LockContract:
    async def test_bucket_lock(self, index: Index) -> None:
        name = await locked_bucket(index, "COMPLIANCE", 3)
        rec = await index.get_bucket(name)
        assert (
            rec is not None
            and rec.object_lock
            and (rec.lock_mode, rec.lock_days, rec.lock_years)
            == (
                "COMPLIANCE",
                3,
                0,
            )
        )
        await index.set_bucket_lock(name, "GOVERNANCE", 0, 1)
        rec = await index.get_bucket(name)
        assert rec is not None and (rec.lock_mode, rec.lock_days, rec.lock_years) == ("GOVERNANCE", 0, 1)
        await index.set_bucket_lock(name)  # no default retention; the lock stays on
        rec = await index.get_bucket(name)
        assert rec is not None and rec.object_lock and rec.lock_mode == ""
        with pytest.raises(ValueError):
            await index.set_versioning(name, "Suspended")
        assert (await index.get_bucket(name)).versioning == "Enabled"  # type: ignore[union-attr]

    async def test_bucket_lock_refusals(self, index: Index) -> None:
        plain = await new_bucket(index, "l")
        with pytest.raises(ValueError):
            await index.set_bucket_lock(plain)  # versioning never enabled
        with pytest.raises(NoSuchBucket):
            await index.set_bucket_lock(plain + "-none")
        name = await versioned_bucket(index)
        for rule in [("COMPLIANCE", 1, 1), ("COMPLIANCE", 0, 0), ("KEEP", 1, 0), ("", 1, 0), ("GOVERNANCE", -1, 0)]:
            with pytest.raises(ValueError):
                await index.set_bucket_lock(name, *rule)
        assert not (await index.get_bucket(name)).object_lock  # type: ignore[union-attr]

    async def test_retention_in_place(self, index: Index) -> None:
        name = await locked_bucket(index)
        old, new = version(name, "k"), version(name, "k")
        await index.put_object(old)
        await index.put_object(new)
        guard = LockGuard(NOW)
        for man in (old, new):  # a noncurrent version and the current one
            assert await index.set_retention(name, "k", man.version_id, "GOVERNANCE", LATER, guard)
            stored = await index.get_version(name, "k", man.s3_version_id)
            assert stored is not None and (stored.lock_mode, stored.lock_until) == ("GOVERNANCE", LATER)
            assert stored is not None and stored.lock_mode == "GOVERNANCE" and stored.parts == man.parts
        current = await index.get_object(name, "k")
        assert current is not None and current.s3_version_id == new.s3_version_id and current.lock_until == LATER
        assert not await index.set_retention(name, "k", "0" * 32, "GOVERNANCE", LATER, guard)
        assert not await index.set_legal_hold(name, "nokey", new.version_id, True)
        page = await index.list_versions(name)
        assert [e.manifest.s3_version_id for e in page.versions] == [new.s3_version_id, old.s3_version_id]

    async def test_compliance_only_extends(self, index: Index) -> None:
        name = await locked_bucket(index)
        man = version(name, "c")
        await index.put_object(man)
        vid, guard = man.version_id, LockGuard(NOW, bypass_governance=True)
        await index.set_retention(name, "c", vid, "COMPLIANCE", LATER, guard)
        for mode, until in [("COMPLIANCE", LATER - 1), ("GOVERNANCE", LATER + 10), ("", 0.0)]:
            with pytest.raises(ObjectLocked):
                await index.set_retention(name, "c", vid, mode, until, guard)
        assert await index.set_retention(name, "c", vid, "COMPLIANCE", LATER + 60, guard)
        got = await index.get_object(name, "c")
        assert got is not None and got.lock_until == LATER + 60
        # Once the retention has passed, anything goes.
        assert await index.set_retention(name, "c", vid, "", 0.0, LockGuard(LATER + 61))
        got = await index.get_object(name, "c")
        assert got is not None and got.lock_mode == "" and got.lock_until == 0.0

    async def test_governance_needs_bypass_to_shorten(self, index: Index) -> None:
        name = await locked_bucket(index)
        man = version(name, "g")
        await index.put_object(man)
        vid = man.version_id
        await index.set_retention(name, "g", vid, "GOVERNANCE", LATER, LockGuard(NOW))
        with pytest.raises(ObjectLocked):
            await index.set_retention(name, "g", vid, "GOVERNANCE", LATER - 5, LockGuard(NOW))
        await index.set_retention(name, "g", vid, "GOVERNANCE", LATER + 5, LockGuard(NOW))  # extending is free
        assert await index.set_retention(name, "g", vid, "GOVERNANCE", NOW + 1, LockGuard(NOW, True))
        got = await index.get_object(name, "g")
        assert got is not None and got.lock_until == NOW + 1
        with pytest.raises(ValueError):
            await index.set_retention(name, "g", vid, "FOREVER", LATER, LockGuard(NOW))

    async def test_delete_version_guarded(self, index: Index) -> None:
        name = await locked_bucket(index)
        gov, comp, held = version(name, "d"), version(name, "d"), version(name, "d")
        for man in (gov, comp, held):
            await index.put_object(man)
        assert await index.set_retention(name, "d", gov.version_id, "GOVERNANCE", LATER, LockGuard(NOW))
        assert await index.set_retention(name, "d", comp.version_id, "COMPLIANCE", LATER, LockGuard(NOW))
        assert await index.set_legal_hold(name, "d", held.version_id, True)
        for man in (gov, comp, held):
            with pytest.raises(ObjectLocked):
                await index.delete_version(name, "d", man.s3_version_id, LockGuard(NOW))
        with pytest.raises(ObjectLocked):
            await index.delete_version(name, "d", comp.s3_version_id, LockGuard(NOW, bypass_governance=True))
        with pytest.raises(ObjectLocked):  # a legal hold is not bypassed
            await index.delete_version(name, "d", held.s3_version_id, LockGuard(NOW, bypass_governance=True))
        assert len((await index.list_versions(name)).versions) == 3
        removed = await index.delete_version(name, "d", gov.s3_version_id, LockGuard(NOW, bypass_governance=True))
        assert removed is not None and removed.s3_version_id == gov.s3_version_id
        removed = await index.delete_version(name, "d", comp.s3_version_id, LockGuard(LATER + 1))
        assert removed is not None
        assert await index.set_legal_hold(name, "d", held.version_id, False)
        off = await index.get_version(name, "d", held.s3_version_id)
        assert off is not None and off.legal_hold == "OFF"
        assert await index.delete_version(name, "d", held.s3_version_id, LockGuard(NOW)) is not None
        assert (await index.list_versions(name)).versions == []

    async def test_delete_marker_has_no_lock(self, index: Index) -> None:
        name = await locked_bucket(index)
        marker = version(name, "m", marker=True)
        await index.put_object(marker)
        assert not await index.set_legal_hold(name, "m", marker.version_id, True)
        assert not await index.set_retention(name, "m", marker.version_id, "GOVERNANCE", LATER, LockGuard(NOW))
        assert await index.delete_version(name, "m", marker.s3_version_id, LockGuard(NOW)) is not None
