"""The judging step every S3 request passes before its handler runs (gateway/app.py): the request's
principal and condition keys, handed to accounts.authorize; the bucket record it read is kept for the
handler (owned_bucket), so judging costs no second index read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cluster.service import request_key
from gateway.accounts.authorize import (
    ACCOUNT_ACTIONS,
    CANNED_ACLS,
    PUBLIC_ACLS,
    AccessDenied,
    Principal,
    authorize,
    bucket_policy,
    decide,
    public_access_block,
)
from gateway.accounts.conditions import now_keys
from gateway.context import Gateway
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from metadata.records import BucketRecord

_BUCKET: Any = request_key("tessera.bucket_record", BucketRecord)
_PRINCIPAL: Any = request_key("tessera.principal", Principal)
_QUERY_KEYS = {
    "prefix": "s3:prefix",
    "delimiter": "s3:delimiter",
    "max-keys": "s3:max-keys",
    "versionId": "s3:versionid",
}
_HEADER_KEYS = {"x-amz-acl": "s3:x-amz-acl", "If-None-Match": "s3:if-none-match"}


def principal(gw: Gateway, req: S3Request) -> Principal:
    """Who sent the request (cached on it)."""
    found = req.http.get(_PRINCIPAL)
    if found is None:
        found = gw.users.principal(req.access_key)
        req.http[_PRINCIPAL] = found
    return found


def context(req: S3Request, who: Principal, wanted: frozenset[str] | None = None) -> dict[str, str]:
    """The request's condition keys (lowercased names), as docs/access.md lists them: those in `wanted`
    (what the policies that judge it read; all when None)."""
    if wanted is not None and not wanted:
        return {}
    http = req.http
    ctx = now_keys(time.time())
    ctx["aws:securetransport"] = "true" if http.secure else "false"
    if http.remote:
        ctx["aws:sourceip"] = http.remote
    ctx["aws:principaltype"] = "Anonymous" if who.anonymous else "Account" if who.root else "User"
    if not who.anonymous and not who.root:
        ctx["aws:username"], ctx["aws:userid"] = who.name, who.access_key
    for name, key in _QUERY_KEYS.items():
        if name in req.query:
            ctx[key] = req.query[name]
    for name, key in _HEADER_KEYS.items():
        if name in req.headers:
            ctx[key] = req.headers[name]
    return ctx


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
    pol = bucket_policy(rec) if rec is not None else None
    wanted = (pol.keys if pol else frozenset()) | (who.policy.keys if who.policy else frozenset())
    try:
        await authorize(gw, who, action, bucket, key, context(req, who, wanted), rec)
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
    ctx = {k: v for k, v in context(req, who).items() if not k.startswith("s3:")}

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
