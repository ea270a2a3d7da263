"""The Index contract: cluster membership, node states, the repair queue, users and leases."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from metadata.index import (
    DriveClaimed,
    Index,
    NoSuchNode,
    UserExists,
)
from metadata.records import (
    NODE_STATES,
    REPAIR_REASONS,
    BucketRecord,
    DriveRecord,
    RepairEntry,
    UserRecord,
)
from tests.index_records import (
    make_node,
    make_repair,
    make_user,
    new_bucket_name,
    new_id,
    nodes_tagged,
    position,
    queued_of,
    upsert_checked,
)


class ClusterContract:
    # ---- cluster membership (node ids carry a tag of the test's own: the index may be shared)

    async def test_register_and_list_nodes(self, index: Index) -> None:
        tag = new_id()[:8]
        recs = [make_node(f"{tag}-{n}", [f"{tag}-{n}-d{i}" for i in range(3)]) for n in ("b", "a", "c")]
        stored = [await upsert_checked(index, rec) for rec in recs]
        listed = await nodes_tagged(index, tag)
        assert listed == sorted(stored, key=lambda n: n.node_id)
        assert all(isinstance(d, DriveRecord) for n in listed for d in n.drives)
        assert (await index.list_nodes()) == sorted(await index.list_nodes(), key=lambda n: n.node_id)

    async def test_last_seen_is_the_index_clock(self, index: Index) -> None:
        tag = new_id()[:8]
        for claimed in (0.0, 1e12, -5.0):  # whatever the node says (its clock may be off)
            await upsert_checked(index, dataclasses.replace(make_node(tag, [f"{tag}-d"]), last_seen=claimed))

    async def test_heartbeat_replaces_the_record(self, index: Index) -> None:
        tag = new_id()[:8]
        first = await upsert_checked(index, make_node(tag, [f"{tag}-d1", f"{tag}-d2"]))
        beat = make_node(tag, [f"{tag}-d2", f"{tag}-d3"], zone="z2", port=9200)
        beat.drives[0].free = 12345
        second = await upsert_checked(index, beat)
        assert second.last_seen >= first.last_seen
        assert await nodes_tagged(index, tag) == [second]
        # the drive it dropped is free for another node; the ones it kept are not
        await upsert_checked(index, make_node(f"{tag}-other", [f"{tag}-d1"]))
        with pytest.raises(DriveClaimed):
            await index.upsert_node(make_node(f"{tag}-other", [f"{tag}-d1", f"{tag}-d3"]))

    async def test_node_without_drives(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(tag, []))
        assert [n.drives for n in await nodes_tagged(index, tag)] == [[]]

    async def test_drive_claimed_by_another_node_changes_nothing(self, index: Index) -> None:
        tag = new_id()[:8]
        owner = await upsert_checked(index, make_node(f"{tag}-a", [f"{tag}-a1", f"{tag}-a2"]))
        with pytest.raises(DriveClaimed) as exc:
            await index.upsert_node(make_node(f"{tag}-b", [f"{tag}-b1", f"{tag}-a2"]))
        assert (exc.value.drive_id, exc.value.node_id) == (f"{tag}-a2", f"{tag}-a")
        assert await nodes_tagged(index, tag) == [owner]  # b was not registered
        # b's own drive was not taken either: another node may claim it
        other = await upsert_checked(index, make_node(f"{tag}-c", [f"{tag}-b1"]))
        # a registered node's heartbeat that claims a foreign drive leaves its record as it was
        with pytest.raises(DriveClaimed):
            await index.upsert_node(make_node(f"{tag}-c", [f"{tag}-a1"], zone="elsewhere"))
        assert await nodes_tagged(index, tag) == [owner, other]

    async def test_a_node_may_not_list_a_drive_twice(self, index: Index) -> None:
        tag = new_id()[:8]
        with pytest.raises(ValueError):
            await index.upsert_node(make_node(tag, [f"{tag}-d", f"{tag}-d"]))
        assert await nodes_tagged(index, tag) == []

    async def test_remove_node_releases_its_drives(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(f"{tag}-a", [f"{tag}-d1", f"{tag}-d2"]))
        kept = await upsert_checked(index, make_node(f"{tag}-b", [f"{tag}-d3"]))
        assert await index.remove_node(f"{tag}-a") is True
        assert await nodes_tagged(index, tag) == [kept]
        assert await index.remove_node(f"{tag}-a") is False
        assert await index.remove_node(f"{tag}-never") is False
        moved = await upsert_checked(index, make_node(f"{tag}-c", [f"{tag}-d1", f"{tag}-d2"]))
        assert await nodes_tagged(index, tag) == [kept, moved]
        with pytest.raises(DriveClaimed):  # removing a did not release b's drive
            await index.upsert_node(make_node(f"{tag}-c", [f"{tag}-d3"]))

    # ---- node state (operators set it; heartbeats keep it)

    async def test_set_node_state(self, index: Index) -> None:
        tag = new_id()[:8]
        registered = await upsert_checked(index, make_node(tag, [f"{tag}-d"]))
        assert registered.state == "active"
        for state in ("draining", "retired", "active", "draining"):
            rec = await index.set_node_state(tag, state)
            assert rec == dataclasses.replace(registered, state=state, last_seen=rec.last_seen)
            assert await nodes_tagged(index, tag) == [rec]

    async def test_heartbeats_keep_the_node_state(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(tag, [f"{tag}-d1"]))
        await index.set_node_state(tag, "draining")
        beat = make_node(tag, [f"{tag}-d1", f"{tag}-d2"], zone="z2")
        stored = await index.upsert_node(beat)  # says "active" (the default): the index keeps its own
        assert stored == dataclasses.replace(beat, state="draining", last_seen=stored.last_seen)
        assert await nodes_tagged(index, tag) == [stored]
        stored = await index.upsert_node(dataclasses.replace(beat, state="retired"))  # nor may a node set it
        assert stored.state == "draining"
        assert [n.state for n in await nodes_tagged(index, tag)] == ["draining"]

    async def test_a_new_node_is_active_whatever_it_says(self, index: Index) -> None:
        tag = new_id()[:8]
        stored = await index.upsert_node(dataclasses.replace(make_node(tag, []), state="retired"))
        assert stored.state == "active"
        assert [n.state for n in await nodes_tagged(index, tag)] == ["active"]

    async def test_remove_node_forgets_its_state(self, index: Index) -> None:
        tag = new_id()[:8]
        await upsert_checked(index, make_node(tag, [f"{tag}-d"]))
        await index.set_node_state(tag, "retired")
        assert await index.remove_node(tag) is True
        assert await nodes_tagged(index, tag) == []
        again = await upsert_checked(index, make_node(tag, [f"{tag}-d"]))
        assert again.state == "active"
        assert await nodes_tagged(index, tag) == [again]

    async def test_set_node_state_errors_change_nothing(self, index: Index) -> None:
        tag = new_id()[:8]
        with pytest.raises(NoSuchNode):
            await index.set_node_state(f"{tag}-never", "draining")
        assert await nodes_tagged(index, tag) == []  # not registered by the attempt
        await upsert_checked(index, make_node(tag, []))
        await index.set_node_state(tag, "draining")
        for bad in ("paused", "", "Active", "draining "):
            assert bad not in NODE_STATES
            with pytest.raises(ValueError):
                await index.set_node_state(tag, bad)
        assert [n.state for n in await nodes_tagged(index, tag)] == ["draining"]
        await index.remove_node(tag)
        with pytest.raises(NoSuchNode):
            await index.set_node_state(tag, "active")

    # ---- the repair queue (data ids are the test's own: the index may be shared)

    async def test_repair_queue_order(self, index: Index) -> None:
        ids = sorted(new_id() for _ in range(3))
        entries = [
            make_repair(s, d, part, i)
            for s in (0, 2, 5)
            for d in ids
            for part in (0, 2, 256, 10_000)
            for i in (-1, 0, 1, 5, 300)
        ]
        shuffled = entries[::7] + [e for j, e in enumerate(entries) if j % 7]
        await index.queue_repairs(shuffled[:50])
        await index.queue_repairs(shuffled[50:])
        want = sorted(entries, key=position)
        assert want[0] == make_repair(0, ids[0], 0, -1)  # fewest surviving, then one part's entries together
        assert await queued_of(index, set(ids)) == want

    async def test_repair_entries_round_trip(self, index: Index) -> None:
        d = new_id()
        entries = [
            make_repair(3, d, 1, j, bucket="b-1", key="ünï/😀 key", reason=reason, drive_id=f"drv-{j}", queued=j + 0.5)
            for j, reason in enumerate(REPAIR_REASONS)
        ]
        entries.append(RepairEntry(0, d, 0, -1))  # only the position: from a scrubber that knows no object
        await index.queue_repairs(entries)
        got = await queued_of(index, {d})
        assert got == sorted(entries, key=position)
        assert all(isinstance(e, RepairEntry) for e in got)

    async def test_repair_at_the_same_position_is_replaced(self, index: Index) -> None:
        d = new_id()
        before = await index.repair_backlog()
        first = make_repair(2, d, 1, 3, reason="write", drive_id="a")
        await index.queue_repairs([first, make_repair(2, d, 1, 4)])
        second = make_repair(2, d, 1, 3, reason="scrub", drive_id="b", bucket="", key="", queued=2.0)
        await index.queue_repairs([second])
        assert await queued_of(index, {d}) == [second, make_repair(2, d, 1, 4)]
        assert await index.repair_backlog() == before + 2
        # the same part and fragment with another survivor count is another position
        await index.queue_repairs([make_repair(1, d, 1, 3)])
        assert await queued_of(index, {d}) == [make_repair(1, d, 1, 3), second, make_repair(2, d, 1, 4)]
        await index.queue_repairs([])  # nothing to do
        assert await index.repair_backlog() == before + 3

    async def test_list_repairs_after_and_limit(self, index: Index) -> None:
        ids = [new_id() for _ in range(4)]
        entries = [
            make_repair(s, d, p, i) for s, d in zip((1, 1, 4, 4), ids, strict=True) for p in (1, 2) for i in (0, 1)
        ]
        await index.queue_repairs(entries)
        want = sorted(entries, key=position)
        whole = await index.list_repairs()
        assert [e for e in whole if e.data_id in ids] == want
        assert await index.list_repairs(limit=3) == whole[:3]
        assert await index.list_repairs(limit=1) == whole[:1]
        for j, e in enumerate(want):
            # `after` need not be queued (only its position counts), and its other fields do not matter
            tail = [
                x
                for x in await index.list_repairs(dataclasses.replace(e, reason="scan", key="zzz"))
                if x.data_id in ids
            ]
            assert tail == want[j + 1 :]
        between = dataclasses.replace(want[0], index=want[0].index + 100)  # a position that is not queued
        assert [x for x in await index.list_repairs(between) if x.data_id in ids] == [
            w for w in want if position(w) > position(between)
        ]
        # paging with a small limit, each page starting after the last one's end, walks the queue once
        walked: list[RepairEntry] = []
        after: RepairEntry | None = None
        while page := await index.list_repairs(after, limit=3):
            assert len(page) <= 3
            walked += page
            after = page[-1]
        assert walked == whole

    async def test_remove_repairs(self, index: Index) -> None:
        d = new_id()
        entries = [make_repair(2, d, 1, i) for i in range(6)]
        await index.queue_repairs(entries)
        before = await index.repair_backlog()
        absent = [make_repair(2, d, 1, 99), make_repair(3, d, 1, 0), make_repair(2, new_id(), 1, 0)]
        # removal is by position: the other fields need not match
        gone = [dataclasses.replace(entries[1], reason="scan", drive_id="x"), entries[4]]
        await index.remove_repairs(gone + absent)
        assert await queued_of(index, {d}) == [entries[0], entries[2], entries[3], entries[5]]
        assert await index.repair_backlog() == before - 2
        await index.remove_repairs(gone)  # again: nothing left to remove
        await index.remove_repairs([])
        assert await index.repair_backlog() == before - 2
        await index.remove_repairs(entries)
        assert await queued_of(index, {d}) == []
        assert await index.repair_backlog() == before - 6

    async def test_repair_backlog_counts_entries(self, index: Index) -> None:
        before = await index.repair_backlog()
        assert before >= 0
        d = new_id()
        await index.queue_repairs([make_repair(0, d, p, -1) for p in range(25)])
        assert await index.repair_backlog() == before + 25
        await index.queue_repairs([make_repair(0, d, p, -1) for p in range(20, 30)])
        assert await index.repair_backlog() == before + 30

    # ---- users (names carry a tag of the test's own: the index may be shared)

    async def test_create_and_list_users(self, index: Index) -> None:
        tag = new_id()[:8]
        users = [
            make_user(f"{tag}-{n}", created=float(j)) for j, n in enumerate(("carol", "alice", "bob", "Zed", "a.b"))
        ]
        for u in users:
            assert await index.create_user(u) is None
        listed = await index.list_users()
        assert [u.name for u in listed] == sorted(u.name for u in listed)
        assert [u for u in listed if u.name.startswith(tag)] == sorted(users, key=lambda u: u.name)
        assert all(isinstance(u, UserRecord) for u in listed)

    async def test_create_existing_user_keeps_the_original(self, index: Index) -> None:
        tag = new_id()[:8]
        original = make_user(f"{tag}-alice")
        await index.create_user(original)
        with pytest.raises(UserExists):
            await index.create_user(make_user(f"{tag}-alice", created=2.0))
        assert [u for u in await index.list_users() if u.name.startswith(tag)] == [original]

    async def test_racing_user_creations_have_one_winner(self, index: Index) -> None:
        name = f"{new_id()[:8]}-race"
        users = [make_user(name, created=float(i)) for i in range(5)]

        async def create(u: UserRecord) -> bool:
            try:
                await index.create_user(u)
                return True
            except UserExists:
                return False

        won = await asyncio.gather(*(create(u) for u in users))
        assert sum(won) == 1
        assert [u for u in await index.list_users() if u.name == name] == [users[won.index(True)]]

    async def test_update_user_policy(self, index: Index) -> None:
        user = make_user(f"{new_id()[:8]}-pol")
        await index.create_user(user)
        rec = await index.update_user(user.name, {"policy": '{"Statement": []}'})
        assert rec is not None and rec.policy == '{"Statement": []}' and rec.secret_key == user.secret_key
        assert [u for u in await index.list_users() if u.name == user.name] == [rec]
        with pytest.raises(ValueError):
            await index.update_user(user.name, {"secret_key": "stolen"})
        assert await index.update_user(f"{new_id()[:8]}-none", {"policy": ""}) is None
        cleared = await index.update_user(user.name, {"policy": None})
        assert cleared is not None and cleared.policy == ""

    async def test_delete_user(self, index: Index) -> None:
        tag = new_id()[:8]
        alice, bob = make_user(f"{tag}-alice"), make_user(f"{tag}-bob")
        await index.create_user(alice)
        await index.create_user(bob)
        bucket = BucketRecord(name=new_bucket_name(), owner=alice.access_key, created=1.0)
        await index.create_bucket(bucket)
        assert await index.delete_user(alice.name) == alice
        assert await index.delete_user(alice.name) is None
        assert await index.delete_user(f"{tag}-never") is None
        assert [u for u in await index.list_users() if u.name.startswith(tag)] == [bob]
        assert await index.get_bucket(bucket.name) == bucket  # their buckets stay
        again = make_user(alice.name)
        await index.create_user(again)  # the name is free again
        assert [u for u in await index.list_users() if u.name.startswith(tag)] == [again, bob]

    # ---- leases

    async def test_lease_free_held_renewed(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        assert await index.acquire_lease(name, "gw-a", 30.0) is True
        assert await index.acquire_lease(name, "gw-b", 30.0) is False
        assert await index.acquire_lease(name, "gw-a", 30.0) is True  # renewal
        assert await index.acquire_lease(name, "gw-b", 30.0) is False
        assert await index.acquire_lease(f"{name}-other", "gw-b", 30.0) is True  # leases are independent

    async def test_lease_expires(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        start = time.monotonic()
        assert await index.acquire_lease(name, "gw-a", 0.2) is True
        assert await index.acquire_lease(name, "gw-b", 0.2) is False or time.monotonic() - start >= 0.2
        deadline = start + 10.0
        while not await index.acquire_lease(name, "gw-b", 30.0):
            assert time.monotonic() < deadline, "the lease never expired"
            await asyncio.sleep(0.05)
        assert time.monotonic() - start >= 0.15  # not before (allowing for clock granularity)
        assert await index.acquire_lease(name, "gw-a", 30.0) is False  # b holds it now

    async def test_renewing_a_lease_extends_it(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        assert await index.acquire_lease(name, "gw-a", 0.2) is True
        assert await index.acquire_lease(name, "gw-a", 30.0) is True
        await asyncio.sleep(0.4)  # past the first term
        assert await index.acquire_lease(name, "gw-b", 30.0) is False

    async def test_release_lease(self, index: Index) -> None:
        name = f"lease-{new_id()[:8]}"
        assert await index.release_lease(name, "gw-a") is False  # never taken
        assert await index.acquire_lease(name, "gw-a", 30.0) is True
        assert await index.release_lease(name, "gw-b") is False  # not b's to give up
        assert await index.acquire_lease(name, "gw-b", 30.0) is False
        assert await index.release_lease(name, "gw-a") is True
        assert await index.release_lease(name, "gw-a") is False  # already given up
        assert await index.acquire_lease(name, "gw-b", 30.0) is True  # free at once, long before 30 s
        assert await index.release_lease(name, "gw-a") is False
        assert await index.acquire_lease(name, "gw-a", 30.0) is False  # b's lease stands

    async def test_racing_lease_acquisitions_have_one_winner(self, index: Index) -> None:
        for _ in range(3):
            name = f"lease-{new_id()[:8]}"
            won = await asyncio.gather(*(index.acquire_lease(name, f"gw-{i}", 30.0) for i in range(5)))
            assert sum(won) == 1, won
            winner = f"gw-{won.index(True)}"
            assert await index.acquire_lease(name, winner, 30.0) is True
            assert await index.acquire_lease(name, f"{winner}-x", 30.0) is False
