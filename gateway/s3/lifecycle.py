"""Bucket lifecycle configurations (docs/lifecycle.md): the XML S3 defines, its validation, the rules as kept
in the bucket record (JSON), and what a rule says about one version: whether it matches, and when it expires."""

from __future__ import annotations

import functools
import json
import math
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.s3.errors import S3Error
from gateway.s3.xml import child_text, document, http_date, parse

DAY = 86400.0  # seconds in a lifecycle day, unless shortened for tests (--lifecycle-day)
MAX_RULES = 1000
MAX_ID = 255
_ACTIONS = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
_TRANSITIONS = ("Transition", "NoncurrentVersionTransition")
_RULE_CHILDREN = frozenset(("ID", "Status", "Filter", "Prefix", *_ACTIONS, *_TRANSITIONS))


@dataclass(slots=True)
class Rule:
    id: str
    enabled: bool
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    size_gt: int | None = None  # ObjectSizeGreaterThan
    size_lt: int | None = None  # ObjectSizeLessThan
    legacy_prefix: bool = False  # the rule's Prefix was the old top-level one (answered back the same way)
    days: int | None = None  # Expiration of current versions: days after creation, or
    date: float | None = None  # on a date (midnight UTC)
    expired_marker: bool = False  # ExpiredObjectDeleteMarker
    noncurrent_days: int | None = None
    newer_noncurrent: int | None = None  # NewerNoncurrentVersions kept whatever their age
    abort_days: int | None = None  # AbortIncompleteMultipartUpload DaysAfterInitiation

    def matches(self, key: str, size: int = 0, tags: dict[str, str] | None = None, sized: bool = True) -> bool:
        """Whether the rule's filter takes this object (`sized` off: a delete marker or upload, which has no size)."""
        if not self.enabled or not key.startswith(self.prefix):
            return False
        if self.tags and any((tags or {}).get(k) != v for k, v in self.tags.items()):
            return False
        if sized and self.size_gt is not None and not size > self.size_gt:
            return False
        return not (sized and self.size_lt is not None and not size < self.size_lt)


def _bad(message: str) -> S3Error:
    return S3Error("InvalidArgument", message)


def _positive(el: ET.Element, tag: str, action: str, zero_ok: bool = False) -> int | None:
    text = child_text(el, tag)
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9 or (int(text) == 0 and not zero_ok):
        kind = "a non-negative" if zero_ok else "a positive"
        raise _bad(f"'{tag}' for {action} action must be {kind} integer")
    return int(text)


def _size(el: ET.Element, tag: str) -> int | None:
    text = child_text(el, tag)
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _bad(f"{tag} must be a non-negative integer")
    return int(text)


def _tag(el: ET.Element) -> tuple[str, str]:
    key, value = child_text(el, "Key"), child_text(el, "Value")
    if key is None or value is None:
        raise S3Error("MalformedXML")
    if not key or len(key) > 128 or len(value) > 256:
        raise S3Error("InvalidTag", "The TagKey you have provided is invalid")
    return key, value


