"""The S3 HTTP front: authenticate, route each request to its handler, answer errors as S3 XML."""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway import siblings
from gateway.admin import api as admin_api
from gateway.context import Gateway
from gateway.handlers import buckets as bucket_api
from gateway.handlers import listing as listing_api
from gateway.handlers import multipart as multipart_api
from gateway.handlers import objects as object_api
from gateway.metrics import CONTENT_TYPE, GatewayMetrics, merge
from gateway.s3 import sigv2, sigv4
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request, split_path
from gateway.s3.xml import error_document
from metadata.index import IndexUnavailable

log = logging.getLogger(__name__)
access_log = logging.getLogger("tessera.gateway.access")

Handler = Callable[[Gateway, S3Request], Awaitable[web.StreamResponse]]

# Subresources S3 has and we do not: answered 501 rather than misread as a plain request.
_BUCKET_UNSUPPORTED = frozenset(
    "accelerate acl analytics cors encryption intelligent-tiering inventory lifecycle logging metrics "
    "notification object-lock ownershipControls policy policyStatus publicAccessBlock replication "
    "requestPayment tagging versioning versions website".split()
)
_OBJECT_UNSUPPORTED = frozenset("acl attributes legal-hold restore retention select tagging torrent".split())
GATEWAY_KEY = web.AppKey("gateway", Gateway)
REQUEST_ID = "tessera.request_id"
# Request ids: unique per process start and cheap (uuid4 per request cost 5% of a small GET's CPU).
_RID_PREFIX = os.urandom(3).hex().upper()
_rid_counter = itertools.count(1)


def _new_rid_prefix() -> None:
    global _RID_PREFIX
    _RID_PREFIX = os.urandom(3).hex().upper()  # each `--workers` process its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_rid_prefix)
OPERATION = "tessera.operation"
FORWARDED = "tessera.forwarded"
METRICS_KEY = web.AppKey("metrics", GatewayMetrics)


def _route(req: S3Request) -> Handler:
    method, q = req.http.method, req.query
    if not req.bucket:
        if method == "GET":
            return bucket_api.list_buckets
        raise S3Error("MethodNotAllowed")
    if not req.key:
        unsupported = _BUCKET_UNSUPPORTED.intersection(q)
        if unsupported:
            raise S3Error("NotImplemented", f"Bucket {sorted(unsupported)[0]} is not implemented.")
        if method == "GET":
            if "location" in q:
                return bucket_api.bucket_location
            if "uploads" in q:
                return listing_api.list_uploads
            return listing_api.list_objects
        if method == "PUT":
            return bucket_api.create_bucket
        if method == "HEAD":
            return bucket_api.head_bucket
        if method == "DELETE":
            return bucket_api.delete_bucket
        if method == "POST" and "delete" in q:
            return object_api.delete_objects
        raise S3Error("NotImplemented" if method == "POST" else "MethodNotAllowed")
    unsupported = _OBJECT_UNSUPPORTED.intersection(q)
    if unsupported:
        raise S3Error("NotImplemented", f"Object {sorted(unsupported)[0]} is not implemented.")
    copy = "x-amz-copy-source" in req.headers
    if method == "PUT":
        if "uploadId" in q:
            return multipart_api.upload_part_copy if copy else multipart_api.upload_part
        return object_api.copy_object if copy else object_api.put_object
    if method == "GET":
        return multipart_api.list_parts if "uploadId" in q else object_api.get_object
    if method == "HEAD":
        return object_api.head_object
    if method == "DELETE":
        return multipart_api.abort_upload if "uploadId" in q else object_api.delete_object
    if method == "POST":
        if "uploads" in q:
            return multipart_api.create_upload
        if "uploadId" in q:
            return multipart_api.complete_upload
        raise S3Error("NotImplemented", "POST object uploads are not implemented.")
    raise S3Error("MethodNotAllowed")


def _host_bucket(host: str, domains: tuple[str, ...]) -> str | None:
    """The bucket of a virtual-hosted-style request (bucket.<domain>), if the Host names one."""
    name = host.rsplit(":", 1)[0].lower() if not host.endswith("]") else host
    for domain in domains:
        if name.endswith("." + domain):
            return name[: -len(domain) - 1]
    return None


def _is_anonymous(request: web.Request) -> bool:
    return not ({"X-Amz-Signature", "Signature"} & request.query.keys()) and "Authorization" not in request.headers


_PROBES = frozenset({"/health/live", "/health/ready", "/metrics"})


async def _health(request: web.Request) -> web.StreamResponse | None:
    """Probes and scrapes: only anonymous GETs of these paths, so a bucket named "health" still works."""
    if request.method != "GET" or request.path not in _PROBES or not _is_anonymous(request):
        return None
    gw = request.app[GATEWAY_KEY]
    if request.path == "/health/live":
        return web.json_response({"status": "ok"})
    if request.path == "/health/ready":
        problem = await gw.readiness() if gw.readiness else None
        if problem:
            return web.json_response({"status": "not ready", "reason": problem}, status=503)
        return web.json_response({"status": "ready"})
    if request.path == "/metrics":
        body = request.app[METRICS_KEY].render()
        if gw.siblings is not None and not siblings.is_internal(request):
            body = merge([body, *await gw.siblings.metrics()])
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    return None


