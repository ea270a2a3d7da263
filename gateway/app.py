"""The S3 HTTP front on the service skeleton (cluster/service): SigV4 as its authenticator, routing each
request to its handler, errors answered as S3 XML."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from cluster.service import (
    REQUEST_ID,
    SERVICE,
    Endpoint,
    Errors,
    Failure,
    ReadyCheck,
    exchange,
    exposition,
    make_service_app,
    request_key,
)
from cluster.service.access_log import AccessLog
from cluster.version import SERVER
from gateway import siblings
from gateway.accounts.authorize import AccessDenied
from gateway.admin import api as admin_api
from gateway.context import Gateway
from gateway.handlers import actions
from gateway.handlers import buckets as bucket_api
from gateway.handlers import cors as cors_api
from gateway.handlers import deletes as delete_api
from gateway.handlers import lifecycle as lifecycle_api
from gateway.handlers import listing as listing_api
from gateway.handlers import multipart as multipart_api
from gateway.handlers import notifications as notify_api
from gateway.handlers import object_lock as lock_api
from gateway.handlers import objects as object_api
from gateway.handlers import post_object as post_api
from gateway.handlers import quota as quota_api
from gateway.handlers import tagging as tagging_api
from gateway.handlers import versions as version_api
from gateway.handlers.attributes import get_object_attributes
from gateway.metrics import MaintenanceCollector, by_worker
from gateway.s3 import sigv2, sigv4
from gateway.s3.errors import S3Error
from gateway.s3.payload import STREAMING_PAYLOADS
from gateway.s3.request import S3Request, split_path
from gateway.s3.sigv4 import AuthContext
from gateway.s3.xml import error_document
from metadata.index import IndexFull, IndexUnavailable

log = logging.getLogger(__name__)
access_log = logging.getLogger("tessera.gateway.access")

Handler = Callable[[Gateway, S3Request], Awaitable[web.StreamResponse]]

# Subresources S3 has and we do not: answered 501 rather than misread as a plain request.
_BUCKET_UNSUPPORTED = frozenset(
    "accelerate analytics encryption intelligent-tiering inventory logging metrics "
    "replication requestPayment website".split()
)
_OBJECT_UNSUPPORTED = frozenset("restore select torrent".split())
_BUCKET_TAGGING: dict[str, Handler] = {
    "GET": tagging_api.get_bucket_tagging,
    "PUT": tagging_api.put_bucket_tagging,
    "DELETE": tagging_api.delete_bucket_tagging,
}
_OBJECT_TAGGING: dict[str, Handler] = {
    "GET": tagging_api.get_object_tagging,
    "PUT": tagging_api.put_object_tagging,
    "DELETE": tagging_api.delete_object_tagging,
}
_VERSIONING: dict[str, Handler] = {"GET": version_api.get_bucket_versioning, "PUT": version_api.put_bucket_versioning}
_NOTIFICATION: dict[str, Handler] = {"GET": notify_api.get_notification, "PUT": notify_api.put_notification}
GATEWAY_KEY = web.AppKey("gateway", Gateway)
# Request ids: unique per process start and cheap (uuid4 per request cost 5% of a small GET's CPU).
_RID_PREFIX = os.urandom(3).hex().upper()
_rid_counter = itertools.count(1)


def _new_rid_prefix() -> None:
    global _RID_PREFIX
    _RID_PREFIX = os.urandom(3).hex().upper()  # each `--workers` process its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_rid_prefix)


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
        if "tagging" in q:
            return _subresource(_BUCKET_TAGGING, method)
        if "versioning" in q:  # never a plain bucket request: a DELETE must not delete the bucket
            return _subresource(_VERSIONING, method)
        if "versions" in q:
            return _subresource({"GET": version_api.list_object_versions}, method)
        if "notification" in q:
            return _subresource(_NOTIFICATION, method)
        if "object-lock" in q:
            return _subresource(lock_api.CONFIGURATION, method)
        if "lifecycle" in q:
            return _subresource(lifecycle_api.CONFIGURATION, method)
        configured = actions.bucket_access_handler(method, q)
        if configured is not None:
            return configured
        if "cors" in q:
            return _subresource(cors_api.CONFIGURATION, method)
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
            return delete_api.delete_objects
        raise S3Error("NotImplemented" if method == "POST" else "MethodNotAllowed")
    unsupported = _OBJECT_UNSUPPORTED.intersection(q)
    if unsupported:
        raise S3Error("NotImplemented", f"Object {sorted(unsupported)[0]} is not implemented.")
    if "tagging" in q:
        return _subresource(_OBJECT_TAGGING, method)
    if "attributes" in q:
        return _subresource({"GET": get_object_attributes}, method)
    if "retention" in q:
        return _subresource(lock_api.RETENTION, method)
    if "legal-hold" in q:
        return _subresource(lock_api.LEGAL_HOLD, method)
    if "acl" in q:
        return actions.object_acl_handler(method)
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
        return multipart_api.abort_upload if "uploadId" in q else delete_api.delete_object
    if method == "POST":
        if "uploads" in q:
            return multipart_api.create_upload
        if "uploadId" in q:
            return multipart_api.complete_upload
        raise S3Error("NotImplemented", "This POST is not implemented: form uploads (POST object) go to the bucket.")
    raise S3Error("MethodNotAllowed")


def _subresource(handlers: dict[str, Handler], method: str) -> Handler:
    handler = handlers.get(method)
    if handler is None:
        raise S3Error("MethodNotAllowed")
    return handler


# Requests that reach their handler unsigned, which judges them (ACTIONS has "" for them).
_UNSIGNED: dict[str, Handler] = {"preflight": cors_api.preflight, "form": post_api.post_object}


def _host_bucket(host: str, domains: tuple[str, ...]) -> str | None:
    """The bucket of a virtual-hosted-style request (bucket.<domain>), if the Host names one."""
    name = host.rsplit(":", 1)[0].lower() if not host.endswith("]") else host
    for domain in domains:
        if name.endswith("." + domain):
            return name[: -len(domain) - 1]
    return None


def _is_anonymous(request: web.Request) -> bool:
    return not ({"X-Amz-Signature", "Signature"} & request.query.keys()) and "Authorization" not in request.headers


# Probes and scrapes: only anonymous GETs of these paths, so a bucket named "health" still works.
# MinIO's probe paths too: load balancers configured for MinIO ask those. Never refused as SlowDown.
_PROBES = {
    "/health/live": "live",
    "/health/ready": "ready",
    "/minio/health/live": "live",
    "/minio/health/ready": "ready",
    "/metrics": "metrics",
}


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What the authenticator found a request to be, for _dispatch."""

    probe: str = ""  # an anonymous probe or scrape: its operation
    forward: bool = False  # an admin request the primary worker answers (and authenticates)
    users_changed: bool = False  # a sibling worker's notice that users were added or removed
    auth: AuthContext | None = None  # who signed it (SigV4, or a presigned V2 URL)
    unsigned: str = ""  # "preflight" (CORS OPTIONS) or "form" (POST object): judged by their handlers
    host_bucket: str | None = None  # the bucket a virtual-hosted-style Host names


