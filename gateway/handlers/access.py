"""The judging step every S3 request passes before its handler runs (gateway/app.py): the request's
principal and condition keys, handed to accounts.authorize; the bucket record it read is kept for the
handler (owned_bucket), so judging costs no second index read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cluster.service import request_key
from gateway.accounts.authorize import (
    ACCOUNT_ACTIONS,
    CANNED_ACLS,
    PUBLIC_ACLS,
    AccessDenied,
    Principal,
    authorize,
    decide,
    public_access_block,
)
from gateway.accounts.conditions import KNOWN_KEYS, now_keys
from gateway.context import Gateway
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from metadata.records import BucketRecord

_BUCKET: Any = request_key("tessera.bucket_record", BucketRecord)
_PRINCIPAL: Any = request_key("tessera.principal", Principal)
# Condition key -> the query parameter or header that carries it.
_QUERY_KEYS = {
    "s3:prefix": "prefix",
    "s3:delimiter": "delimiter",
    "s3:max-keys": "max-keys",
    "s3:versionid": "versionId",
}
_HEADER_KEYS = {"s3:x-amz-acl": "x-amz-acl", "s3:if-none-match": "If-None-Match"}


def principal(gw: Gateway, req: S3Request) -> Principal:
    """Who sent the request (cached on it)."""
    found = req.http.get(_PRINCIPAL)
    if found is None:
        found = gw.users.principal(req.access_key)
        req.http[_PRINCIPAL] = found
    return found


class RequestContext(Mapping[str, str]):
    """The request's condition keys (lowercased names, as docs/access.md lists them), each worked out when a
    condition first reads it: most policies read one or two of them, and a GET should not pay for the rest."""

    __slots__ = ("_listing", "_memo", "_req", "_who")

    def __init__(self, req: S3Request, who: Principal, listing_keys: bool = True) -> None:
        self._req, self._who, self._listing = req, who, listing_keys
        self._memo: dict[str, str | None] = {}

    def get(self, key: str, default: Any = None) -> Any:
        memo = self._memo
        if key not in memo:
            memo[key] = self._compute(key)
        value = memo[key]
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (k for k in KNOWN_KEYS if self.get(k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _compute(self, key: str) -> str | None:
        http, who = self._req.http, self._who
        if key in ("aws:currenttime", "aws:epochtime"):
            return now_keys(time.time())[key]
        if key == "aws:sourceip":
            return http.remote
        if key == "aws:securetransport":
            return "true" if http.secure else "false"
        if key == "aws:principaltype":
            return "Anonymous" if who.anonymous else "Account" if who.root else "User"
        if key in ("aws:username", "aws:userid"):
            if who.anonymous or who.root:
                return None
            return who.name if key == "aws:username" else who.access_key
        if not self._listing and key.startswith("s3:"):
            return None
        if key in _QUERY_KEYS:
            return self._req.query.get(_QUERY_KEYS[key])
        if key in _HEADER_KEYS:
            return self._req.headers.get(_HEADER_KEYS[key])
        return None


def context(req: S3Request, who: Principal) -> RequestContext:
    """The request's condition keys: see RequestContext."""
    return RequestContext(req, who)


async def judge(
    gw: Gateway,
    req: S3Request,
    action: str | None,
    bucket: str = "",
    key: str | None = None,
    rec: BucketRecord | None = None,
) -> None:
    """Raise S3's AccessDenied unless the request may do `action` on bucket/key (the request's own by
    default); NoSuchBucket for a bucket that does not exist. action None: an operation no action names yet,
    left to the bucket's owner and the root; "": the handler judges each key. rec: the bucket's record when
    the caller has it."""
    own = not bucket
    bucket, key = (req.bucket, req.key) if own else (bucket, key or "")
    who = principal(gw, req)
    if rec is None and bucket and action not in ACCOUNT_ACTIONS:
        rec = await gw.index.get_bucket(bucket)
        if rec is None:
            raise S3Error("NoSuchBucket", BucketName=bucket)
        if own:
            req.http[_BUCKET] = rec
    if who.root or action == "":
        return  # "": judged key by key by the handler itself (DeleteObjects)
    if action is None:
        if rec is None or rec.owner != who.access_key:
            raise S3Error("AccessDenied")
        return
    if rec is not None and rec.owner == who.access_key and who.policy is None and not rec.policy:
        return  # the common case: a user in their own bucket, no policy anywhere to deny it
    try:
        await authorize(gw, who, action, bucket, key, RequestContext(req, who), rec)
    except AccessDenied:
        raise S3Error("AccessDenied") from None


async def may_key(gw: Gateway, req: S3Request, action: str, key: str) -> bool:
    """Whether the request may do `action` on one more key of its bucket (DeleteObjects judges each key)."""
    try:
        await judge(gw, req, action, req.bucket, key, judged_bucket(req))
    except S3Error as exc:
        if exc.code != "AccessDenied":
            raise
        return False
    return True


def judged_bucket(req: S3Request) -> BucketRecord | None:
    """The request's bucket as judge() read it."""
    return req.http.get(_BUCKET)


def listable(gw: Gateway, req: S3Request) -> Callable[[BucketRecord], bool]:
    """For ListBuckets: whether the requester may list a bucket (s3:ListBucket, with no listing's
    condition keys: ListBuckets' own prefix names buckets), judged without reading anything more."""
    who = principal(gw, req)
    ctx = RequestContext(req, who, listing_keys=False)

    def may(rec: BucketRecord) -> bool:
        if who.root or (rec.owner == who.access_key and who.policy is None):
            return True
        return bool(decide(who, "s3:ListBucket", rec.name, rec, "", ctx))

    return may


# -- canned ACLs on requests (x-amz-acl): CreateBucket, PUT, copy, multipart create, Put*Acl

ENFORCED_ACLS = frozenset({"private", "bucket-owner-full-control"})  # what BucketOwnerEnforced still takes
_GRANT_HEADERS = (
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
)


def acl_with_enforced() -> S3Error:
    return S3Error(
        "InvalidBucketAclWithObjectOwnership",
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
    )


def requested_acl(req: S3Request) -> str | None:
    """The canned ACL a request asks for (x-amz-acl), None if none; grants to others are 501."""
    if any(h in req.headers for h in _GRANT_HEADERS):
        raise S3Error("NotImplemented", "Grants by x-amz-grant-* headers are not implemented: use x-amz-acl.")
    acl = req.headers.get("x-amz-acl")
    if acl is None:
        return None
    if acl not in CANNED_ACLS:
        raise S3Error("InvalidArgument", f"Invalid canned ACL {acl!r}", ArgumentName="x-amz-acl", ArgumentValue=acl)
    return acl


def check_acl(rec: BucketRecord, acl: str | None) -> None:
    """Refuse an ACL the bucket cannot take: ACLs disabled (BucketOwnerEnforced), or a public ACL while the
    public access block blocks them."""
    if acl is None:
        return
    if rec.ownership == "BucketOwnerEnforced" and acl not in ENFORCED_ACLS:
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs")
    if acl in PUBLIC_ACLS and public_access_block(rec)["BlockPublicAcls"]:
        raise S3Error("AccessDenied", "The bucket's public access block refuses public ACLs.")
