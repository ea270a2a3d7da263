"""The drives a gateway writes to and reads from, as the object layer sees them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.objects.placement import NodeSlot
from storage_node.drive import Drive


class DriveSet(Protocol):
    def slots(self) -> list[NodeSlot]:
        """The nodes that take new fragments (active ones), with their drives and liveness: for placement."""
        ...

    def all_slots(self) -> list[NodeSlot]:
        """Every registered node, also draining and retired ones: to say where a fragment lives."""
        ...

    def leaving(self) -> frozenset[str]:
        """Nodes being drained: their fragments are to move elsewhere."""
        ...

    def silent_for(self) -> dict[str, float]:
        """Seconds since each down node was last heard from (live nodes are not listed)."""
        ...

    def drive(self, drive_id: str) -> Drive | None:
        """The drive to talk to, or None when it is unknown or its node is believed down."""
        ...


class LocalDrives:
    """The embedded server's drives: each one a node of its own, always there."""

    def __init__(self, drives: Sequence[Drive]) -> None:
        self._drives = {d.drive_id: d for d in drives}
        self._slots = [NodeSlot(d.drive_id, "", (d.drive_id,)) for d in drives]

    def slots(self) -> list[NodeSlot]:
        return self._slots

    def all_slots(self) -> list[NodeSlot]:
        return self._slots

    def leaving(self) -> frozenset[str]:
        return frozenset()

    def silent_for(self) -> dict[str, float]:
        return {}

    def drive(self, drive_id: str) -> Drive | None:
        return self._drives.get(drive_id)