_VERDICT: Any = request_key("tessera.s3_verdict", _Verdict)
_CONTINUED: Any = request_key("tessera.continued", bool)  # 100 Continue was sent: the body was asked for


async def _authenticate(request: web.Request, endpoint: Endpoint) -> None:
    """The gateway's authenticator, plugged into the service skeleton: S3 signatures, not the cluster's."""
    gw = request.app[GATEWAY_KEY]
    probe = _PROBES.get(request.path) if request.method == "GET" else None
    anonymous = _is_anonymous(request)
    if probe is not None and anonymous:
        ex = exchange(request)
        ex.operation, ex.quiet = probe, True
        request[_VERDICT] = _Verdict(probe=probe)
        return
    if gw.siblings is not None and request.path == siblings.USERS_CHANGED_PATH and siblings.is_internal(request):
        request[_VERDICT] = _Verdict(users_changed=True)  # over the worker's own Unix socket: a sibling
        return
    expect = request.headers.get("Expect")
    if expect is not None and expect.lower() != "100-continue":
        raise S3Error("ExpectationFailed", "Only Expect: 100-continue is supported.", status=417)
    gw.admit()  # before the signature is checked or the body read
    host_bucket = _host_bucket(request.host, gw.domains)
    raw_path = request.rel_url.raw_path
    sib = gw.siblings
    if sib is not None and not sib.runs_admin and host_bucket is None and admin_api.is_admin_path(raw_path):
        exchange(request).counted = False  # accounted for by the worker that answers it
        request[_VERDICT] = _Verdict(forward=True)
        return
    form = request.method == "POST" and request.content_type == "multipart/form-data" and anonymous  # POST object
    if form or request.method == "OPTIONS":
        # Before the anonymous path: a preflight is judged by the bucket's CORS rules, a form by the signed
        # policy it carries (or, unsigned, by a bucket policy allowing anyone s3:PutObject), in their handlers.
        request[_VERDICT] = _Verdict(host_bucket=host_bucket, unsigned="form" if form else "preflight")
        return
    if anonymous:  # judged like any other request: allowed where a policy or ACL allows anyone
        if request.headers.get("x-amz-content-sha256", "") in STREAMING_PAYLOADS:
            # aws-chunked framing is decoded with the signature that seeds it; unsigned it would be stored.
            raise S3Error("InvalidRequest", "An aws-chunked body needs a signed request.")
        request[_VERDICT] = _Verdict(host_bucket=host_bucket)
        return
    query = sigv4.parse_query(request.rel_url.raw_query_string)
    claimed = sigv4.claimed_access_key(request.headers.get("Authorization"), query)
    if claimed and not gw.users.known(claimed):
        await gw.users.ensure(claimed)  # a user created through another gateway a moment ago
    if sigv2.is_presigned_v2(query):
        resource = f"/{host_bucket}{raw_path}" if host_bucket else raw_path
        auth = sigv2.verify_presigned(request.method, resource, query, request.headers, gw.users.secret)
    else:
        auth = sigv4.verify(request.method, raw_path, query, request.headers, gw.users.secret)
    request[_VERDICT] = _Verdict(auth=auth, host_bucket=host_bucket)
    await _ask_for_body(request)  # only now that the request is admitted and its signature holds


