"""What object lock allows (docs/object-lock.md), decided the same way by every Index implementation: whether a
version may be deleted for good, and how its retention and legal hold may change."""

from __future__ import annotations

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


def with_retention(man: ObjectManifest, mode: str, until: float, guard: LockGuard) -> ObjectManifest:
    """`man` with its retention set to `mode` until `until` ("" and 0 take it off), if the lock allows it:
    while retention holds, COMPLIANCE may only be extended, and GOVERNANCE may be extended or made COMPLIANCE
    but shortened or taken off only with a bypass. Raises ObjectLocked, ValueError for a bad mode."""
    if mode not in ("", *LOCK_MODES) or (mode and until <= 0):
        raise ValueError(f"retention mode must be one of {', '.join(LOCK_MODES)} with a date, not {mode!r}")
    if retained(man, guard.now):
        weaker = not mode or until < man.lock_until
        if man.lock_mode == "COMPLIANCE" and (weaker or mode != "COMPLIANCE"):
            raise ObjectLocked("COMPLIANCE retention can only be extended")
        if man.lock_mode == "GOVERNANCE" and weaker and not guard.bypass_governance:
            raise ObjectLocked("GOVERNANCE retention can be shortened or removed only with a bypass")
    man.lock_mode, man.lock_until = mode, until if mode else 0.0
    return man


def with_legal_hold(man: ObjectManifest, on: bool) -> ObjectManifest:
    man.legal_hold = "ON" if on else "OFF"
    return man
