"""The console's HTTP app on the service skeleton: static assets and sign-in open, every /api/ route
authenticated by its session cookie, every change guarded by the session's CSRF token and its Origin."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from aiohttp import web

from cluster.service import SERVICE, Endpoint, ErrorAnswer, Errors, Failure, make_service_app
from gateway.accounts.users import UserDirectory
from gateway.console import cluster_api, objects_api, policies_api, tags_api, versions_api
from gateway.console.context import CONSOLE, SESSION, Console, read_json
from gateway.console.history import History
from gateway.console.sessions import DEFAULT_TTL, Sessions, SignInRefused, TooManyAttempts
from gateway.console.upstream import Upstream
from metadata.index import IndexUnavailable

log = logging.getLogger(__name__)
access_log = logging.getLogger("tessera.console.access")

COOKIE = "tessera_console"
CSRF_HEADER = "X-CSRF-Token"
STATIC = Path(str(resources.files("gateway.console") / "static"))
_SAFE = frozenset({"GET", "HEAD"})
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _classify(exc: BaseException) -> Failure | None:
    if isinstance(exc, IndexUnavailable):
        return Failure(503, "ServiceUnavailable", "the metadata index is unavailable; try again", exc=exc)
    return None


_ERRORS = Errors(
    forbidden="AccessDenied",
    internal="InternalError",
    http_kinds={400: "BadRequest", 401: "SignInRequired", 403: "AccessDenied", 404: "NotFound"}
    | {405: "MethodNotAllowed"},
    classify=_classify,
)


def _same_origin(request: web.Request) -> bool:
    """A change comes from the console's own pages: a browser sends Origin with every cross-site request."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or a same-origin GET-like request; the CSRF token still has to match
    # The host only: behind a proxy that ends TLS the page is https and this request http.
    return origin.partition("://")[2] == request.host


async def _authenticate(request: web.Request, endpoint: Endpoint) -> None:
    c = request.app[CONSOLE]
    found = c.sessions.find(request.cookies.get(COOKIE, ""))
    if found is None:
        raise ErrorAnswer(401, "SignInRequired", "sign in first (or again: the session ended)")
    if request.method not in _SAFE:
        token = request.headers.get(CSRF_HEADER, "")
        given = token.encode("utf-8", "surrogateescape")  # whatever bytes came: never an error of ours
        if not _same_origin(request) or not hmac.compare_digest(given, found[0].csrf.encode()):
            raise ErrorAnswer(403, "InvalidCSRFToken", "this change did not come from the console's own page")
    request[SESSION] = found


async def sign_in(request: web.Request) -> web.StreamResponse:
    c = request.app[CONSOLE]
    if not _same_origin(request) or request.content_type != "application/json":
        raise ErrorAnswer(403, "InvalidCSRFToken", "sign in from the console's own page")
    doc = await read_json(request)
    access_key, secret_key = doc.get("access_key"), doc.get("secret_key")
    if not isinstance(access_key, str) or not isinstance(secret_key, str) or not access_key or not secret_key:
        raise ErrorAnswer(400, "InvalidArgument", "give an access key and a secret key")
    try:
        session = await c.sessions.sign_in(access_key.strip(), secret_key.strip(), request.remote or "")
    except TooManyAttempts as exc:
        err = ErrorAnswer(429, "TooManyAttempts", f"too many sign-in attempts; wait {exc.retry_after:.0f} s")
        raise err from None
    except SignInRefused as exc:
        raise ErrorAnswer(403, "SignInRefused", str(exc)) from None
    resp = web.json_response({"access_key": session.access_key, "root": session.root, "csrf": session.csrf})
    resp.set_cookie(
        COOKIE,
        session.sid,
        max_age=int(c.sessions.ttl),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=c.secure,
    )
    return resp


