"""A cluster gateway's drives: the storage nodes registered in the index, and which are alive.

Nodes heartbeat into the index, and each beat stamps the node's record anew. A gateway never compares
that stamp with its own clock (clocks of machines differ: a gateway ahead counted every node down, one
behind counted a dead node live): it notes, on its own monotonic clock, when it saw each node's stamp
change, and a node silent for longer than the grace is taken as down: placement sends its fragments
nowhere (they miss their write and are recorded for repair) and reads go to parity without waiting.
A node first seen counts as heard from then, so one already dead is seen down a grace later.
"""

from __future__ import annotations

import time
from dataclasses import replace

import aiohttp

from cluster.workers import Periodic
from gateway.objects.placement import NodeSlot, is_full
from metadata.index import Index
from metadata.records import NodeRecord
from storage_node.client import RemoteDrive
from storage_node.drive import Drive

REFRESH_EVERY = 1.0  # seconds between membership reads
LIVENESS_GRACE = 6.0  # seconds without a heartbeat before a node counts as down


class ClusterDrives:
    def __init__(self, index: Index, secret: bytes, grace: float = LIVENESS_GRACE, reserve: int = 0) -> None:
        self._index = index
        self.reserve = reserve  # bytes a drive keeps free: below it, it takes no new fragments
        self._secret = secret
        self._grace = grace
        self._session: aiohttp.ClientSession | None = None
        self._remotes: dict[tuple[str, str], RemoteDrive] = {}  # (address, drive id) -> client
        self._slots: list[NodeSlot] = []
        self._all: list[NodeSlot] = []
        self._leaving: frozenset[str] = frozenset()
        self._silent: dict[str, float] = {}
        self.nodes: list[NodeRecord] = []  # as last read from the index
        self._live: dict[str, RemoteDrive] = {}
        self._refreshed = 0.0  # monotonic time of the last membership read that worked
        # node id -> (its record's heartbeat stamp, monotonic time this gateway first saw that stamp)
        self._heard: dict[str, tuple[tuple[float, float], float]] = {}
        # A refresh that fails keeps the last view: the index may be briefly unreachable.
        self.refresher = Periodic("membership", self.refresh, REFRESH_EVERY, what="membership refresh")

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=64))
        await self.refresh()
        self.refresher.start()

    async def close(self) -> None:
        await self.refresher.stop()
        if self._session:
            await self._session.close()

    async def refresh(self) -> None:
        nodes = await self._index.list_nodes()
        now = time.monotonic()
        heard = {}
        for node in nodes:
            beat = (node.started, node.last_seen)  # changes at every heartbeat and every restart
            before = self._heard.get(node.node_id)
            heard[node.node_id] = before if before is not None and before[0] == beat else (beat, now)
        self._heard = heard
        silence = {n.node_id: now - heard[n.node_id][1] for n in nodes}
        every, usable, live = [], [], {}
        for node in nodes:
            alive = silence[node.node_id] <= self._grace
            every.append(NodeSlot(node.node_id, node.zone, tuple(d.drive_id for d in node.drives), alive))
            # A drive its node reports offline (wiped and not yet adopted, missing) takes and serves nothing.
            up = tuple(d.drive_id for d in node.drives if not d.state)
            # Placement gets the drives with room; a node whose every drive is full is placed last, as full.
            room = tuple(
                d.drive_id for d in node.drives if not d.state and not is_full(d.capacity, d.free, self.reserve)
            )
            if room:
                usable.append(NodeSlot(node.node_id, node.zone, room, alive))
            else:
                usable.append(
                    NodeSlot(node.node_id, node.zone, up, alive, full=True) if up else replace(every[-1], live=False)
                )
            if alive:
                live.update({d: self._remote(node, d) for d in up})
        state = {n.node_id: n.state for n in nodes}
        self._all, self._live, self.nodes = every, live, nodes
        # Draining and retired nodes take no new fragments; their drives still serve reads.
        self._slots = [s for s in usable if state[s.node_id] == "active"]
        self._leaving = frozenset(n for n, st in state.items() if st == "draining")
        self._silent = {n: t for n, t in silence.items() if t > self._grace}
        self._refreshed = now

    def _remote(self, node: NodeRecord, drive_id: str) -> RemoteDrive:
        key = (node.address, drive_id)
        if key not in self._remotes:
            self._remotes[key] = RemoteDrive(node.address, drive_id, self._secret, session=self._session)
        return self._remotes[key]

    # -- DriveSet
    def slots(self) -> list[NodeSlot]:
        return self._slots

    def all_slots(self) -> list[NodeSlot]:
        return self._all

    def leaving(self) -> frozenset[str]:
        return self._leaving

    def silent_for(self) -> dict[str, float]:
        return self._silent

    def drive(self, drive_id: str) -> Drive | None:
        return self._live.get(drive_id)

    def adopted(self) -> dict[str, float]:
        return {d.drive_id: d.adopted for n in self.nodes for d in n.drives if d.adopted}

    def live_nodes(self) -> int:
        return sum(s.live for s in self._slots)

    def problem(self, needed: int) -> str | None:
        """Why this gateway cannot serve now (None when it can): readiness, deep as it should be."""
        if time.monotonic() - self._refreshed > 5 * REFRESH_EVERY:
            return "the metadata service has not answered for a while"
        if self.live_nodes() < needed:
            return f"{self.live_nodes()} storage node(s) up, {needed} needed to read"
        return None
