"""IAM policy conditions: the operators (String*, Numeric*, Date*, Bool, IpAddress, Null and their IfExists
forms), parsed once when a policy is put and evaluated against a request's context keys."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any


class PolicyError(ValueError):
    """A policy that is not well formed: answered 400 MalformedPolicy with this message."""


# What a request offers: context key (lowercased) -> its value, or its values for a multivalued key.
Context = Mapping[str, str | list[str]]

# The keys a request sets (docs/access.md); a condition on another key sees it absent, as AWS does.
KNOWN_KEYS = frozenset(
    "aws:sourceip aws:securetransport aws:username aws:userid aws:currenttime aws:epochtime aws:principaltype "
    "s3:prefix s3:delimiter s3:max-keys s3:x-amz-acl s3:if-none-match s3:versionid".split()
)
TAG_KEY_PREFIX = "s3:existingobjecttag/"


@lru_cache(maxsize=4096)
def like_pattern(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM wildcards: * any run of characters, ? one character; everything else literal ([ too)."""
    escaped = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(escaped, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PolicyError(f"{text!r} is not a number") from None
    if math.isnan(value):
        raise PolicyError(f"{text!r} is not a number")
    return value


def _date(text: str) -> float:
    """An ISO 8601 date/time or epoch seconds, as seconds since the epoch."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PolicyError(f"{text!r} is not a date") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _bool(text: str) -> str:
    if text.lower() not in ("true", "false"):
        raise PolicyError(f"{text!r} is not true or false")
    return text.lower()


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PolicyError(f"{text!r} is not an IP address or CIDR block") from None


Test = Callable[[str, Any], bool]  # (the request's value, one parsed policy value) -> matches


@lru_cache(maxsize=1024)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A request's source address, parsed once: the same clients come back (parsing is most of a check)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_in(value: str, net: Any) -> bool:
    addr = _address(value)
    return addr is not None and addr.version == net.version and addr in net


def _num_test(compare: Callable[[float, float], bool]) -> Test:
    def test(value: str, wanted: Any) -> bool:
        try:
            got = float(value)
        except ValueError:
            return False
        return compare(got, wanted)

    return test


@lru_cache(maxsize=256)
def _request_date(text: str) -> float | None:
    """A date a request carries (aws:CurrentTime changes once a second), parsed once."""
    try:
        return _date(text)
    except PolicyError:
        return None


def _date_test(compare: Callable[[float, float], bool]) -> Test:
    def test(value: str, wanted: Any) -> bool:
        got = _request_date(value)
        return got is not None and compare(got, wanted)

    return test


def _eq(a: float, b: float) -> bool:
    return a == b


def _lt(a: float, b: float) -> bool:
    return a < b


def _le(a: float, b: float) -> bool:
    return a <= b


def _gt(a: float, b: float) -> bool:
    return a > b


def _ge(a: float, b: float) -> bool:
    return a >= b


@dataclass(frozen=True, slots=True)
class _Operator:
    parse: Callable[[str], Any]  # a policy value, checked and prepared
    test: Test
    negated: bool = False  # true when no value matches (and when the key is absent)


_COMPARISONS = {"Equals": _eq, "LessThan": _lt, "LessThanEquals": _le, "GreaterThan": _gt, "GreaterThanEquals": _ge}
OPERATORS: dict[str, _Operator] = {
    "StringEquals": _Operator(str, lambda v, w: v == w),
    "StringNotEquals": _Operator(str, lambda v, w: v == w, negated=True),
    "StringEqualsIgnoreCase": _Operator(str.lower, lambda v, w: v.lower() == w),
    "StringNotEqualsIgnoreCase": _Operator(str.lower, lambda v, w: v.lower() == w, negated=True),
    "StringLike": _Operator(like_pattern, lambda v, w: w.fullmatch(v) is not None),
    "StringNotLike": _Operator(like_pattern, lambda v, w: w.fullmatch(v) is not None, negated=True),
    "Bool": _Operator(_bool, lambda v, w: v.lower() == w),
    "IpAddress": _Operator(_network, _ip_in),
    "NotIpAddress": _Operator(_network, _ip_in, negated=True),
    "NumericNotEquals": _Operator(_number, _num_test(_eq), negated=True),
    "DateNotEquals": _Operator(_date, _date_test(_eq), negated=True),
}
for _name, _cmp in _COMPARISONS.items():
    OPERATORS["Numeric" + _name] = _Operator(_number, _num_test(_cmp))
    OPERATORS["Date" + _name] = _Operator(_date, _date_test(_cmp))


@dataclass(frozen=True, slots=True)
class Condition:
    """One key under one operator, with its values (any of them may match)."""

    operator: str
    key: str  # lowercased: condition keys are case-insensitive
    values: tuple[Any, ...]
    if_exists: bool = False

    def holds(self, context: Context) -> bool:
        got = context.get(self.key)
        if self.operator == "Null":
            return (got is None) == self.values[0]
        if got is None:
            return self.if_exists or OPERATORS[self.operator].negated
        op = OPERATORS[self.operator]
        hit = False
        for v in got if isinstance(got, list) else (got,):
            for w in self.values:
                if op.test(v, w):
                    hit = True
                    break
        return not hit if op.negated else hit


def _texts(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, int | float | str):
            out.append(str(item))
        else:
            raise PolicyError(f"{where}: condition values are strings, numbers or booleans")
    if not out:
        raise PolicyError(f"{where}: a condition needs at least one value")
    return out


def parse_conditions(block: Any) -> tuple[Condition, ...]:
    """The Condition block of a statement: {operator: {key: value or [values]}}; every condition must hold."""
    if not isinstance(block, dict):
        raise PolicyError("Condition must be an object of operators")
    out = []
    for name, keys in block.items():
        if not isinstance(name, str) or not isinstance(keys, dict):
            raise PolicyError(f"Condition operator {name!r} must map keys to values")
        if ":" in name:  # ForAnyValue:/ForAllValues: qualifiers
            raise PolicyError(f"Condition operator {name!r} is not supported")
        base, if_exists = (name[: -len("IfExists")], True) if name.endswith("IfExists") else (name, False)
        if base != "Null" and base not in OPERATORS:
            raise PolicyError(f"Invalid Condition operator {name!r}")
        if base == "Null" and if_exists:
            raise PolicyError("Null has no IfExists form")
        for key, value in keys.items():
            lowered = str(key).lower()
            if lowered not in KNOWN_KEYS and not lowered.startswith(TAG_KEY_PREFIX):
                raise PolicyError(f"Policy has an invalid condition key {key!r}")
            texts = _texts(value, f"{name}/{key}")
            if base == "Null":
                if len(texts) != 1:
                    raise PolicyError("Null takes one value, true or false")
                out.append(Condition("Null", lowered, (_bool(texts[0]) == "true",)))
                continue
            parse = OPERATORS[base].parse
            out.append(Condition(base, lowered, tuple(parse(t) for t in texts), if_exists))
    return tuple(out)


def all_hold(conditions: tuple[Condition, ...], context: Context) -> bool:
    for c in conditions:
        if not c.holds(context):
            return False
    return True


def now_keys(now: float) -> dict[str, str]:
    """aws:CurrentTime and aws:EpochTime for a request judged at `now`."""
    return dict(_second_keys(int(now)))


@lru_cache(maxsize=2)
def _second_keys(second: int) -> tuple[tuple[str, str], ...]:
    stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (("aws:currenttime", stamp), ("aws:epochtime", str(second)))