async def _dispatch(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    health = await _health(request)
    if health is not None:
        return health
    if gw.siblings is not None and request.path == siblings.USERS_CHANGED_PATH and siblings.is_internal(request):
        return await siblings.answer_users_changed(request, gw.users)
    rid = request[REQUEST_ID]
    host_bucket = _host_bucket(request.host, gw.domains)
    raw_path = request.rel_url.raw_path
    sib = gw.siblings
    if sib is not None and not sib.runs_admin and host_bucket is None and admin_api.is_admin_path(raw_path):
        request[FORWARDED] = True  # accounted for by the worker that answers it
        return await sib.forward_admin(request, admin_api.primary_unreachable)
    query = sigv4.parse_query(request.rel_url.raw_query_string)
    claimed = _claimed_access_key(request.headers.get("Authorization"), query)
    if claimed and not gw.users.known(claimed):
        await gw.users.ensure(claimed)  # a user created through another gateway a moment ago
    if sigv2.is_presigned_v2(query):
        resource = f"/{host_bucket}{raw_path}" if host_bucket else raw_path
        auth = sigv2.verify_presigned(request.method, resource, query, request.headers, gw.users.secret)
    else:
        auth = sigv4.verify(request.method, raw_path, query, request.headers, gw.users.secret)
    if host_bucket is None and admin_api.is_admin_path(raw_path):
        request[OPERATION], resp = await admin_api.dispatch(gw, request, auth.access_key)
        return resp
    # Only an authenticated request learns what is wrong with its key.
    bucket, key = split_path(raw_path, host_bucket)
    req = S3Request(request, rid, bucket, key, auth.access_key, request.query, auth)
    handler = _route(req)
    request[OPERATION] = handler.__name__
    return await handler(gw, req)


_MAX_ACCESS_KEY = 128  # longer claims are not worth an index read: verify() rejects them anyway


def _claimed_access_key(authorization: str | None, query: list[tuple[str, str]]) -> str:
    """The access key a request says it is signed with, or "" (verify() judges the claim and its form)."""
    claimed = ""
    if authorization is not None:
        _, found, rest = authorization.partition("Credential=")
        if found:
            claimed = rest.split("/", 1)[0].strip()
    else:
        for name, value in query:
            if name == "X-Amz-Credential":
                claimed = value.split("/", 1)[0]
                break
            if name == "AWSAccessKeyId":
                claimed = value
                break
    return claimed if len(claimed) <= _MAX_ACCESS_KEY and "," not in claimed else ""


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    rid = f"{_RID_PREFIX}{next(_rid_counter):010X}"
    request[REQUEST_ID] = rid
    started = time.monotonic()
    resp: web.StreamResponse | None = None
    gw = request.app[GATEWAY_KEY]
    gw.inflight += 1
    try:
        resp = await handler(request)
    except S3Error as err:
        resp = _error_response(request, err, rid)
    except web.HTTPException:
        raise
    except IndexUnavailable as exc:  # no metadata quorum now: a retryable 503, as S3 answers overload
        log.warning("request %s %s: index unavailable: %s", request.method, request.path, exc)
        resp = _error_response(request, S3Error("ServiceUnavailable"), rid)
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # Nothing went wrong here and nothing more can be sent: counted as 499, no traceback.
            log.debug("request %s %s: the client went away", request.method, request.path)
        else:
            log.exception("request %s %s failed", request.method, request.path)
            resp = _error_response(request, S3Error("InternalError"), rid)
    finally:
        gw.inflight -= 1
        if FORWARDED not in request and (OPERATION in request or resp is None or resp.status >= 400):
            _account(request, resp, time.monotonic() - started)
    return resp if resp is not None else web.Response(status=499)  # aiohttp finds the connection closed


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _account(request: web.Request, resp: web.StreamResponse | None, seconds: float) -> None:
    """Metrics and one JSON access-log line per S3 request (probes and scrapes are left out)."""
    status = resp.status if resp is not None else 499  # 499: the client went away mid-request
    sent = resp.body_length if resp is not None and resp.prepared else 0
    op = request.get(OPERATION, "unrouted")
    request.app[METRICS_KEY].observe(op, status, seconds, request.content_length or 0, sent)
    level = logging.WARNING if status >= 500 else logging.DEBUG  # TESSERA_LOG_LEVEL=debug shows every request
    if access_log.isEnabledFor(level):
        line = {
            "rid": request.get(REQUEST_ID, ""),
            "method": request.method,
            "path": request.rel_url.raw_path,
            "op": op,
            "status": status,
            "ms": round(seconds * 1000, 3),
            "bytes_in": request.content_length or 0,
            "bytes_out": sent,
            "peer": request.remote,
        }
        access_log.log(level, "%s", json.dumps(line))


def _error_response(request: web.Request, err: S3Error, rid: str) -> web.Response:
    if err.status == 304:
        return web.Response(status=304)
    body = b"" if request.method == "HEAD" else error_document(err, request.path, rid)
    return web.Response(status=err.status, body=body, content_type="application/xml")


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get(REQUEST_ID, "")
    response.headers["x-amz-request-id"] = rid
    response.headers["x-amz-id-2"] = rid
    response.headers["Server"] = "Tessera"


def make_app(gw: Gateway) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[GATEWAY_KEY] = gw
    app[METRICS_KEY] = GatewayMetrics(lambda: gw.maintenance)
    app.on_response_prepare.append(_stamp)

    async def users_refresh(app: web.Application) -> AsyncIterator[None]:
        await gw.users.start()
        yield
        await gw.users.close()

    app.cleanup_ctx.append(users_refresh)
    app.router.add_route("*", "/{tail:(?s:.*)}", _dispatch)  # (?s): keys may hold CR and LF
    return app
