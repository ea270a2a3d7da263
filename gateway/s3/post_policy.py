"""Browser-form (POST object) authentication: the signed POST policy, its SigV4 (or V2) signature, its
expiration and its conditions (eq, starts-with, content-length-range, {"field": "value"}), as S3 judges them.

A form's fields are compared by lowercase name: S3 treats form field names case-insensitively.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.s3.canonical import ALGORITHM, SERVICE, TERMINATOR, derive_signing_key, sign
from gateway.s3.errors import S3Error

# Fields a policy need not mention (S3: the signature, the file, the policy itself, x-ignore-*).
_EXEMPT = frozenset({"x-amz-signature", "file", "policy", "signature", "awsaccesskeyid"})
_EXPIRATION_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z")
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_SCOPE_PART_RE = re.compile(r"[!-~]{1,128}")


@dataclass(slots=True)
class Condition:
    op: str  # "eq", "starts-with" or "content-length-range"
    name: str  # the field, lowercase, without "$" ("" for content-length-range)
    value: str = ""
    low: int = 0
    high: int = 0
    text: str = ""  # as the policy wrote it, for the error message


@dataclass(slots=True)
class PostPolicy:
    expiration: datetime
    conditions: list[Condition] = field(default_factory=list)

    @property
    def length_range(self) -> tuple[int, int] | None:
        """The content-length-range the file must fall in (the narrowest, when several are given)."""
        ranges = [(c.low, c.high) for c in self.conditions if c.op == "content-length-range"]
        if not ranges:
            return None
        return max(r[0] for r in ranges), min(r[1] for r in ranges)


def _invalid(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}", 400)


def _length(value: Any) -> int:
    """A content-length-range bound: a JSON integer or a string of digits, as S3 takes them."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid("Invalid content-length-range.")
    return value


def _conditions(raw: Any) -> list[Condition]:
    """One condition of the policy's list; an object of several fields is an exact match on each."""
    text = json.dumps(raw)
    if isinstance(raw, dict):
        if not raw or not all(isinstance(v, str) for v in raw.values()):
            raise _invalid(f"Invalid Simple-Condition: {text}")
        return [Condition("eq", name.lower().removeprefix("$"), value, text=text) for name, value in raw.items()]
    return [_condition(raw, text)]


def _condition(raw: Any, text: str) -> Condition:
    if not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], str):
        raise _invalid(f"Invalid Condition: {text}")
    op = raw[0].lower()
    if op == "content-length-range":
        low, high = _length(raw[1]), _length(raw[2])
        return Condition(op, "", low=low, high=high, text=text)
    if op not in ("eq", "starts-with") or not isinstance(raw[1], str) or not isinstance(raw[2], str):
        raise _invalid(f"Invalid Condition: {text}")
    if not raw[1].startswith("$"):
        raise _invalid(f"Invalid {op} condition: the field must start with $: {text}")
    return Condition(op, raw[1][1:].lower(), raw[2], text=text)


def decode_policy(encoded: str) -> PostPolicy:
    """The policy of a form's `policy` field (base64 JSON); InvalidPolicyDocument when it is not one."""
    try:
        doc = json.loads(base64.b64decode(encoded.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise _invalid("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON.")
    expiration = doc.get("expiration")
    if not isinstance(expiration, str):
        raise _invalid("Policy missing expiration.")
    m = _EXPIRATION_RE.fullmatch(expiration)
    try:
        when = datetime(*(int(g) for g in m.groups()), tzinfo=UTC) if m else None  # type: ignore[misc]
    except ValueError:
        when = None
    if when is None:
        raise _invalid(f"Invalid 'expiration' value: '{expiration}'")
    raw = doc.get("conditions")
    if not isinstance(raw, list):
        raise _invalid("Policy missing conditions.")
    return PostPolicy(when, [c for item in raw for c in _conditions(item)])


def _denied(detail: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {detail}")


def check_policy(policy: PostPolicy, fields: Mapping[str, str], now: datetime | None = None) -> None:
    """Expiration, every condition, and every field named by some condition (`fields`: lowercase names, the
    bucket and the key as stored included)."""
    if (now or datetime.now(UTC)) > policy.expiration:
        raise _denied("Policy expired.")
    for c in policy.conditions:
        if c.op == "content-length-range":
            continue  # judged on the file as it streams
        value = fields.get(c.name, "")
        if not (value == c.value if c.op == "eq" else value.startswith(c.value)):
            raise _denied(f"Policy Condition failed: {c.text}")
    named = {c.name for c in policy.conditions}
    extra = [n for n in fields if n not in named and n not in _EXEMPT and not n.startswith("x-ignore-")]
    extra = [n for n in extra if n != "bucket"]  # the bucket is in the URL; a condition on it is optional
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")


def missing(name: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields.",
        ArgumentName=name,
        ArgumentValue="",
    )


def claimed_access_key(fields: Mapping[str, str]) -> str:
    """The access key the form says signed it ("" when none)."""
    return fields.get("x-amz-credential", "").split("/", 1)[0] or fields.get("awsaccesskeyid", "")


def is_signed(fields: Mapping[str, str]) -> bool:
    """Whether the form claims to be signed (else it is an anonymous upload)."""
    return any(n in fields for n in ("policy", "x-amz-signature", "signature", "x-amz-credential", "awsaccesskeyid"))


def verify_form(fields: Mapping[str, str], lookup_secret: Callable[[str], str | None]) -> str:
    """The access key whose secret signed the form's policy (SigV4, or V2's HMAC-SHA1); raises the S3 error."""
    policy = fields.get("policy")
    if policy is None:
        raise missing("policy")
    if "awsaccesskeyid" in fields and "x-amz-credential" not in fields:
        return _verify_v2(fields, policy, lookup_secret)
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
        if name not in fields:
            raise missing(name)
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            f"Unsupported algorithm: {fields['x-amz-algorithm']}",
            ArgumentName="x-amz-algorithm",
            ArgumentValue=fields["x-amz-algorithm"],
        )
    parts = fields["x-amz-credential"].split("/")
    amz_date = fields["x-amz-date"]
    if (
        len(parts) != 5
        or not all(_SCOPE_PART_RE.fullmatch(p) for p in parts)
        or parts[3:] != [SERVICE, TERMINATOR]
        or not _AMZ_DATE_RE.fullmatch(amz_date)
        or parts[1] != amz_date[:8]
    ):
        raise S3Error(
            "InvalidArgument",
            "The credential is malformed or its date is not the date of x-amz-date.",
            ArgumentName="x-amz-credential",
            ArgumentValue=fields["x-amz-credential"],
        )
    access_key, date, region = parts[0], parts[1], parts[2]
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    provided = fields["x-amz-signature"].strip()
    expected = sign(derive_signing_key(secret, date, region), policy)
    if not (_SIGNATURE_RE.fullmatch(provided) and hmac.compare_digest(expected, provided)):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key, StringToSign=policy)
    return access_key


def _verify_v2(fields: Mapping[str, str], policy: str, lookup_secret: Callable[[str], str | None]) -> str:
    access_key = fields["awsaccesskeyid"]
    if "signature" not in fields:
        raise missing("signature")
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    expected = base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected.encode(), fields["signature"].strip().encode("utf-8", "replace")):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key, StringToSign=policy)
    return access_key
