"""Object lock (docs/object-lock.md): Get/PutObjectLockConfiguration, Get/PutObjectRetention, Get/PutObjectLegalHold,
and what writes, reads and deletes share about it (a new version's lock, the answer's headers, the delete guard)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers import versions
from gateway.handlers.buckets import owned_bucket, read_small_body, xml_response
from gateway.s3 import object_lock as lock
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from gateway.s3.xml import document, iso8601
from metadata.index import NoSuchBucket, ObjectLocked
from metadata.records import BucketRecord, LockGuard, ObjectManifest

Handler = Callable[[Gateway, S3Request], Awaitable[web.StreamResponse]]
DAY = 86400.0
YEAR_DAYS = 365  # a default retention in years counts 365 days a year
_NO_CONFIG = "Object Lock configuration does not exist for this bucket"
_NO_OBJECT_CONFIG = "The specified object does not have a ObjectLock configuration"
_NOT_ENABLED = "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"


# -- what writes, reads and deletes share


def new_version_lock(bucket: BucketRecord, req: S3Request, integrity: bool = False) -> lock.LockRequest:
    """The lock a write asks for in its headers, checked before anything is stored. `integrity`: the request
    carries the object (PUT), which then needs Content-MD5 or a checksum when a retention will apply to it."""
    asked = lock.lock_headers(req.headers)
    if asked:
        lock.require_lock(bucket.object_lock)
    if asked.mode:
        lock.check_future(asked.until, time.time())
    if integrity and (asked or bucket.lock_mode):
        lock.require_integrity(req.headers)
    return asked


def stamp_lock(man: ObjectManifest, asked: lock.LockRequest, bucket: BucketRecord) -> ObjectManifest:
    """Give a new version the lock it asked for, or the bucket's default retention when it asked for none."""
    mode, until = asked.mode, asked.until
    if not mode and bucket.object_lock and bucket.lock_mode:
        days = bucket.lock_days or bucket.lock_years * YEAR_DAYS
        mode, until = bucket.lock_mode, man.last_modified + days * DAY
    man.lock_mode, man.lock_until, man.legal_hold = mode, until, asked.legal_hold
    return man


def lock_response_headers(man: ObjectManifest) -> dict[str, str]:
    """The x-amz-object-lock-* headers a GET or HEAD of `man` answers."""
    h = {lock.MODE_HEADER: man.lock_mode, lock.UNTIL_HEADER: iso8601(man.lock_until)} if man.lock_mode else {}
    if man.legal_hold:
        h[lock.HOLD_HEADER] = man.legal_hold
    return h


def guard(gw: Gateway, req: S3Request, bucket: BucketRecord) -> LockGuard:
    """The guard of a delete or retention change. Who may bypass GOVERNANCE retention: the root and the bucket's
    owner (when access control lands, the s3:BypassGovernanceRetention permission decides)."""
    allowed = gw.is_root(req.access_key) or bucket.owner == req.access_key
    return LockGuard(time.time(), lock.bypass_asked(req.headers) and allowed)


# -- the bucket's configuration


async def get_lock_configuration(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if not rec.object_lock:
        raise S3Error("ObjectLockConfigurationNotFoundError", _NO_CONFIG, 404, BucketName=req.bucket)
    items: list[tuple[str, Any]] = [("ObjectLockEnabled", "Enabled")]
    if rec.lock_mode:
        period = ("Days", rec.lock_days) if rec.lock_days else ("Years", rec.lock_years)
        items.append(("Rule", [("DefaultRetention", [("Mode", rec.lock_mode), period])]))
    return xml_response(document("ObjectLockConfiguration", items))


async def put_lock_configuration(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    lock.require_integrity(req.headers)
    mode, days, years = lock.parse_configuration(await read_small_body(req, body_checksums=True))
    if rec.versioning != "Enabled":
        raise S3Error("InvalidBucketState", _NOT_ENABLED, 409)
    try:
        await gw.index.set_bucket_lock(req.bucket, mode, days, years)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None
    except ValueError:  # versioning suspended meanwhile
        raise S3Error("InvalidBucketState", _NOT_ENABLED, 409) from None
    return web.Response(status=200)


# -- one version's retention and legal hold


async def _locked_version(gw: Gateway, req: S3Request) -> tuple[BucketRecord, ObjectManifest]:
    bucket = await owned_bucket(gw, req)
    lock.require_lock(bucket.object_lock)
    return bucket, await versions.read_version(gw, req, bucket)


def _revised(done: bool, req: S3Request) -> web.StreamResponse:
    if not done:  # deleted since we read it
        raise S3Error("NoSuchVersion" if "versionId" in req.query else "NoSuchKey", Key=req.key)
    return web.Response(status=200)


async def get_retention(gw: Gateway, req: S3Request) -> web.StreamResponse:
    _, man = await _locked_version(gw, req)
    if not man.lock_mode:
        raise S3Error("NoSuchObjectLockConfiguration", _NO_OBJECT_CONFIG, 404)
    items = [("Mode", man.lock_mode), ("RetainUntilDate", iso8601(man.lock_until))]
    return xml_response(document("Retention", items))


async def put_retention(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    lock.require_lock(bucket.object_lock)
    lock.require_integrity(req.headers)
    mode, until = lock.parse_retention(await read_small_body(req, body_checksums=True))
    if mode:
        lock.check_future(until, time.time())
    vid = (await versions.read_version(gw, req, bucket)).version_id
    try:
        revised = await gw.index.set_retention(req.bucket, req.key, vid, mode, until, guard(gw, req, bucket))
    except ObjectLocked:
        raise S3Error("AccessDenied", lock.LOCKED) from None
    return _revised(revised, req)


async def get_legal_hold(gw: Gateway, req: S3Request) -> web.StreamResponse:
    _, man = await _locked_version(gw, req)
    if not man.legal_hold:
        raise S3Error("NoSuchObjectLockConfiguration", _NO_OBJECT_CONFIG, 404)
    return xml_response(document("LegalHold", [("Status", man.legal_hold)]))


async def put_legal_hold(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    lock.require_lock(bucket.object_lock)
    lock.require_integrity(req.headers)
    on = lock.parse_legal_hold(await read_small_body(req, body_checksums=True))
    man = await versions.read_version(gw, req, bucket)
    return _revised(await gw.index.set_legal_hold(req.bucket, req.key, man.version_id, on), req)


# The subresources' handlers by method, for the router.
CONFIGURATION: dict[str, Handler] = {"GET": get_lock_configuration, "PUT": put_lock_configuration}
RETENTION: dict[str, Handler] = {"GET": get_retention, "PUT": put_retention}
LEGAL_HOLD: dict[str, Handler] = {"GET": get_legal_hold, "PUT": put_legal_hold}
