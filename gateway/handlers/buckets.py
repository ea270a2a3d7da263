"""Bucket operations: list, create, delete, head, location (who may do what: access.py, bucket_access.py)."""

from __future__ import annotations

import re
import time

from aiohttp import web

from gateway.accounts.authorize import OWNERSHIP
from gateway.context import Gateway
from gateway.handlers import access
from gateway.s3.body import check_small_body
from gateway.s3.errors import S3Error
from gateway.s3.request import (
    S3Request,
    canonical_id,
    check_bucket_name,
    decode_token,
    encode_token,
    header_safe,
    int_param,
)
from gateway.s3.xml import MAX_XML_BODY, child_text, document, iso8601, parse
from metadata.index import BucketAlreadyExists, BucketNotEmpty, NoSuchBucket
from metadata.records import BucketRecord


def xml_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/xml")


def owner_items(access_key: str) -> list[tuple[str, object]]:
    return [("ID", canonical_id(access_key)), ("DisplayName", access_key)]


async def read_small_body(req: S3Request, body_checksums: bool = False) -> bytes:
    """A whole XML request body, verified against the hashes (and checksums) the client sent with it."""
    if req.http.content_length is not None and req.http.content_length > MAX_XML_BODY:
        raise S3Error("MaxMessageLengthExceeded", "Your request was too big.", 400)
    body = bytearray()
    while chunk := await req.http.content.read(65536):
        body += chunk
        if len(body) > MAX_XML_BODY:
            raise S3Error("MaxMessageLengthExceeded", "Your request was too big.", 400)
    check_small_body(req, bytes(body), body_checksums)
    return bytes(body)


MAX_BUCKETS = 10000


def _max_buckets(req: S3Request) -> int:
    return int_param(req.query, "max-buckets", MAX_BUCKETS, 1, MAX_BUCKETS)


async def _visible_buckets(gw: Gateway, req: S3Request) -> list[BucketRecord]:
    """The buckets the caller may list (their own; every bucket for the root; others' where a policy lets
    them list it) after the continuation token, filtered by prefix and bucket-region."""
    token = req.query.get("continuation-token")
    after = decode_token(token) if token is not None else ""
    prefix, region = req.query.get("prefix", ""), req.query.get("bucket-region")
    may = access.listable(gw, req)
    return [
        b
        for b in await gw.index.list_buckets()
        if may(b) and b.name > after and b.name.startswith(prefix) and (region is None or b.region == region)
    ]


async def list_buckets(gw: Gateway, req: S3Request) -> web.StreamResponse:
    limit = _max_buckets(req)
    buckets = await _visible_buckets(gw, req)
    page = buckets[:limit]
    entries = [
        ("Bucket", [("Name", b.name), ("CreationDate", iso8601(b.created)), ("BucketRegion", b.region)]) for b in page
    ]
    items: list[tuple[str, object]] = [("Owner", owner_items(req.access_key)), ("Buckets", entries)]
    if len(buckets) > limit:
        items.append(("ContinuationToken", encode_token(page[-1].name)))
    if "prefix" in req.query:
        items.append(("Prefix", req.query["prefix"]))
    return xml_response(document("ListAllMyBucketsResult", items))


_REGION_RE = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,4}")  # the shape of every AWS region name: us-east-1, us-gov-west-1


def _location(body: bytes, region: str) -> str:
    """The region a CreateBucket asks for: only this server's. The empty constraint means the server's region
    (AWS's default, us-east-1, is ours unless configured otherwise)."""
    if not body.strip():
        return region
    wanted = child_text(parse(body, "CreateBucketConfiguration"), "LocationConstraint")
    if not wanted or wanted == region:
        return region
    if _REGION_RE.fullmatch(wanted):
        raise S3Error(
            "IllegalLocationConstraintException",
            f"The {wanted} location constraint is incompatible for the region specific endpoint this request was "
            "sent to.",
        )
    raise S3Error("InvalidLocationConstraint", LocationConstraint=wanted)


async def create_bucket(gw: Gateway, req: S3Request) -> web.StreamResponse:
    check_bucket_name(req.bucket)
    locked = req.headers.get("x-amz-bucket-object-lock-enabled", "false").strip().lower()
    if locked not in ("true", "false"):
        raise S3Error("InvalidArgument", "Invalid x-amz-bucket-object-lock-enabled value", ArgumentName=locked)
    acl = access.requested_acl(req)
    ownership = req.headers.get("x-amz-object-ownership", "BucketOwnerEnforced")  # S3's default since 2023
    if ownership not in OWNERSHIP:
        raise S3Error("InvalidArgument", "Invalid x-amz-object-ownership header", ArgumentName="x-amz-object-ownership")
    if ownership == "BucketOwnerEnforced" and acl not in (None, *access.ENFORCED_ACLS):
        raise access.acl_with_enforced()
    region = _location(await read_small_body(req), gw.region)
    rec = BucketRecord(req.bucket, req.access_key, time.time(), region, acl=acl, ownership=ownership)
    if locked == "true":  # object lock turns versioning on, for good (docs/object-lock.md)
        rec.object_lock, rec.versioning = True, "Enabled"
    try:
        await gw.index.create_bucket(rec)
    except BucketAlreadyExists as exc:
        if exc.owner != req.access_key:
            raise S3Error("BucketAlreadyExists", BucketName=req.bucket) from None
        if region != "us-east-1":
            raise S3Error("BucketAlreadyOwnedByYou", BucketName=req.bucket) from None
        # us-east-1 answers a repeated creation by the owner with success (a legacy S3 keeps), changing nothing.
    return web.Response(status=200, headers={"Location": "/" + req.bucket})


async def delete_bucket(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    try:
        leftovers = await gw.index.delete_bucket(req.bucket)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None
    except BucketNotEmpty:
        raise S3Error("BucketNotEmpty", BucketName=req.bucket) from None
    gw.layer.discard(leftovers)
    return web.Response(status=204)


async def head_bucket(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    return web.Response(status=200, headers={"x-amz-bucket-region": header_safe(rec.region)})


async def bucket_location(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    # us-east-1 is reported as an empty constraint, as S3 does.
    loc = "" if rec.region == "us-east-1" else rec.region
    return xml_response(document("LocationConstraint", [], text=loc or None))


async def owned_bucket(gw: Gateway, req: S3Request) -> BucketRecord:
    """The request's bucket: the record the judging step read (gateway/handlers/access.py), which has
    already decided that the requester may do this operation on it."""
    rec = access.judged_bucket(req)
    return rec if rec is not None and rec.name == req.bucket else await gw.bucket(req.bucket)
