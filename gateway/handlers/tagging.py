"""Object and bucket tagging: the tag sets, their limits as S3 has them, and the six tagging operations."""

from __future__ import annotations

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import owned_bucket, read_small_body, xml_response
from gateway.handlers.objects import resolve_version
from gateway.s3 import checksums
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from gateway.s3.tags import MAX_BUCKET_TAGS, MAX_OBJECT_TAGS, parse_tagging, tagging_document
from metadata.index import NoSuchBucket

RETAG_ATTEMPTS = 5  # a PutObjectTagging that keeps losing to overwrites gives up with a 503


async def _body_tags(req: S3Request, limit: int) -> dict[str, str]:
    """The tag set of a Put*Tagging body; S3 wants it sent with Content-MD5 or a checksum."""
    if "Content-MD5" not in req.headers and not checksums.checksum_headers(req.headers.keys()):
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 OR x-amz-checksum-*")
    return parse_tagging(await read_small_body(req, body_checksums=True), limit)


# -- objects


async def get_object_tagging(gw: Gateway, req: S3Request) -> web.StreamResponse:
    man = await resolve_version(gw, req)
    return xml_response(tagging_document(man.tags))


async def _retag(gw: Gateway, req: S3Request, tags: dict[str, str]) -> None:
    """Set the tags of the object the request names, without touching its data: the index replaces them only
    if the version read is still current, so an overwrite racing us is never undone."""
    for _ in range(RETAG_ATTEMPTS):
        man = await resolve_version(gw, req)
        if await gw.index.set_object_tags(req.bucket, req.key, man.version_id, tags):
            return
    raise S3Error("ServiceUnavailable", "The object kept changing; please retry.", 503)


async def put_object_tagging(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await resolve_version(gw, req)  # NoSuchKey before reading the body, as S3
    await _retag(gw, req, await _body_tags(req, MAX_OBJECT_TAGS))
    return web.Response(status=200)


async def delete_object_tagging(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await _retag(gw, req, {})
    return web.Response(status=204)


# -- buckets


async def get_bucket_tagging(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if not rec.tags:
        raise S3Error("NoSuchTagSet", "The TagSet does not exist", 404, BucketName=req.bucket)
    return xml_response(tagging_document(rec.tags))


async def _set_bucket_tags(gw: Gateway, req: S3Request, tags: dict[str, str]) -> None:
    try:
        await gw.index.set_bucket_tags(req.bucket, tags)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None


async def put_bucket_tagging(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    await _set_bucket_tags(gw, req, await _body_tags(req, MAX_BUCKET_TAGS))
    return web.Response(status=204)


async def delete_bucket_tagging(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    await _set_bucket_tags(gw, req, {})
    return web.Response(status=204)
