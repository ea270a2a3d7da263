"""Who-may-do-what configurations: a bucket's policy (and policy status), public access block, ownership
controls and ACL, each one field of the bucket record (Index.update_bucket); and an object's canned ACL
(Index.update_object)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.accounts import policy as policies
from gateway.accounts.authorize import OWNERSHIP, PAB_FIELDS, acls_enabled, public_access_block
from gateway.accounts.conditions import PolicyError
from gateway.context import Gateway
from gateway.handlers.access import ENFORCED_ACLS, acl_with_enforced, check_acl, requested_acl
from gateway.handlers.buckets import owned_bucket, owner_items, read_small_body, xml_response
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from gateway.s3.xml import child_text, document, parse
from metadata.index import NoSuchBucket
from metadata.records import BucketRecord, ObjectManifest

_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
_AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


async def _update(gw: Gateway, bucket: str, changes: dict[str, str | None]) -> BucketRecord:
    try:
        return await gw.index.update_bucket(bucket, changes)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=bucket) from None


async def _clear(gw: Gateway, req: S3Request, field: str) -> web.StreamResponse:
    """A Delete* of one bucket configuration: back to none (S3 answers 204 whether one was set or not)."""
    rec = await owned_bucket(gw, req)
    await _update(gw, rec.name, {field: None})
    return web.Response(status=204)


async def _acl_asked(req: S3Request) -> str:
    """The canned ACL a Put*Acl request sets (x-amz-acl); an ACL body with grants is 501."""
    acl = requested_acl(req)
    body = await read_small_body(req)
    if acl is not None:
        return acl
    if body.strip():
        raise S3Error("NotImplemented", "ACLs given as an XML body are not implemented: use x-amz-acl.")
    raise S3Error("MissingSecurityHeader", "Your request was missing a required header", HeaderName="x-amz-acl")


# -- policy


async def put_bucket_policy(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    raw = await read_small_body(req)
    try:
        text = raw.decode()
        parsed = policies.parse(text, rec.name)
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "Policies must be UTF-8 JSON") from None
    except PolicyError as exc:
        raise S3Error("MalformedPolicy", str(exc)) from None
    except NotImplementedError as exc:
        raise S3Error("NotImplemented", str(exc)) from None
    if parsed.public and public_access_block(rec)["BlockPublicPolicy"]:
        raise S3Error("AccessDenied", "The bucket's public access block refuses a public policy.")
    await _update(gw, rec.name, {"policy": text})
    return web.Response(status=204)


async def get_bucket_policy(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if not rec.policy:
        raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", 404, BucketName=rec.name)
    return web.Response(text=rec.policy, content_type="application/json")


async def delete_bucket_policy(gw: Gateway, req: S3Request) -> web.StreamResponse:
    return await _clear(gw, req, "policy")


async def get_bucket_policy_status(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if not rec.policy:
        raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", 404, BucketName=rec.name)
    public = policies.cached(rec.policy, rec.name).public
    return xml_response(document("PolicyStatus", [("IsPublic", "true" if public else "false")]))


# -- public access block


async def put_public_access_block(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    el = parse(await read_small_body(req), "PublicAccessBlockConfiguration")
    settings = {}
    for name in PAB_FIELDS:
        value = (child_text(el, name, "false") or "").strip().lower()
        if value not in ("true", "false"):
            raise S3Error("MalformedXML")
        settings[name] = value == "true"
    await _update(gw, rec.name, {"public_access_block": json.dumps(settings)})
    return web.Response(status=200)


async def get_public_access_block(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if not rec.public_access_block:
        raise S3Error(
            "NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not found", 404
        )
    items = [(k, "true" if v else "false") for k, v in public_access_block(rec).items()]
    return xml_response(document("PublicAccessBlockConfiguration", items))


async def delete_public_access_block(gw: Gateway, req: S3Request) -> web.StreamResponse:
    return await _clear(gw, req, "public_access_block")


# -- ownership controls


async def put_ownership_controls(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    el = parse(await read_small_body(req), "OwnershipControls")
    rules = el.findall("Rule")
    wanted = child_text(rules[0], "ObjectOwnership") if len(rules) == 1 else None
    if wanted not in OWNERSHIP:
        raise S3Error("MalformedXML")
    if wanted == "BucketOwnerEnforced" and (rec.acl or "private") not in ENFORCED_ACLS:
        raise acl_with_enforced()
    await _update(gw, rec.name, {"ownership": wanted})
    return web.Response(status=200)


async def get_ownership_controls(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if rec.ownership is None:
        raise S3Error("OwnershipControlsNotFoundError", "The bucket ownership controls were not found", 404)
    rule = [("Rule", [("ObjectOwnership", rec.ownership)])]
    return xml_response(document("OwnershipControls", rule))


async def delete_ownership_controls(gw: Gateway, req: S3Request) -> web.StreamResponse:
    return await _clear(gw, req, "ownership")


# -- canned ACLs


async def put_bucket_acl(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    acl = await _acl_asked(req)
    check_acl(rec, acl)
    await _update(gw, rec.name, {"acl": acl})
    return web.Response(status=200)


def grants(owner: str, acl: str, bucket: bool) -> list[tuple[str, Any]]:
    """An AccessControlPolicy's Grant elements for a canned ACL (the owner's FULL_CONTROL first)."""
    out: list[tuple[str, Any]] = [("Grant", [("Grantee", _canonical(owner)), ("Permission", "FULL_CONTROL")])]
    group = _ALL_USERS if acl.startswith("public-") else _AUTH_USERS if acl == "authenticated-read" else None
    if group is not None:
        out.append(("Grant", [("Grantee", _group(group)), ("Permission", "READ")]))
        if acl == "public-read-write" and bucket:
            out.append(("Grant", [("Grantee", _group(group)), ("Permission", "WRITE")]))
    return out


# A Grantee's type is an xsi:type attribute, which gateway.s3.xml does not write: a first <Type> child
# stands for it and acl_document turns it into the attribute.
_XSI = b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def _canonical(owner: str) -> list[tuple[str, Any]]:
    return [("Type", "CanonicalUser"), ("ID", owner_items(owner)[0][1]), ("DisplayName", owner)]


def _group(uri: str) -> list[tuple[str, Any]]:
    return [("Type", "Group"), ("URI", uri)]


def acl_document(owner: str, acl: str, bucket: bool) -> bytes:
    body = document(
        "AccessControlPolicy", [("Owner", owner_items(owner)), ("AccessControlList", grants(owner, acl, bucket))]
    )
    for kind in (b"CanonicalUser", b"Group"):
        body = body.replace(b"<Grantee><Type>" + kind + b"</Type>", b"<Grantee " + _XSI + b' xsi:type="' + kind + b'">')
    return body


async def get_bucket_acl(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    acl = (rec.acl or "private") if acls_enabled(rec) else "private"
    return xml_response(acl_document(rec.owner, acl, bucket=True))


async def _current_object(gw: Gateway, req: S3Request) -> ObjectManifest:
    man = await gw.index.get_object(req.bucket, req.key)
    if man is None:
        raise S3Error("NoSuchKey", Key=req.key)
    return man


async def get_object_acl(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    man = await _current_object(gw, req)
    acl = (man.acl or "private") if acls_enabled(rec) else "private"
    return xml_response(acl_document(man.owner, acl, bucket=False))


_ACL_ATTEMPTS = 3  # an overwrite between our read and our update: apply the ACL to the newer object


async def put_object_acl(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    acl = await _acl_asked(req)
    check_acl(rec, acl)
    for _ in range(_ACL_ATTEMPTS):
        man = await _current_object(gw, req)
        if await gw.index.update_object(req.bucket, req.key, man.version_id, {"acl": acl}) is not None:
            return web.Response(status=200)
    raise S3Error("ServiceUnavailable", "The object kept changing; try again.", 503)
