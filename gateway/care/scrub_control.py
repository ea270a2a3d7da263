"""Driving the storage nodes' scrubbers from a gateway, over the nodes' HTTP API. (The embedded server
hands its Maintenance its own in-process scrubber: cli/server.py.)"""

from __future__ import annotations

import asyncio
import logging

from gateway.care.maintenance import ScrubProgress
from gateway.objects.membership import ClusterDrives
from storage_node.client import NodeClient, NodeError

log = logging.getLogger(__name__)


class NodeScrubs:
    """Every live storage node's scrubber, over the nodes' HTTP API. A node that does not answer is
    left out of the answer (it is down; its fragments are the repairer's business)."""

    def __init__(self, drives: ClusterDrives, secret: bytes) -> None:
        self._drives = drives
        self._secret = secret

    def _clients(self) -> list[NodeClient]:
        live = {s.node_id for s in self._drives.all_slots() if s.live}
        return [NodeClient(n.address, self._secret) for n in self._drives.nodes if n.node_id in live]

    async def _each(self, start: bool) -> list[ScrubProgress]:
        clients = self._clients()

        async def one(c: NodeClient) -> ScrubProgress | None:
            try:
                return await (c.start_scrub() if start else c.scrub_status())
            except (NodeError, OSError, TimeoutError) as exc:
                log.warning("scrub: %s did not answer: %r", c.address, exc)
                return None
            finally:
                await c.close()

        return [s for s in await asyncio.gather(*(one(c) for c in clients)) if s is not None]

    async def start(self) -> list[ScrubProgress]:
        return await self._each(True)

    async def status(self) -> list[ScrubProgress]:
        return await self._each(False)
