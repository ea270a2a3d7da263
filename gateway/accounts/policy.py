"""The IAM policy language as S3 bucket policies and user policies use it: parsing (MalformedPolicy reasons),
the built-in user policies, and evaluating a policy for one request (explicit Deny, Allow, or neither)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from gateway.accounts.conditions import (
    KNOWN_KEYS,
    TAG_KEY_PREFIX,
    Condition,
    Context,
    PolicyError,
    all_hold,
    like_pattern,
    parse_conditions,
)

ACCOUNT = "tessera"  # the one account every user belongs to, in ARNs: arn:aws:iam::tessera:user/NAME
MAX_BUCKET_POLICY = 20 * 1024  # bytes, as S3
MAX_USER_POLICY = 20 * 1024  # bytes: roomier than IAM's inline 2 KiB, as large as a bucket policy
VERSIONS = ("2012-10-17", "2008-10-17")
S3_ARN = "arn:aws:s3:::"
_USER_ARN = re.compile(r"arn:aws:iam::([^:]*):user/(.+)")
_ANY = "*"

# Every S3 action a statement may name without wildcards (and the ones our routes judge: see gateway/app.py).
KNOWN_ACTIONS = frozenset(
    "s3:" + name.lower()
    for name in (
        "AbortMultipartUpload CreateBucket DeleteBucket DeleteBucketPolicy DeleteObject DeleteObjectVersion "
        "DeleteObjectTagging DeleteObjectVersionTagging DeleteBucketOwnershipControls GetBucketAcl GetBucketCORS "
        "GetBucketLocation GetBucketOwnershipControls GetBucketPolicy GetBucketPolicyStatus "
        "GetBucketPublicAccessBlock GetBucketTagging GetBucketVersioning GetBucketObjectLockConfiguration "
        "GetLifecycleConfiguration GetObject GetObjectAcl GetObjectAttributes GetObjectTagging GetObjectVersion "
        "GetObjectVersionAcl GetObjectVersionTagging GetObjectRetention GetObjectLegalHold ListAllMyBuckets "
        "ListBucket ListBucketMultipartUploads ListBucketVersions ListMultipartUploadParts PutBucketAcl "
        "PutBucketCORS PutBucketOwnershipControls PutBucketPolicy PutBucketPublicAccessBlock PutBucketTagging "
        "PutBucketVersioning PutBucketObjectLockConfiguration PutLifecycleConfiguration PutObject PutObjectAcl "
        "PutObjectTagging PutObjectVersionAcl PutObjectVersionTagging PutObjectRetention PutObjectLegalHold "
        "BypassGovernanceRetention RestoreObject GetBucketNotification PutBucketNotification"
    ).split()
)


class Effect(Enum):
    DENY = "Deny"
    ALLOW = "Allow"


@dataclass(frozen=True, slots=True)
class Who:
    """The requester as a statement's Principal sees it."""

    access_key: str = ""  # "" for an anonymous request
    name: str = ""  # the user's name (the root's is "root")

    @property
    def anonymous(self) -> bool:
        return not self.access_key


def _matches(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    for p in patterns:
        if p.fullmatch(text) is not None:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Statement:
    allow: bool
    principals: frozenset[str] | None  # None: no Principal (a user policy); "*", "user:NAME", "key:ACCESSKEY"
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditions: tuple[Condition, ...]
    templates: tuple[str, ...] = ()  # resources with policy variables (${aws:username}), filled per request

    @property
    def public(self) -> bool:
        """Allows anyone, anonymous requests included, from anywhere (no source IP condition narrows it)."""
        narrowed = any(c.key == "aws:sourceip" and c.operator == "IpAddress" for c in self.conditions)
        return self.allow and self.principals is not None and _ANY in self.principals and not narrowed

    def names(self, who: Who) -> bool:
        p = self.principals
        if p is None or _ANY in p:
            return True
        return not who.anonymous and (f"key:{who.access_key}" in p or f"user:{who.name}" in p)

    def applies(self, who: Who, action: str, resource: str, context: Context) -> bool:
        if not self.names(who) or _matches(self.actions, action) == self.not_action:
            return False
        found = _matches(self.resources, resource) or (
            bool(self.templates) and _filled(self.templates, resource, context)
        )
        if found == self.not_resource:
            return False
        return not self.conditions or all_hold(self.conditions, context)


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]
    needs_tags: bool  # some condition reads s3:ExistingObjectTag/<key>: the object's tags must be read

    @property
    def public(self) -> bool:
        return any(s.public for s in self.statements)

    def evaluate(self, who: Who, action: str, resource: str, context: Context, public: bool = True) -> Effect | None:
        """DENY if a statement denies; else ALLOW if one allows; else None. public=False leaves out what
        public statements allow (RestrictPublicBuckets)."""
        allowed = False
        for s in self.statements:
            if (s.allow and (allowed or (not public and s.public))) or not s.applies(who, action, resource, context):
                continue
            if not s.allow:
                return Effect.DENY
            allowed = True
        return Effect.ALLOW if allowed else None


