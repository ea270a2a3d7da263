"""What object lock allows (docs/object-lock.md), decided the same way by every Index implementation: whether a
version may be deleted for good, and how its retention and legal hold may change."""

from __future__ import annotations

from collections.abc import Callable

from metadata.index import ObjectLocked
from metadata.records import LOCK_MODES, LockGuard, ObjectManifest, retained


def check_rule(mode: str, days: int, years: int) -> None:
    """A bucket's default retention: a mode with a positive number of days or years, or none at all."""
    if not mode and not days and not years:
        return
    if mode not in LOCK_MODES or (days > 0) == (years > 0) or days < 0 or years < 0:
        raise ValueError("a default retention is a mode with days or years (one of them, positive)")


def check_delete(man: ObjectManifest, guard: LockGuard | None) -> None:
    """Raise ObjectLocked if `man` may not be removed for good now (no guard: the caller checks nothing)."""
    if guard is None:
        return
    if man.legal_hold == "ON":
        raise ObjectLocked("the version is under a legal hold")
    if retained(man, guard.now) and not (man.lock_mode == "GOVERNANCE" and guard.bypass_governance):
        raise ObjectLocked(f"the version is under {man.lock_mode} retention")


def retention_change(mode: str, until: float, guard: LockGuard) -> Callable[[ObjectManifest], bool]:
    """Index.set_retention's rewrite: a version's retention set to `mode` until `until` ("" and 0 take it off),
    if the lock allows it. While retention holds, COMPLIANCE may only be extended, and GOVERNANCE may be
    extended or made COMPLIANCE but shortened or taken off only with a bypass: ObjectLocked otherwise.
    A delete marker has no lock (False: nothing changes). Raises ValueError for a bad mode at once."""
    if mode not in ("", *LOCK_MODES) or (mode and until <= 0):
        raise ValueError(f"retention mode must be one of {', '.join(LOCK_MODES)} with a date, not {mode!r}")

    def change(man: ObjectManifest) -> bool:
        if man.delete_marker:
            return False
        if retained(man, guard.now):
            weaker = not mode or until < man.lock_until
            if man.lock_mode == "COMPLIANCE" and (weaker or mode != "COMPLIANCE"):
                raise ObjectLocked("COMPLIANCE retention can only be extended")
            if man.lock_mode == "GOVERNANCE" and weaker and not guard.bypass_governance:
                raise ObjectLocked("GOVERNANCE retention can be shortened or removed only with a bypass")
        man.lock_mode, man.lock_until = mode, until if mode else 0.0
        return True

    return change


def legal_hold_change(on: bool) -> Callable[[ObjectManifest], bool]:
    """Index.set_legal_hold's rewrite (a delete marker has none: False)."""

    def change(man: ObjectManifest) -> bool:
        if man.delete_marker:
            return False
        man.legal_hold = "ON" if on else "OFF"
        return True

    return change


class LockRewrites:
    """Index.set_retention and set_legal_hold for a store that rewrites a version in place with `_rewrite`, as
    its set_object_tags and update_part do (LocalIndex, ReplicatedIndex)."""

    async def _rewrite(self, bucket: str, key: str, version_id: str, change: Callable[[ObjectManifest], bool]) -> bool:
        raise NotImplementedError

    async def set_retention(
        self, bucket: str, key: str, version_id: str, mode: str, until: float, guard: LockGuard
    ) -> bool:
        return await self._rewrite(bucket, key, version_id, retention_change(mode, until, guard))

    async def set_legal_hold(self, bucket: str, key: str, version_id: str, on: bool) -> bool:
        return await self._rewrite(bucket, key, version_id, legal_hold_change(on))
