"""Put/Get/DeleteBucketLifecycleConfiguration (docs/lifecycle.md), and x-amz-expiration for object answers."""

from __future__ import annotations

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import owned_bucket, read_small_body, xml_response
from gateway.s3 import checksums
from gateway.s3 import lifecycle as rules
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from metadata.index import NoSuchBucket
from metadata.records import BucketRecord, ObjectManifest


async def get_lifecycle(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    if not bucket.lifecycle:
        raise S3Error(
            "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist", 404, BucketName=req.bucket
        )
    return xml_response(rules.configuration_document(rules.loads(bucket.lifecycle)))


async def _store(gw: Gateway, req: S3Request, text: str) -> None:
    try:
        await gw.index.set_bucket_lifecycle(req.bucket, text)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None


async def put_lifecycle(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    if "Content-MD5" not in req.headers and not checksums.checksum_headers(req.headers.keys()):
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 OR x-amz-checksum-*")
    parsed = rules.parse_configuration(await read_small_body(req, body_checksums=True))
    await _store(gw, req, rules.dumps(parsed))
    return web.Response(status=200)


async def delete_lifecycle(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    await _store(gw, req, "")
    return web.Response(status=204)


CONFIGURATION = {"GET": get_lifecycle, "PUT": put_lifecycle, "DELETE": delete_lifecycle}


def expiration_headers(gw: Gateway, bucket: BucketRecord | None, man: ObjectManifest) -> dict[str, str]:
    """x-amz-expiration for an answer about the current version `man`, when a rule of its bucket will expire it."""
    if bucket is None or not bucket.lifecycle or man.delete_marker:
        return {}
    day = gw.maintenance.settings.lifecycle_day if gw.maintenance is not None else rules.DAY
    found = rules.expiry(rules.loads(bucket.lifecycle), man.key, man.size, man.tags, man.last_modified, day)
    return rules.expiration_header(found)


def current_expiration(gw: Gateway, req: S3Request, bucket: BucketRecord, man: ObjectManifest) -> dict[str, str]:
    """x-amz-expiration of a GET or HEAD: for the current version (a read without ?versionId=)."""
    return {} if "versionId" in req.query else expiration_headers(gw, bucket, man)
