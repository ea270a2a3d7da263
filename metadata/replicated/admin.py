"""ReplicatedIndex's cluster housekeeping: membership and node states, the repair queue, users and leases.

Tables (metadata/replica/store.py):
    nodes        node_id -> NodeRecord as the node last reported it (its state there is not read)
    node_states  node_id -> state, utf-8 (records.NODE_STATES; none or deleted: "active")
    drives       drive_id -> node_id
    repairs      keys.repair_key(...) -> RepairEntry   (key order is repair order)
    users        name -> UserRecord
    leases       name -> Lease

Membership, node states and the repair queue are a quorum read then a quorum write, without a lock;
creating or deleting a user and taking a lease are conditional, under the key's majority lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
import time
from collections.abc import Sequence

from metadata import keys
from metadata.index import DriveClaimed, NoSuchNode, UserExists
from metadata.records import (
    NODE_STATES,
    USER_CHANGEABLE,
    Lease,
    NodeRecord,
    RepairEntry,
    UserRecord,
    apply_changes,
    decode,
    encode,
)
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from metadata.replicated.merged_scan import Merged
from metadata.replicated.quorum import SCAN_BATCH, Coordinator, tomb


def _state(e: Entry | None) -> str:
    return "active" if e is None or e.tombstone else e.value.decode()


def _position(e: RepairEntry) -> bytes:
    try:
        return keys.repair_key(e.surviving, e.data_id, e.part, e.index)
    except struct.error:  # a part or fragment index that does not fit its field
        raise ValueError(f"repair entry out of range: part {e.part}, index {e.index}") from None


class ReplicatedAdmin(Coordinator):
    # -- cluster membership (see docs/consistency.md)

    async def upsert_node(self, rec: NodeRecord) -> NodeRecord:
        claimed = [d.drive_id for d in rec.drives]
        if len(set(claimed)) != len(claimed):
            raise ValueError(f"node {rec.node_id} lists a drive twice")
        node = rec.node_id.encode()
        reads = [("nodes", node), ("node_states", node)] + [("drives", d.encode()) for d in claimed]
        previous_e, state_e, *owners = await self._read_many(reads)
        for drive_id, owner in zip(claimed, owners, strict=True):
            if owner is not None and not owner.tombstone and owner.value != node:
                raise DriveClaimed(drive_id, owner.value.decode())
        previous = None if previous_e is None or previous_e.tombstone else decode(NodeRecord, previous_e.value)
        ts = self._hlc.now()
        writes = []
        if previous is None:
            # A node registering (again) starts active, even if a set_node_state racing its removal left a state.
            writes.append(Write("node_states", node, tomb(ts)))
            state_e = None
        stored = dataclasses.replace(rec, last_seen=time.time(), state=_state(state_e))
        writes.append(Write("nodes", node, Entry(ts, False, encode(stored))))
        writes += [Write("drives", d.encode(), Entry(ts, False, node)) for d in claimed]
        writes += [
            Write("drives", d.drive_id.encode(), tomb(ts))
            for d in (previous.drives if previous else [])
            if d.drive_id not in claimed
        ]
        await self._write(writes)
        return decode(NodeRecord, encode(stored))

    async def list_nodes(self) -> list[NodeRecord]:
        nodes, state_list = await asyncio.gather(self._live("nodes", b""), self._live("node_states", b""))
        states = dict(state_list)
        out = []
        for k, v in nodes:
            rec = decode(NodeRecord, v)
            rec.state = states[k].decode() if k in states else "active"
            out.append(rec)
        return out

    async def remove_node(self, node_id: str) -> bool:
        node = node_id.encode()
        (e,) = await self._read("nodes", [node])
        if e is None or e.tombstone:
            return False
        rec = decode(NodeRecord, e.value)
        owners = await self._read("drives", [d.drive_id.encode() for d in rec.drives])
        ts = self._hlc.now()
        writes = [Write("nodes", node, tomb(ts)), Write("node_states", node, tomb(ts))]
        writes += [
            Write("drives", d.drive_id.encode(), tomb(ts))
            for d, o in zip(rec.drives, owners, strict=True)
            if o is not None and not o.tombstone and o.value == node
        ]
        await self._write(writes)
        return True

    async def set_node_state(self, node_id: str, state: str) -> NodeRecord:
        if state not in NODE_STATES:
            raise ValueError(f"node state must be one of {', '.join(NODE_STATES)}, not {state!r}")
        node = node_id.encode()
        (e,) = await self._read("nodes", [node])
        if e is None or e.tombstone:
            raise NoSuchNode(node_id)
        # A table of its own: heartbeats rewrite the node record without a lock and would race a state kept there.
        await self._write([Write("node_states", node, Entry(self._hlc.now(), False, state.encode()))])
        return dataclasses.replace(decode(NodeRecord, e.value), state=state)

    # -- the repair queue

    async def queue_repairs(self, entries: Sequence[RepairEntry]) -> None:
        ts = self._hlc.now()
        batch = {_position(e): encode(e) for e in entries}  # the last of one position wins, as in one transaction
        await self._write([Write("repairs", k, Entry(ts, False, v)) for k, v in batch.items()])

    async def list_repairs(self, after: RepairEntry | None = None, limit: int = 1000) -> list[RepairEntry]:
        if limit <= 0:
            return []
        start = None if after is None else _position(after)

        async def use(merged: Merged) -> list[tuple[bytes, bytes]]:
            if start is not None:
                merged.seek(start, False)
            return await merged.live(limit)

        got = await self._scan("repairs", b"", use, batch=min(SCAN_BATCH, limit + 1))
        return [decode(RepairEntry, v) for _, v in got]

    async def remove_repairs(self, entries: Sequence[RepairEntry]) -> None:
        ts = self._hlc.now()
        # Blind tombstones: one for an absent entry costs a little space until tombstone collection.
        await self._write([Write("repairs", k, tomb(ts)) for k in {_position(e) for e in entries}])

    async def repair_backlog(self) -> int:
        # A merged scan of the whole queue: a replica's own count would include tombstones and miss writes.
        async def count(merged: Merged) -> int:
            n = 0
            while (item := await merged.next()) is not None:
                n += not item[1].tombstone
            return n

        return await self._scan("repairs", b"", count)

    # -- users

    async def create_user(self, rec: UserRecord) -> None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], None]:
            if current is not None and not current.tombstone:
                raise UserExists(rec.name)
            return [Write("users", rec.name.encode(), Entry(ts, False, encode(rec)))], None

        await self._locked("users", rec.name.encode(), decide)

    async def list_users(self) -> list[UserRecord]:
        return [decode(UserRecord, v) for _, v in await self._live("users", b"")]

    async def update_user(self, name: str, changes: dict[str, str | None]) -> UserRecord | None:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], UserRecord | None]:
            if current is None or current.tombstone:
                return [], None
            rec = apply_changes(decode(UserRecord, current.value), changes, USER_CHANGEABLE)
            return [Write("users", name.encode(), Entry(ts, False, encode(rec)))], rec

        return await self._locked("users", name.encode(), decide)

    async def delete_user(self, name: str) -> UserRecord | None:
        # Locked too, so a delete that read one user cannot tombstone another created under the name since.
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], UserRecord | None]:
            if current is None or current.tombstone:
                return [], None
            return [Write("users", name.encode(), tomb(ts))], decode(UserRecord, current.value)

        return await self._locked("users", name.encode(), decide)

    # -- leases

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        if math.isnan(ttl) or ttl < 0:
            raise ValueError(f"a lease lasts zero seconds or more, not {ttl}")

        # Judged and stamped by this coordinator's clock: gateways' clocks must agree to well within a lease.
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], bool]:
            now = time.time()
            if current is not None and not current.tombstone:
                lease = decode(Lease, current.value)
                if lease.holder != holder and lease.expires > now:
                    return [], False
            return [Write("leases", name.encode(), Entry(ts, False, encode(Lease(name, holder, now + ttl))))], True

        return await self._locked("leases", name.encode(), decide)

    async def release_lease(self, name: str, holder: str) -> bool:
        async def decide(current: Entry | None, ts: int) -> tuple[list[Write], bool]:
            if current is None or current.tombstone:
                return [], False
            lease = decode(Lease, current.value)
            if lease.holder != holder or lease.expires <= time.time():  # an expired lease is held by no one
                return [], False
            return [Write("leases", name.encode(), tomb(ts))], True

        return await self._locked("leases", name.encode(), decide)
