"""Object lock as S3 requests carry it: the x-amz-object-lock-* headers, the lock configuration, retention and
legal hold documents, their dates, and the integrity header such requests need. No storage."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.s3 import checksums
from gateway.s3.errors import S3Error
from gateway.s3.numbers import decimal
from gateway.s3.xml import child_text, parse

MODES = ("GOVERNANCE", "COMPLIANCE")
HOLDS = ("ON", "OFF")
MAX_DAYS = 36500  # a default retention of at most 100 years, as S3 allows
MAX_YEARS = 100
MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"
_MAX_DATE = 64  # characters: an ISO 8601 date with fractions and an offset is about 30
_INTEGRITY = (
    "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters"
)
LOCKED = "Access Denied because object protected by object lock."
_NO_LOCK = "Bucket is missing Object Lock Configuration"


@dataclass(slots=True)
class LockRequest:
    """What a write asks for: a retention (mode and date, seconds since the epoch) and a legal hold."""

    mode: str = ""
    until: float = 0.0
    legal_hold: str = ""  # "ON", "OFF" or "" (not asked)

    def __bool__(self) -> bool:
        return bool(self.mode or self.legal_hold)


def parse_date(text: str, name: str) -> float:
    """An ISO 8601 date and time (RFC 3339, as SDKs send it; no offset means UTC) as seconds since the epoch."""
    when = None
    if len(text) <= _MAX_DATE and text.isascii():
        try:
            when = datetime.datetime.fromisoformat(text.strip())
        except ValueError:
            when = None
    if when is None:
        raise S3Error("InvalidArgument", "The retain until date must be provided in ISO 8601 format", ArgumentName=name)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def check_future(until: float, now: float) -> None:
    if until <= now:
        raise S3Error("InvalidArgument", "The retain until date must be in the future!")


def lock_headers(headers: Mapping[str, str]) -> LockRequest:
    """The x-amz-object-lock-* headers of a PUT, copy or multipart create, checked."""
    mode, date, hold = headers.get(MODE_HEADER), headers.get(UNTIL_HEADER), headers.get(HOLD_HEADER)
    asked = LockRequest()
    if (mode is None) != (date is None):
        raise S3Error("InvalidArgument", f"{UNTIL_HEADER} and {MODE_HEADER} must both be supplied")
    if mode is not None and date is not None:
        if mode not in MODES:
            raise S3Error("InvalidArgument", "Unknown wormMode directive.", ArgumentName=MODE_HEADER)
        asked.mode, asked.until = mode, parse_date(date, UNTIL_HEADER)
    if hold is not None:
        if hold not in HOLDS:
            raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'", ArgumentName=HOLD_HEADER)
        asked.legal_hold = hold
    return asked


def require_lock(enabled: bool) -> None:
    """Object lock requests to a bucket without it answer InvalidRequest, as S3 does."""
    if not enabled:
        raise S3Error("InvalidRequest", _NO_LOCK)


def require_integrity(headers: Mapping[str, str]) -> None:
    """Lock requests must carry Content-MD5 or a checksum (a header, or one announced for the trailer)."""
    if "Content-MD5" in headers or "x-amz-sdk-checksum-algorithm" in headers:
        return
    if checksums.checksum_headers(headers.keys()) or headers.get("x-amz-trailer", "").startswith("x-amz-checksum-"):
        return
    raise S3Error("InvalidRequest", _INTEGRITY)


def bypass_asked(headers: Mapping[str, str]) -> bool:
    return headers.get(BYPASS_HEADER, "").strip().lower() == "true"


def parse_configuration(body: bytes) -> tuple[str, int, int]:
    """A PutObjectLockConfiguration body: the default retention (mode, days, years); ("", 0, 0) for none."""
    doc = parse(body, "ObjectLockConfiguration")
    if child_text(doc, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML")
    rule = doc.find("Rule")
    if rule is None:
        return "", 0, 0
    default = rule.find("DefaultRetention")
    if default is None:
        raise S3Error("MalformedXML")
    mode, days, years = child_text(default, "Mode"), child_text(default, "Days"), child_text(default, "Years")
    if mode not in MODES or (days is None) == (years is None):
        raise S3Error("MalformedXML")
    high, raw = (MAX_DAYS, days) if days is not None else (MAX_YEARS, years)
    digits = (raw or "").strip()
    if decimal(digits.removeprefix("-")) is None:  # not an integer: the schema's error
        raise S3Error("MalformedXML")
    period = decimal(digits, 1, high)
    if period is None:
        raise S3Error("InvalidArgument", "Default retention period must be a positive integer value.")
    return (mode, period, 0) if days is not None else (mode, 0, period)


def parse_retention(body: bytes) -> tuple[str, float]:
    """A PutObjectRetention body: (mode, date); an empty <Retention/> takes the retention off ("", 0)."""
    doc = parse(body, "Retention")
    mode, date = child_text(doc, "Mode"), child_text(doc, "RetainUntilDate")
    if mode is None and date is None:
        return "", 0.0
    if mode not in MODES or date is None:
        raise S3Error("MalformedXML")
    return mode, parse_date(date, "RetainUntilDate")


def parse_legal_hold(body: bytes) -> bool:
    status = child_text(parse(body, "LegalHold"), "Status")
    if status not in HOLDS:
        raise S3Error("MalformedXML")
    return status == "ON"