def _filter(el: ET.Element, rule: Rule) -> None:
    """Filter: empty, or exactly one of Prefix, Tag, ObjectSize*, And (And: any of them, tags many)."""
    children = [c for c in el if isinstance(c.tag, str)]
    if len(children) > 1:
        raise S3Error("MalformedXML")
    if not children:
        return
    only = children[0]
    if only.tag == "And":
        parts = [c for c in only if isinstance(c.tag, str)]
        if any(c.tag not in ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan") for c in parts):
            raise S3Error("MalformedXML")
        holder = only
    elif only.tag in ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        parts, holder = [only], el
    else:
        raise S3Error("MalformedXML")
    for c in parts:
        if c.tag == "Tag":
            k, v = _tag(c)
            if k in rule.tags:
                raise _bad("Duplicate Tag Keys are not allowed.")
            rule.tags[k] = v
    rule.prefix = child_text(holder, "Prefix") or ""
    rule.size_gt, rule.size_lt = _size(holder, "ObjectSizeGreaterThan"), _size(holder, "ObjectSizeLessThan")
    if rule.size_gt is not None and rule.size_lt is not None and rule.size_gt >= rule.size_lt:
        raise _bad("ObjectSizeGreaterThan must be less than ObjectSizeLessThan")


def _date(text: str) -> float:
    """An ISO 8601 date, or date and time, that must be midnight UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad("Invalid date provided for Expiration action") from None
    ts = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if ts % 86400:
        raise _bad("'Date' must be at midnight GMT")
    return ts


def _expiration(el: ET.Element, rule: Rule) -> None:
    rule.days = _positive(el, "Days", "Expiration")
    date = child_text(el, "Date")
    rule.date = _date(date) if date is not None else None
    marker = child_text(el, "ExpiredObjectDeleteMarker")
    if marker is not None:
        if marker.strip() not in ("true", "false"):
            raise S3Error("MalformedXML")
        rule.expired_marker = marker.strip() == "true"
    given = (rule.days is not None) + (rule.date is not None) + (marker is not None)
    if given == 0:
        raise S3Error("MalformedXML")
    if marker is not None and given > 1:
        raise _bad("ExpiredObjectDeleteMarker cannot be specified with expiration days or date.")
    if given > 1:
        raise S3Error("MalformedXML")
    if rule.expired_marker and rule.tags:
        raise _bad("ExpiredObjectDeleteMarker cannot be specified with tags.")


def _rule(el: ET.Element) -> Rule:
    if any(isinstance(c.tag, str) and c.tag not in _RULE_CHILDREN for c in el):
        raise S3Error("MalformedXML")
    for name in _TRANSITIONS:
        if el.find(name) is not None:
            raise S3Error(
                "NotImplemented",
                f"Lifecycle {name} to other storage classes is not implemented: every object is stored in STANDARD.",
            )
    for name in ("ID", "Status", "Filter", "Prefix", *_ACTIONS):
        if len(el.findall(name)) > 1:
            raise S3Error("MalformedXML")
    status = (child_text(el, "Status") or "").strip()
    if status not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML")
    rule_id = child_text(el, "ID") or ""
    if len(rule_id) > MAX_ID:
        raise _bad("ID length should not exceed allowed limit of 255")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rule_id):  # it goes into x-amz-expiration: no line breaks
        raise _bad("The rule ID contains a control character")
    rule = Rule(rule_id, status == "Enabled")
    filt, prefix = el.find("Filter"), child_text(el, "Prefix")
    if (filt is None) == (prefix is None):  # one of them, as S3 wants
        raise S3Error("MalformedXML")
    if filt is not None:
        _filter(filt, rule)
    elif prefix is not None:
        rule.prefix, rule.legacy_prefix = prefix, True
    if (exp := el.find("Expiration")) is not None:
        _expiration(exp, rule)
    if (nc := el.find("NoncurrentVersionExpiration")) is not None:
        rule.noncurrent_days = _positive(nc, "NoncurrentDays", "NoncurrentVersionExpiration")
        rule.newer_noncurrent = _positive(nc, "NewerNoncurrentVersions", "NoncurrentVersionExpiration")
        if rule.noncurrent_days is None:
            raise S3Error("MalformedXML")
        if rule.newer_noncurrent is not None and rule.newer_noncurrent > 100:
            raise _bad("'NewerNoncurrentVersions' for NoncurrentVersionExpiration action must be at most 100")
    if (ab := el.find("AbortIncompleteMultipartUpload")) is not None:
        rule.abort_days = _positive(ab, "DaysAfterInitiation", "AbortIncompleteMultipartUpload")
        if rule.abort_days is None:
            raise S3Error("MalformedXML")
        if rule.tags or rule.size_gt is not None or rule.size_lt is not None:
            raise _bad("AbortIncompleteMultipartUpload cannot be specified with Tags or object size.")
    if not any(el.find(a) is not None for a in _ACTIONS):
        raise _bad("At least one action needs to be specified in a rule")
    return rule


def parse_configuration(body: bytes) -> list[Rule]:
    """The rules of a LifecycleConfiguration body, all of them checked (an S3Error for the first fault)."""
    doc = parse(body, "LifecycleConfiguration")
    if any(isinstance(c.tag, str) and c.tag != "Rule" for c in doc):
        raise S3Error("MalformedXML")
    elements = doc.findall("Rule")
    if not elements or len(elements) > MAX_RULES:
        raise S3Error("MalformedXML")
    rules = [_rule(el) for el in elements]
    ids = [r.id for r in rules if r.id]
    if len(ids) != len(set(ids)):
        raise _bad("Rule ID must be unique. Found same ID for more than one rule")
    return rules


def _date_text(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _filter_items(rule: Rule) -> list[tuple[str, Any]]:
    conds: list[tuple[str, Any]] = [("Prefix", rule.prefix)] if rule.prefix else []
    conds += [("Tag", [("Key", k), ("Value", v)]) for k, v in rule.tags.items()]
    conds += [("ObjectSizeGreaterThan", rule.size_gt), ("ObjectSizeLessThan", rule.size_lt)]
    present = [c for c in conds if c[1] is not None]
    if len(present) > 1:
        return [("And", present)]
    return present


def configuration_document(rules: list[Rule]) -> bytes:
    items: list[tuple[str, Any]] = []
    for r in rules:
        body: list[tuple[str, Any]] = [("ID", r.id or None)]
        body += [("Prefix", r.prefix)] if r.legacy_prefix else [("Filter", _filter_items(r))]
        body.append(("Status", "Enabled" if r.enabled else "Disabled"))
        if r.days is not None or r.date is not None or r.expired_marker:
            exp = [("Days", r.days), ("Date", None if r.date is None else _date_text(r.date))]
            body.append(("Expiration", exp if r.days or r.date else [("ExpiredObjectDeleteMarker", True)]))
        if r.noncurrent_days is not None:
            nc = [("NoncurrentDays", r.noncurrent_days), ("NewerNoncurrentVersions", r.newer_noncurrent)]
            body.append(("NoncurrentVersionExpiration", nc))
        if r.abort_days is not None:
            body.append(("AbortIncompleteMultipartUpload", [("DaysAfterInitiation", r.abort_days)]))
        items.append(("Rule", body))
    return document("LifecycleConfiguration", items)


def dumps(rules: list[Rule]) -> str:
    """The rules as kept in BucketRecord.lifecycle ("" for none)."""
    return json.dumps([asdict(r) for r in rules], separators=(",", ":")) if rules else ""


def loads(text: str) -> list[Rule]:
    """The rules of a bucket record (shared: the caller must not change them)."""
    return list(_loads(text)) if text else []


@functools.lru_cache(maxsize=256)
def _loads(text: str) -> tuple[Rule, ...]:
    # Every GET and HEAD in a bucket with rules reads them for x-amz-expiration: parsed once per configuration.
    return tuple(Rule(**d) for d in json.loads(text))


def after_days(start: float, days: int, day: float) -> float:
    """When `days` lifecycle days after `start` are over: as S3, at the next midnight UTC after start + days
    with the real day; exactly start + days * day with a shortened one (tests)."""
    end = start + days * day
    if day != DAY:
        return end
    return math.ceil(end / DAY) * DAY


def expiry(
    rules: list[Rule], key: str, size: int, tags: dict[str, str], created: float, day: float
) -> tuple[float, str] | None:
    """When the current version (created at `created`) expires and by which rule: the earliest, or None."""
    best: tuple[float, str] | None = None
    for r in rules:
        if (r.days is None and r.date is None) or not r.matches(key, size, tags):
            continue
        when = r.date if r.date is not None else after_days(created, r.days or 0, day)
        if best is None or when < best[0]:
            best = (when, r.id)
    return best


def expiration_header(found: tuple[float, str] | None) -> dict[str, str]:
    """x-amz-expiration for an object a rule will expire."""
    if found is None:
        return {}
    when, rule_id = found
    quoted = rule_id.replace("\\", "\\\\").replace('"', '\\"')
    return {"x-amz-expiration": f'expiry-date="{http_date(when)}", rule-id="{quoted}"'}
