"""Bucket CORS: Put/Get/DeleteBucketCors, the anonymous preflight (OPTIONS) answered from the bucket's rules,
and the Access-Control-* headers of actual requests from an allowed origin."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import owned_bucket, read_small_body, xml_response
from gateway.s3 import cors
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request
from metadata.index import NoSuchBucket

Handler = Callable[[Gateway, S3Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

_NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request "
    "method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the "
    "resource's CORS spec."
)


async def _set(gw: Gateway, req: S3Request, value: str | None) -> None:
    try:
        await gw.index.update_bucket(req.bucket, {"cors": value})
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None


async def put_bucket_cors(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    rules = cors.parse_config(await read_small_body(req, body_checksums=True))
    await _set(gw, req, cors.to_record(rules))
    return web.Response(status=200)


async def get_bucket_cors(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    if not rec.cors:
        raise S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist", 404, BucketName=req.bucket)
    return xml_response(cors.config_document(cors.from_record(rec.cors)))


async def delete_bucket_cors(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    await _set(gw, req, None)
    return web.Response(status=204)


CONFIGURATION: dict[str, Handler] = {"PUT": put_bucket_cors, "GET": get_bucket_cors, "DELETE": delete_bucket_cors}


async def preflight(gw: Gateway, req: S3Request) -> web.StreamResponse:
    """OPTIONS /bucket[/key]: anonymous, as browsers send it; allowed or refused by the bucket's rules alone."""
    origin = req.headers.get("Origin")
    if not origin:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.", 400)
    method = req.headers.get("Access-Control-Request-Method")
    if method not in cors.METHODS:
        raise S3Error("BadRequest", f"Invalid Access-Control-Request-Method: {method or 'null'}", 400)
    rec = await gw.bucket(req.bucket)
    if not rec.cors:
        raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", 403)
    asked = cors.requested_headers(req.headers.get("Access-Control-Request-Headers"))
    rule = cors.first_match(cors.from_record(rec.cors), origin, method, asked)
    if rule is None:
        raise S3Error(
            "AccessForbidden", _NOT_ALLOWED, 403, Method=method, ResourceType="BUCKET" if not req.key else "OBJECT"
        )
    headers = rule.answer(origin)
    if asked:
        headers["Access-Control-Allow-Headers"] = ", ".join(asked)
    return web.Response(status=200, headers=headers)


async def add_headers(gw: Gateway, bucket: str, request: web.Request, response: web.StreamResponse) -> None:
    """The CORS headers of an actual request from an origin the bucket's rules allow, errors included."""
    origin = request.headers.get("Origin")
    if not origin or not bucket or "Access-Control-Allow-Origin" in response.headers:
        return
    try:
        rec = await gw.index.get_bucket(bucket)
    except Exception as exc:  # the answer itself stands; only its CORS headers are lost
        log.debug("no CORS headers for %s: %r", bucket, exc)
        return
    if rec is None or not rec.cors:
        return
    rule = cors.first_match(cors.from_record(rec.cors), origin, request.method)
    if rule is not None:
        response.headers.update(rule.answer(origin))