async def sign_out(request: web.Request) -> web.StreamResponse:
    request.app[CONSOLE].sessions.end(request.cookies.get(COOKIE, ""))
    resp = web.json_response({})
    resp.del_cookie(COOKIE, path="/")
    return resp


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of the package's static/ directory by its path there, read once at start: nothing else
    can be served, however a path is spelt."""
    found = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            found[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), _TYPES[path.suffix])
    return found


ASSETS = web.AppKey("tessera.console.assets", dict)


async def page(request: web.Request) -> web.StreamResponse:
    return _file(request, "index.html")


async def asset(request: web.Request) -> web.StreamResponse:
    return _file(request, request.match_info["path"])


def _file(request: web.Request, name: str) -> web.Response:
    found = request.app[ASSETS].get(name)
    if found is None:
        raise ErrorAnswer(404, "NotFound", "no such file")
    resp = web.Response(body=found[0], content_type=found[1])
    resp.headers["Cache-Control"] = "no-cache"
    return resp


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    if request.path.startswith("/api/"):
        h["Cache-Control"] = "no-store"


def make_console_app(
    users: UserDirectory,
    upstream: Upstream,
    history: History,
    *,
    s3_port: int,
    s3_scheme: str,
    secure: bool,
    ttl: float = DEFAULT_TTL,
) -> web.Application:
    app = make_service_app(
        namespace="tessera_console",
        log=log,
        access_log=access_log,
        level=logging.DEBUG,
        errors=_ERRORS,
        authenticate=_authenticate,
        client_max_size=1 << 20,  # JSON bodies; uploads are streamed, never read whole
    )
    app[ASSETS] = load_assets()
    app[CONSOLE] = Console(Sessions(users, ttl), upstream, history, s3_port, s3_scheme, secure)
    app.on_response_prepare.append(_headers)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        history.worker.start()
        yield
        await history.worker.stop()
        await upstream.close()

    app.cleanup_ctx.append(lifetime)
    return _routes(app)


def _routes(app: web.Application) -> web.Application:
    svc = app[SERVICE]
    open_routes = [
        ("GET", "/", page, "page"),
        ("GET", "/static/{path:.+}", asset, "asset"),
        ("POST", "/api/session", sign_in, "sign_in"),
        ("DELETE", "/api/session", sign_out, "sign_out"),
    ]
    for method, path, handler, name in open_routes:
        svc.route(method, path, handler, operation=name, open=True)
    o, k = objects_api, cluster_api
    routes = [
        ("GET", "/api/session", k.whoami),
        ("GET", "/api/buckets", o.list_buckets),
        ("POST", "/api/buckets", o.create_bucket),
        ("DELETE", "/api/buckets/{bucket}", o.delete_bucket),
        ("GET", "/api/buckets/{bucket}/objects", o.list_objects),
        ("GET", "/api/buckets/{bucket}/object", o.object_details),
        ("PUT", "/api/buckets/{bucket}/object", o.put_object),
        ("DELETE", "/api/buckets/{bucket}/object", o.delete_object),
        ("GET", "/api/buckets/{bucket}/download", o.download),
        ("POST", "/api/buckets/{bucket}/delete", o.delete_many),
        ("POST", "/api/buckets/{bucket}/share", o.share),
        ("POST", "/api/buckets/{bucket}/uploads", o.create_upload),
        ("PUT", "/api/buckets/{bucket}/uploads/{upload}", o.upload_part),
        ("POST", "/api/buckets/{bucket}/uploads/{upload}", o.complete_upload),
        ("DELETE", "/api/buckets/{bucket}/uploads/{upload}", o.abort_upload),
        ("GET", "/api/buckets/{bucket}/tags", tags_api.get_tags),
        ("PUT", "/api/buckets/{bucket}/tags", tags_api.put_tags),
        ("GET", "/api/buckets/{bucket}/versioning", versions_api.get_versioning),
        ("PUT", "/api/buckets/{bucket}/versioning", versions_api.put_versioning),
        ("GET", "/api/buckets/{bucket}/versions", versions_api.list_versions),
        ("GET", "/api/buckets/{bucket}/object-lock", versions_api.get_object_lock),
        ("PUT", "/api/buckets/{bucket}/legal-hold", versions_api.put_legal_hold),
        ("GET", "/api/buckets/{bucket}/policy", policies_api.get_bucket_policy),
        ("PUT", "/api/buckets/{bucket}/policy", policies_api.put_bucket_policy),
        ("GET", "/api/cluster", k.status),
        ("GET", "/api/inspect", k.inspect),
        ("POST", "/api/cluster/repair", k.start_repair),
        ("POST", "/api/cluster/scrub", k.start_scrub),
        ("POST", "/api/cluster/nodes/{node}/drain", k.drain),
        ("GET", "/api/cluster/jobs/{job}", k.job),
        ("GET", "/api/metrics", k.metrics),
        ("GET", "/api/users", k.list_users),
        ("POST", "/api/users", k.add_user),
        ("DELETE", "/api/users/{name}", k.remove_user),
        ("GET", "/api/users/{name}/policy", policies_api.get_user_policy),
        ("PUT", "/api/users/{name}/policy", policies_api.put_user_policy),
    ]
    for method, path, handler in routes:
        svc.route(method, path, handler, operation="console_" + handler.__name__)
    return app