async def _ask_for_body(request: web.Request) -> None:
    """Answer Expect: 100-continue, once the request may go on."""
    if "Expect" in request.headers and request.version >= HttpVersion11 and not request.get(_CONTINUED):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started
        request[_CONTINUED] = True


async def _no_early_continue(request: web.Request) -> None:
    """aiohttp's default expect handler sends 100 Continue before any middleware: _authenticate does."""


async def _probe(request: web.Request, probe: str) -> web.StreamResponse:
    svc = request.app[SERVICE]
    if probe == "live":
        return await svc.live(request)
    if probe == "ready":
        return await svc.ready(request)
    body = svc.metrics.render()
    gw = request.app[GATEWAY_KEY]
    if gw.siblings is not None and not siblings.is_internal(request):
        body = by_worker({gw.siblings.number: body, **await gw.siblings.metrics()})
    return exposition(body)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    verdict: _Verdict = request[_VERDICT]
    if verdict.probe:
        return await _probe(request, verdict.probe)
    if verdict.forward:
        assert gw.siblings is not None
        return await gw.siblings.forward_admin(request, admin_api.primary_unreachable)
    if verdict.users_changed:
        assert gw.siblings is not None
        return await siblings.answer_users_changed(request, gw.users)
    auth = verdict.auth
    access_key = auth.access_key if auth is not None else ""  # "": anonymous
    raw_path = request.rel_url.raw_path
    ex = exchange(request)
    if verdict.host_bucket is None and not verdict.unsigned and admin_api.is_admin_path(raw_path):
        ex.operation, resp = await admin_api.dispatch(gw, request, access_key)
        return resp
    # Only an authenticated request learns what is wrong with its key: an anonymous one is refused.
    try:
        bucket, key = split_path(raw_path, verdict.host_bucket)
        req = S3Request(request, request[REQUEST_ID], bucket, key, access_key, request.query, auth)
        handler = _UNSIGNED[verdict.unsigned] if verdict.unsigned else _route(req)
    except S3Error:
        if auth is None:
            raise S3Error("AccessDenied") from None
        raise
    ex.operation = handler.__name__
    await actions.judge_request(gw, req, handler)
    if auth is None:
        await _ask_for_body(request)  # an anonymous request's body, once it is allowed
    return await handler(gw, req)


