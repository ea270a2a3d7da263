"""DeleteObject and DeleteObjects: by key or by version, conditional on an ETag, kept from locked versions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers import object_lock, versions
from gateway.handlers.access import may_key
from gateway.handlers.buckets import owned_bucket, read_small_body, xml_response
from gateway.s3 import checksums
from gateway.s3.errors import S3Error
from gateway.s3.notification_rules import events_for
from gateway.s3.object_lock import LOCKED
from gateway.s3.request import MAX_KEY_BYTES, S3Request
from gateway.s3.xml import child_text, document, parse
from metadata.index import NoSuchBucket, ObjectLocked, PreconditionFailed, check_condition
from metadata.records import BucketRecord, Condition, LockGuard, is_version_id

MAX_DELETE_KEYS = 1000


def _etag_condition(value: str | None) -> Condition | None:
    """If-Match of a delete (header, or a DeleteObjects entry's ETag): an ETag, quoted or not, or "*"."""
    return None if value is None else Condition(if_match=value.strip().strip('"'))


async def _delete(
    gw: Gateway,
    bucket: BucketRecord,
    key: str,
    cond: Condition | None,
    version: str | None,
    owner: str,
    guard: LockGuard | None = None,
) -> tuple[S3Error | None, dict[str, str]]:
    """Delete one key (or one version of it): the S3 error it fails with, if any, and the answer's headers.

    Without versioning the condition is checked atomically with the delete. With it (a delete marker, or
    a version removed for good), it is checked against the current version (or the one named) just before."""
    if version is None and not bucket.versioning:
        try:
            removed = events_for(bucket, "ObjectRemoved:Delete", key, principal=owner)
            old = await gw.index.delete_object(bucket.name, key, cond, removed)
        except PreconditionFailed:
            return S3Error("PreconditionFailed", Condition="If-Match"), {}
        except NoSuchBucket:
            raise S3Error("NoSuchBucket", BucketName=bucket.name) from None
        if old is not None:
            gw.layer.discard(old.parts)
        elif cond is not None:
            return S3Error("NoSuchKey", Key=key), {}  # a conditional delete of nothing: S3's 404, even for "*"
        return None, {}
    if cond is not None:
        index = gw.index
        target = await (
            index.get_object(bucket.name, key) if version is None else index.get_version(bucket.name, key, version)
        )
        if target is None or target.delete_marker:
            return S3Error("NoSuchKey", Key=key), {}
        try:
            check_condition(cond, target)
        except PreconditionFailed:
            return S3Error("PreconditionFailed", Condition="If-Match"), {}
    try:
        _, headers = await versions.delete_key(gw, bucket, key, version, owner, guard)
    except ObjectLocked:  # a version object lock keeps (docs/object-lock.md)
        return S3Error("AccessDenied", LOCKED), {}
    return None, headers


# Conditions S3 has for directory buckets only: refused rather than accepted and not checked.
_UNCHECKED_DELETE_CONDITIONS = ("x-amz-if-match-last-modified-time", "x-amz-if-match-size")


async def delete_object(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    for name in _UNCHECKED_DELETE_CONDITIONS:
        if name in req.headers:
            raise S3Error("NotImplemented", f"The {name} header is not implemented.")
    cond = _etag_condition(req.headers.get("If-Match"))
    version = versions.version_param(req)
    guard = object_lock.guard(gw, req, bucket)
    err, headers = await _delete(gw, bucket, req.key, cond, version, req.access_key, guard) if req.key else (None, {})
    if err is not None:
        raise err
    return web.Response(status=204, headers=headers)


_XML_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}  # xs:boolean's lexical forms


def _delete_request(raw: bytes) -> tuple[list[tuple[str, str | None, str | None]], bool]:
    """The keys (each with its ETag condition and VersionId, if any) and the Quiet flag of a DeleteObjects
    body, all of it validated before anything is deleted."""
    doc = parse(raw, "Delete")
    quiet = _XML_BOOLEANS.get((child_text(doc, "Quiet") or "false").strip().lower())
    if quiet is None:
        raise S3Error("MalformedXML")
    objects = doc.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise S3Error("MalformedXML")
    if any(obj.find("LastModifiedTime") is not None or obj.find("Size") is not None for obj in objects):
        raise S3Error("NotImplemented", "Deletes conditional on LastModifiedTime or Size are not implemented.")
    entries = [(child_text(obj, "Key"), child_text(obj, "ETag"), child_text(obj, "VersionId")) for obj in objects]
    if any(key is None for key, _, _ in entries):
        raise S3Error("MalformedXML")
    return [(key, etag, version) for key, etag, version in entries if key is not None], quiet


async def delete_objects(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    if "Content-MD5" not in req.headers and not checksums.checksum_headers(req.headers.keys()):
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 OR x-amz-checksum-*")
    entries, quiet = _delete_request(await read_small_body(req, body_checksums=True))
    guard = object_lock.guard(gw, req, bucket)
    results: list[tuple[str, Any]] = []
    for key, etag, version in entries:
        if len(key.encode()) > MAX_KEY_BYTES:
            results.append(("Error", [("Key", key), ("Code", "KeyTooLongError"), ("Message", "Your key is too long")]))
            continue
        action = "s3:DeleteObject" if version is None else "s3:DeleteObjectVersion"
        if not await may_key(gw, req, action, key):
            err: S3Error | None = S3Error("AccessDenied")
            headers: dict[str, str] = {}
        elif version is not None and not is_version_id(version):
            err, headers = S3Error("NoSuchVersion"), {}
        else:
            err, headers = await _delete(gw, bucket, key, _etag_condition(etag), version, req.access_key, guard)
        if err is not None:
            results.append(
                ("Error", [("Key", key), ("VersionId", version), ("Code", err.code), ("Message", err.message)])
            )
        elif not quiet:
            done: list[tuple[str, Any]] = [("Key", key), ("VersionId", version)]
            if headers.get("x-amz-delete-marker") == "true":
                done += [("DeleteMarker", True), ("DeleteMarkerVersionId", headers["x-amz-version-id"])]
            results.append(("Deleted", done))
    return xml_response(document("DeleteResult", results))
