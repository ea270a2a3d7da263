"""Who may do what: one decision for every request (docs/access.md) from the principal, the bucket owner's
rights, the user's policy, the bucket's policy, its canned ACLs and its public access block."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Protocol

from gateway.accounts import policy as policies
from gateway.accounts.conditions import TAG_KEY_PREFIX, Context, PolicyError
from gateway.accounts.policy import Effect, Policy, Who
from metadata.records import BucketRecord, ObjectManifest


class AccessDenied(Exception):
    """The request is not allowed: answered as S3's 403 AccessDenied."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the root, a user (with their policy, None for the default), or nobody (anonymous)."""

    access_key: str = ""
    name: str = ""
    root: bool = False
    policy: Policy | None = None

    @property
    def anonymous(self) -> bool:
        return not self.access_key

    @property
    def who(self) -> Who:
        return Who(self.access_key, self.name)


ANONYMOUS = Principal()

# Canned ACLs (x-amz-acl) and what each grants beyond the owner's own rights: (to whom, which actions).
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)
PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
_BUCKET_READ = frozenset({"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"})
_BUCKET_WRITE = frozenset({"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"})
_OBJECT_READ = frozenset({"s3:GetObject", "s3:GetObjectVersion"})
_BUCKET_GRANTS: dict[str, tuple[str, frozenset[str]]] = {
    "public-read": ("everyone", _BUCKET_READ),
    "public-read-write": ("everyone", _BUCKET_READ | _BUCKET_WRITE),
    "authenticated-read": ("users", _BUCKET_READ),
}
_OBJECT_GRANTS: dict[str, tuple[str, frozenset[str]]] = {
    "public-read": ("everyone", _OBJECT_READ),
    "public-read-write": ("everyone", _OBJECT_READ),
    "authenticated-read": ("users", _OBJECT_READ),
}
# What any signed-in user may do without being granted it (the default user policy, readwrite).
ACCOUNT_ACTIONS = frozenset({"s3:CreateBucket", "s3:ListAllMyBuckets"})
OWNERSHIP = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
PAB_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


_NO_BLOCK: Mapping[str, bool] = MappingProxyType(dict.fromkeys(PAB_FIELDS, False))


def public_access_block(rec: BucketRecord | None) -> Mapping[str, bool]:
    """The bucket's public access block settings (all False when none is set)."""
    if rec is None or not rec.public_access_block:
        return _NO_BLOCK
    return _parsed_block(rec.public_access_block)


@lru_cache(maxsize=256)
def _parsed_block(text: str) -> Mapping[str, bool]:
    stored = json.loads(text)
    return MappingProxyType({f: bool(stored.get(f, False)) for f in PAB_FIELDS})


def acls_enabled(rec: BucketRecord) -> bool:
    return rec.ownership != "BucketOwnerEnforced"


def _acl_grants(acl: str | None, table: Mapping[str, tuple[str, frozenset[str]]], who: Principal, action: str) -> bool:
    grant = table.get(acl or "private")
    if grant is None or action not in grant[1]:
        return False
    return grant[0] == "everyone" or not who.anonymous


def bucket_policy(rec: BucketRecord) -> Policy | None:
    if not rec.policy:
        return None
    try:
        return policies.cached(rec.policy, rec.name)
    except (PolicyError, NotImplementedError):  # checked when put: a stored policy always parses
        return None


def decide(
    who: Principal,
    action: str,
    bucket: str,
    rec: BucketRecord | None,
    key: str,
    context: Context,
    object_acl: str | None = None,
) -> bool | None:
    """True: allowed; False: denied (explicitly, or nothing allows it); None: only an object ACL could still
    allow it (the caller reads the object's ACL and asks again with object_acl). rec is None for a bucket
    that does not exist, and for the account's own actions (CreateBucket, ListAllMyBuckets)."""
    if who.root:
        return True
    resource = policies.resource(bucket, key)
    mine = who.policy.evaluate(who.who, action, resource, context) if who.policy else None
    if mine is Effect.DENY:
        return False
    pol = bucket_policy(rec) if rec is not None else None
    pab = public_access_block(rec)
    if pol is not None:
        restricted = pab["RestrictPublicBuckets"] and pol.public and who.anonymous
        theirs = pol.evaluate(who.who, action, resource, context, public=not restricted)
        if theirs is Effect.DENY:
            return False
        if theirs is Effect.ALLOW:
            return True
    if mine is Effect.ALLOW:
        return True
    if rec is None:
        return not who.anonymous and action in ACCOUNT_ACTIONS
    if not who.anonymous and rec.owner == who.access_key:
        return True  # the bucket owner's rights: everything on their bucket and what is in it
    if pab["IgnorePublicAcls"] or not acls_enabled(rec):
        return False
    if _acl_grants(rec.acl, _BUCKET_GRANTS, who, action):
        return True
    if key and action in _OBJECT_READ:
        if object_acl is None:
            return None
        return _acl_grants(object_acl, _OBJECT_GRANTS, who, action)
    return False


class _Index(Protocol):
    async def get_bucket(self, name: str) -> BucketRecord | None: ...

    async def get_object(self, bucket: str, key: str) -> ObjectManifest | None: ...


class _Gateway(Protocol):
    @property
    def index(self) -> Any: ...  # metadata.index.Index: get_bucket and get_object are used


def object_tags(man: ObjectManifest | None) -> dict[str, str]:
    """The object's tags, where the manifest has them (object tagging fills ObjectManifest.tags)."""
    tags = getattr(man, "tags", None) if man is not None else None
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):
        return {str(k): str(v) for k, v in tags}
    return {}


async def authorize(
    gw: _Gateway,
    principal: Principal,
    action: str,
    bucket: str,
    key: str,
    context: Context,
    rec: BucketRecord | None = None,
) -> BucketRecord | None:
    """Raise AccessDenied unless `principal` may do `action` on bucket (and key); returns the bucket's record
    (None when there is no such bucket, which only account actions such as CreateBucket are allowed on).

    `context` holds the request's condition keys (aws:SourceIp, s3:prefix, ...: see docs/access.md); the
    object's tags (s3:ExistingObjectTag/<key>) and ACL are read here when a decision needs them."""
    index: _Index = gw.index
    if rec is None and bucket and action not in ACCOUNT_ACTIONS:
        rec = await index.get_bucket(bucket)
    if principal.root:
        return rec
    pol = bucket_policy(rec) if rec is not None else None
    man: ObjectManifest | None = None
    if (
        key
        and rec is not None
        and ((pol is not None and pol.needs_tags) or (principal.policy and principal.policy.needs_tags))
    ):
        man = await index.get_object(bucket, key)
        context = {**context, **{TAG_KEY_PREFIX + k.lower(): v for k, v in object_tags(man).items()}}
    verdict = decide(principal, action, bucket, rec, key, context)
    if verdict is None:
        man = man or await index.get_object(bucket, key)
        acl = getattr(man, "acl", None) or "private"
        verdict = decide(principal, action, bucket, rec, key, context, object_acl=acl)
    if not verdict:
        raise AccessDenied(f"{principal.name or 'anonymous'} may not {action} on {policies.resource(bucket, key)}")
    return rec