@web.middleware
async def _request_id(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Outside the skeleton's middleware: every answer, errors included, carries the request's id."""
    request[REQUEST_ID] = f"{_RID_PREFIX}{next(_rid_counter):010X}"
    gw = request.app[GATEWAY_KEY]
    window = gw.limits.body_window
    length = request.content_length
    body = min(length, window) if length is not None else window if request.body_exists else 0
    gw.inflight += 1
    gw.body_bytes += body
    try:
        return await handler(request)
    finally:
        gw.inflight -= 1
        gw.body_bytes -= body
        quota_api.release(gw, request)


# Errors aiohttp raises itself (a body over client_max_size, say), as the S3 codes closest to them.
_HTTP_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    405: "MethodNotAllowed",
    411: "MissingContentLength",
    413: "EntityTooLarge",
    417: "ExpectationFailed",
}


def _classify(exc: BaseException) -> Failure | None:
    if isinstance(exc, S3Error):
        err = exc
    elif isinstance(exc, AccessDenied):  # from accounts.authorize, called by a handler itself
        err = S3Error("AccessDenied")
    elif isinstance(exc, IndexUnavailable):  # no metadata quorum now: a retryable 503, as S3 answers overload
        log.warning("index unavailable: %s", exc)
        err = S3Error("ServiceUnavailable")
    elif isinstance(exc, IndexFull):  # S3 has no InsufficientStorage: SlowDown tells clients to back off
        log.warning("index full: %s", exc)
        err = S3Error("SlowDown")
    elif isinstance(exc, web.HTTPException) and exc.status >= 400:
        err = S3Error(_HTTP_CODES.get(exc.status, "InvalidRequest"), exc.reason, status=exc.status)
    else:
        return None
    return Failure(err.status, err.code, err.message, exc=err)


class _S3Errors(Errors):
    """S3 XML error documents instead of the skeleton's JSON."""

    def protocol(self, exc: HttpProcessingError) -> Failure:
        """A request the HTTP parser refused, with AWS's code where AWS has one."""
        failure = super().protocol(exc)
        message = failure.message.split("\n", 1)[0][:200]  # aiohttp quotes the offending line below
        if isinstance(exc, LineTooLong):
            err = S3Error(
                "RequestHeaderSectionTooLarge", "Your request header section exceeds the maximum allowed size."
            )
        elif failure.status == 400 and ("Content-Length" in failure.message or "Transfer-Encoding" in failure.message):
            err = S3Error("InvalidArgument", message)
        else:
            err = S3Error(failure.kind, message, status=failure.status)
        return Failure(err.status, err.code, err.message, exc=err)

    def render(self, request: web.Request, failure: Failure) -> web.StreamResponse:
        err = failure.exc if isinstance(failure.exc, S3Error) else S3Error(failure.kind, status=failure.status)
        response = _error_response(request, err, request.get(REQUEST_ID, ""))
        if request.headers.get("Expect", "").lower() == "100-continue" and not request.get(_CONTINUED):
            # Refused without asking for the body: the connection is not reused. botocore keeps the status
            # of an answer that came instead of 100 Continue and, on the connection's next request, reports
            # it in place of the real answer (boto/botocore#3755); a client that held its body back cannot
            # go on either.
            response.force_close()
        return response


_ERRORS = _S3Errors(forbidden="AccessDenied", internal="InternalError", http_kinds=_HTTP_CODES, classify=_classify)


def _error_response(request: web.Request, err: S3Error, rid: str) -> web.Response:
    if err.status == 304:
        return web.Response(status=304)
    body = b"" if request.method == "HEAD" else error_document(err, request.path, rid)
    response = web.Response(status=err.status, body=body, content_type="application/xml", headers=err.headers)
    if err.code == "SlowDown":
        response.headers["Retry-After"] = "1"
    return response


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get(REQUEST_ID, "")
    response.headers["x-amz-request-id"] = rid
    response.headers["x-amz-id-2"] = rid
    response.headers["Server"] = SERVER


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Access-Control-* headers on an answer to an origin the bucket's CORS rules allow, errors included."""
    if "Origin" not in request.headers or request.method == "OPTIONS" or response.status == 503:
        return
    verdict: _Verdict | None = request.get(_VERDICT)
    if verdict is not None and (verdict.probe or verdict.forward or verdict.users_changed):
        return
    gw = request.app[GATEWAY_KEY]
    try:
        host_bucket = verdict.host_bucket if verdict is not None else _host_bucket(request.host, gw.domains)
        bucket, _ = split_path(request.rel_url.raw_path, host_bucket)
    except S3Error:
        return
    await cors_api.add_headers(gw, bucket, request, response)


def _readiness(gw: Gateway) -> ReadyCheck:
    async def check() -> tuple[bool, dict[str, Any]]:
        problem = await gw.readiness() if gw.readiness else None
        if problem:
            return False, {"status": "not ready", "reason": problem}
        return True, {"status": "ready"}

    return check


async def _flush_access_log(app: web.Application) -> None:
    app[SERVICE].flush_access_log()


def make_app(gw: Gateway) -> web.Application:
    app = make_service_app(
        namespace="tessera_s3",
        duration_name="tessera_s3_request_seconds",
        log=log,
        access_log=access_log,  # 5xx also as warnings here
        access_writer=AccessLog.from_env(),  # one JSON line per request (TESSERA_ACCESS_LOG)
        errors=_ERRORS,
        authenticate=_authenticate,
        ready=_readiness(gw),
        probes=False,  # every path may be a bucket's: _authenticate tells probes apart
        middlewares=[_request_id],
    )
    app[GATEWAY_KEY] = gw
    app[SERVICE].registry.register(MaintenanceCollector(lambda: gw.maintenance))
    app.on_response_prepare.append(_stamp)
    app.on_response_prepare.append(_cors_headers)

    async def users_refresh(app: web.Application) -> AsyncIterator[None]:
        await gw.users.start()
        yield
        await gw.users.close()

    app.cleanup_ctx.append(users_refresh)
    app.on_cleanup.append(_flush_access_log)
    # (?s): keys may hold CR, LF
    app[SERVICE].route("*", "/{tail:(?s:.*)}", _dispatch, operation="unrouted", expect_handler=_no_early_continue)
    return app
