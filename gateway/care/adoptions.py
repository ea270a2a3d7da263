"""Drives adopted while running (found empty and formatted back into the set): rebuilding until refilled."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Adoptions:
    """What this gateway noticed of the drive set's adoptions. A drive is refilled once a scan that began
    after its adoption was noticed has completed (it queued every fragment the drive lacks) and no repair
    is queued for it any more. Times are this gateway's: a node's clock is never compared with ours."""

    # drive id -> (its adoption time as its owner reports it, when this gateway noticed that adoption)
    noticed: dict[str, tuple[float, float]] = field(default_factory=dict)
    last_scan: float = 0.0  # when the latest completed scan began
    refilled: set[str] = field(default_factory=set)  # found refilled since their latest adoption

    def notice(self, adopted: dict[str, float]) -> bool:
        """Take in the drive set's adoptions; True when one is new (a scan should look for what it lacks)."""
        now, new = time.time(), False
        for drive_id, when in adopted.items():
            seen = self.noticed.get(drive_id)
            if seen is None or seen[0] != when:
                self.noticed[drive_id] = (when, now)
                self.refilled.discard(drive_id)
                new = True
        return new

    def scanned(self, started: float) -> None:
        self.last_scan = max(self.last_scan, started)

    def unsettled(self, adopted: dict[str, float]) -> dict[str, float]:
        """The adoptions not yet found refilled (only these need the repair queue looked at)."""
        return {d: t for d, t in adopted.items() if d not in self.refilled or self.noticed[d][0] != t}

    def rebuilding(self, adopted: dict[str, float], queued: set[str]) -> set[str]:
        """The adopted drives not refilled yet; `queued`: drives that repairs are queued for."""
        out = set()
        for drive_id, when in adopted.items():
            seen = self.noticed.get(drive_id)
            if seen is None or seen[0] != when or seen[1] > self.last_scan or drive_id in queued:
                out.add(drive_id)
            else:
                self.refilled.add(drive_id)
        return out