def _list(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise PolicyError(f"{what} must be a string or a non-empty list of strings")
    return items


def _principals(value: Any) -> frozenset[str]:
    if value == _ANY:
        return frozenset({_ANY})
    if not isinstance(value, dict) or set(value) != {"AWS"}:
        raise PolicyError('Invalid principal in policy: use "*" or {"AWS": [...]}')
    out = set()
    for p in _list(value["AWS"], "Principal AWS"):
        m = _USER_ARN.fullmatch(p)
        if p == _ANY:
            out.add(_ANY)
        elif m:
            out.add(f"user:{m.group(2)}")
        elif p.startswith("arn:"):
            raise PolicyError(f"Invalid principal in policy: {p!r} (name users as arn:aws:iam::{ACCOUNT}:user/NAME)")
        else:
            out.add(f"key:{p}")  # an access key
    return frozenset(out)


def _actions(value: Any) -> tuple[re.Pattern[str], ...]:
    out = []
    for a in _list(value, "Action"):
        lowered = a.lower()
        if lowered != _ANY and not lowered.startswith("s3:"):
            raise PolicyError(f"Policy has invalid action {a!r}: only s3: actions apply here")
        if "*" not in a and "?" not in a and lowered not in KNOWN_ACTIONS:
            raise PolicyError(f"Policy has invalid action {a!r}")
        out.append(like_pattern(a, ignore_case=True))
    return tuple(out)


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_LITERALS = {"*": "*", "?": "?", "$": "$"}  # ${*}, ${?}, ${$}: the character itself, not a wildcard


def _filled(templates: tuple[str, ...], resource: str, context: Context) -> bool:
    """Whether a resource with policy variables, filled from the request's keys, matches; a template whose
    key the request does not have matches nothing (as AWS)."""
    for template in templates:
        parts: list[str] = []
        pos = 0
        for m in _VARIABLE.finditer(template):
            parts.append(template[pos : m.start()])
            name = m.group(1)
            if name in _LITERALS:
                parts.append("\x00" + name)  # a literal character, not a wildcard (_template_pattern)
            else:
                value = context.get(name.lower())
                if not isinstance(value, str):
                    break
                parts.append(value.replace("*", "\x00*").replace("?", "\x00?"))
            pos = m.end()
        else:
            parts.append(template[pos:])
            if _template_pattern("".join(parts)).fullmatch(resource):
                return True
    return False


@lru_cache(maxsize=4096)
def _template_pattern(text: str) -> re.Pattern[str]:
    """IAM wildcards, except characters marked literal (NUL before them) by _filled."""
    out, literal = [], False
    for c in text:
        if c == "\x00":
            literal = True
            continue
        out.append(re.escape(c) if literal or c not in "*?" else ".*" if c == "*" else ".")
        literal = False
    return re.compile("".join(out), re.DOTALL)


def _resources(value: Any, bucket: str | None) -> tuple[tuple[re.Pattern[str], ...], tuple[str, ...]]:
    """(patterns, templates): the resources without policy variables compiled, those with them kept."""
    out, templates = [], []
    for r in _list(value, "Resource"):
        if r != _ANY and not r.startswith(S3_ARN):
            raise PolicyError(f"Policy has invalid resource {r!r}")
        named = r[len(S3_ARN) :].split("/", 1)[0] if r != _ANY else _ANY
        # A bucket's policy speaks of that bucket only.
        if bucket is not None and "${" not in named and not like_pattern(named).fullmatch(bucket):
            raise PolicyError(f"Policy has invalid resource {r!r}: it is not in bucket {bucket}")
        if "${" in r:
            for m in _VARIABLE.finditer(r):
                if m.group(1) not in _LITERALS and m.group(1).lower() not in KNOWN_KEYS:
                    raise PolicyError(f"Policy has an invalid variable {m.group(0)!r} in {r!r}")
            templates.append(r)
        else:
            out.append(like_pattern(r))
    return tuple(out), tuple(templates)


_STATEMENT_FIELDS = frozenset(
    "Sid Effect Principal NotPrincipal Action NotAction Resource NotResource Condition".split()
)


def _statement(raw: Any, bucket: str | None) -> Statement:
    if not isinstance(raw, dict):
        raise PolicyError("each Statement must be an object")
    unknown = set(raw) - _STATEMENT_FIELDS
    if unknown:
        raise PolicyError(f"Unknown field {sorted(unknown)[0]!r} in a Statement")
    if "NotPrincipal" in raw:
        raise NotImplementedError("NotPrincipal is not implemented: name the principals the statement applies to")
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise PolicyError("Effect must be Allow or Deny")
    if "Sid" in raw and not isinstance(raw["Sid"], str):
        raise PolicyError("Sid must be a string")
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyError("a Statement needs exactly one of Action and NotAction")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise PolicyError("a Statement needs exactly one of Resource and NotResource")
    if bucket is not None and "Principal" not in raw:
        raise PolicyError("Missing required field Principal")
    if bucket is None and "Principal" in raw:
        raise PolicyError("a user policy names no Principal: it applies to its user")
    resources, templates = _resources(raw.get("Resource", raw.get("NotResource")), bucket)
    return Statement(
        allow=raw["Effect"] == "Allow",
        principals=_principals(raw["Principal"]) if "Principal" in raw else None,
        actions=_actions(raw.get("Action", raw.get("NotAction"))),
        not_action="NotAction" in raw,
        resources=resources,
        not_resource="NotResource" in raw,
        conditions=parse_conditions(raw["Condition"]) if "Condition" in raw else (),
        templates=templates,
    )


def parse(text: str, bucket: str | None = None) -> Policy:
    """A policy document: a bucket's (bucket given: Principal required, resources in that bucket) or a
    user's. Raises PolicyError (MalformedPolicy) or NotImplementedError (NotPrincipal)."""
    limit = MAX_BUCKET_POLICY if bucket is not None else MAX_USER_POLICY
    if len(text.encode()) > limit:
        raise PolicyError(f"Policies must be at most {limit} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'") from None
    if not isinstance(doc, dict):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'")
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"Unknown field {sorted(unknown)[0]!r}")
    if "Version" in doc and doc["Version"] not in VERSIONS:
        raise PolicyError(f"The policy must contain a valid version string ({' or '.join(VERSIONS)})")
    raw = doc.get("Statement")
    statements = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else None
    if not statements:
        raise PolicyError("Missing required field Statement")
    parsed = tuple(_statement(s, bucket) for s in statements)
    return Policy(parsed, any(c.key.startswith(TAG_KEY_PREFIX) for s in parsed for c in s.conditions))


@lru_cache(maxsize=1024)
def cached(text: str, bucket: str | None = None) -> Policy:
    """A stored policy, parsed once per worker: keyed by its text, so a changed policy is a new entry and
    the record read with each request decides which one applies (no invalidation needed)."""
    return parse(text, bucket)


def resource(bucket: str, key: str = "") -> str:
    if not bucket:
        return S3_ARN + _ANY
    return S3_ARN + bucket + ("/" + key if key else "")


def _doc(statements: Iterable[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# Built-in user policies (`tessera admin user add --policy NAME`). readwrite is the default: no statements,
# so the user has the rights of a bucket owner on their own buckets and may create buckets.
_READS = ["s3:Get*", "s3:List*"]
BUILTIN = {
    "readwrite": "",
    "readonly": _doc(
        [
            {"Sid": "ReadEverything", "Effect": "Allow", "Action": _READS, "Resource": "*"},
            {"Sid": "WriteNothing", "Effect": "Deny", "NotAction": _READS, "Resource": "*"},
        ]
    ),
}
