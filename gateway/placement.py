"""Where an object version's fragments go: rendezvous hashing over the drives."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def place(data_id: str, drive_ids: Sequence[str], width: int) -> list[str]:
    """Pick `width` distinct drives for a data version; fragment i goes to the i-th.

    Rendezvous (highest random weight) hashing spreads versions evenly and moves few
    fragments when drives come or go, with no shared state between gateways.
    """
    if len(drive_ids) < width:
        raise ValueError(f"need {width} drives, have {len(drive_ids)}")

    def weight(drive_id: str) -> bytes:
        return hashlib.blake2b(f"{data_id}/{drive_id}".encode(), digest_size=8).digest()

    return sorted(drive_ids, key=weight, reverse=True)[:width]
