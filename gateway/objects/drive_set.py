"""The drives a gateway writes to and reads from, as the object layer sees them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from gateway.objects.placement import NodeSlot, is_full
from storage_node.drive import OFFLINE, Drive, DriveHealth


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

    def adopted(self) -> dict[str, float]:
        """Drives found empty and formatted back into the set while running: drive id -> when (epoch s)."""
        ...


def health_of(drive: Drive | None) -> DriveHealth | None:
    """A local drive's health as its drive watch last saw it (None for drives that have none)."""
    health = getattr(drive, "health", None)
    return health if isinstance(health, DriveHealth) else None


class LocalDrives:
    """The embedded server's drives: each one a node of its own. One its drive watch finds offline
    (wiped and not yet adopted, missing, foreign) is down: it takes no fragments and serves none."""

    def __init__(self, drives: Sequence[Drive], reserve: int = 0) -> None:
        self._drives = {d.drive_id: d for d in drives}
        self._reserve = reserve  # bytes each drive keeps free (placement.is_full)

    def _up(self, drive: Drive) -> bool:
        health = health_of(drive)
        return health is None or health.state != OFFLINE

    def _full(self, drive: Drive) -> bool:
        root = getattr(drive, "root", None)
        if not self._reserve or root is None:
            return False
        try:
            st = os.statvfs(root)
        except OSError:
            return False  # gone: the drive watch takes it offline
        return is_full(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, self._reserve)

    def slots(self) -> list[NodeSlot]:
        return [NodeSlot(i, "", (i,), self._up(d), full=self._full(d)) for i, d in self._drives.items()]

    def all_slots(self) -> list[NodeSlot]:
        return self.slots()

    def leaving(self) -> frozenset[str]:
        return frozenset()

    def silent_for(self) -> dict[str, float]:
        return {}

    def drive(self, drive_id: str) -> Drive | None:
        drive = self._drives.get(drive_id)
        return drive if drive is not None and self._up(drive) else None

    def known(self, drive_id: str) -> Drive | None:
        """The drive, offline or not: to say where it is and what state it is in."""
        return self._drives.get(drive_id)

    def adopted(self) -> dict[str, float]:
        return {i: h.adopted for i, d in self._drives.items() if (h := health_of(d)) is not None and h.adopted}
