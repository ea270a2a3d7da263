"""The admin API (docs/admin-api.md): JSON over HTTP under /_tessera/admin/v1/, for the root only.

Add an endpoint: write `async def handler(gw, request, params) -> web.StreamResponse` (params holds the
{placeholders} of its path pattern, percent-decoded) and add it to ROUTES at the bottom of this module.
Handlers live by meaning (ops: the data; nodes: membership and rebalance; users: users; quotas: quotas
and usage; notify: webhook targets) and raise errors.AdminError for the API's own JSON errors.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from gateway.admin import nodes as admin_nodes
from gateway.admin import notify as admin_notify
from gateway.admin import ops as admin_ops
from gateway.admin import quotas as admin_quotas
from gateway.admin import users as admin_users
from gateway.admin.errors import AdminError
from gateway.admin.http import json_error
from gateway.context import Gateway
from gateway.s3.errors import S3Error
from metadata.index import IndexUnavailable

log = logging.getLogger(__name__)

PREFIX = "/_tessera/admin/v1/"

Handler = Callable[[Gateway, web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


def is_admin_path(raw_path: str) -> bool:
    return raw_path.startswith(PREFIX) or raw_path == PREFIX.rstrip("/")


async def dispatch(gw: Gateway, request: web.Request, access_key: str) -> tuple[str, web.StreamResponse]:
    """Answer an authenticated admin request; returns the handler's name (for metrics) and the response."""
    if not gw.is_root(access_key):
        raise S3Error("AccessDenied")  # an S3 XML error, as for any other authorization failure
    handler, params, allowed = _match(request.method, request.rel_url.raw_path[len(PREFIX) :])
    if handler is None:
        if allowed:
            resp = json_error(405, "MethodNotAllowed", f"{request.method} is not allowed here")
            resp.headers["Allow"] = ", ".join(sorted(allowed))
            return "admin_method_not_allowed", resp
        return "admin_not_found", json_error(404, "NotFound", f"no admin endpoint at {request.rel_url.raw_path}")
    name = "admin_" + handler.__name__
    try:
        return name, await handler(gw, request, params)
    except AdminError as err:
        return name, json_error(err.status, err.code, err.message)
    except IndexUnavailable as exc:
        log.warning("admin %s %s: index unavailable: %s", request.method, request.path, exc)
        return name, json_error(503, "ServiceUnavailable", "the metadata index is unavailable; try again")


def primary_unreachable() -> web.Response:
    """The answer of a `--workers` sibling that cannot forward an admin request to the worker running admin jobs."""
    return json_error(503, "ServiceUnavailable", "the server's admin worker is restarting; try again")


def _match(method: str, rel_path: str) -> tuple[Handler | None, dict[str, str], set[str]]:
    """The handler for method and path (relative to PREFIX), its params, and the methods the path allows."""
    segments = rel_path.strip("/").split("/") if rel_path.strip("/") else []
    allowed: set[str] = set()
    for (route_method, pattern), handler in ROUTES.items():
        params = _match_pattern(pattern, segments)
        if params is None:
            continue
        if route_method == method:
            return handler, params, allowed
        allowed.add(route_method)
    return None, {}, allowed


def _match_pattern(pattern: str, segments: list[str]) -> dict[str, str] | None:
    parts = pattern.split("/")
    if len(parts) != len(segments):
        return None
    params: dict[str, str] = {}
    for part, segment in zip(parts, segments, strict=True):
        if part.startswith("{") and part.endswith("}"):
            if not segment:
                return None
            params[part[1:-1]] = unquote(segment)
        elif part != segment:
            return None
    return params


# (method, path pattern relative to PREFIX) -> handler. "{name}" matches one non-empty path segment.
ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "status"): admin_ops.status,
    ("GET", "inspect"): admin_ops.inspect,
    ("POST", "repair"): admin_ops.start_repair,
    ("POST", "scrub"): admin_ops.start_scrub,
    ("POST", "nodes/{node}/drain"): admin_ops.drain,
    ("POST", "lifecycle/run"): admin_ops.run_lifecycle,
    ("GET", "nodes"): admin_nodes.list_nodes,
    ("DELETE", "nodes/{node}"): admin_nodes.remove_node,
    ("POST", "rebalance"): admin_nodes.rebalance,
    ("GET", "jobs/{id}"): admin_ops.job,
    ("GET", "users"): admin_users.list_users,
    ("POST", "users"): admin_users.add_user,
    ("DELETE", "users/{name}"): admin_users.remove_user,
    ("PUT", "users/{name}/policy"): admin_users.set_policy,
    ("GET", "users/{name}/policy"): admin_users.show_policy,
    ("GET", "users/{name}"): admin_quotas.user_info,
    ("PUT", "users/{name}/quota"): admin_quotas.set_user_quota,
    ("DELETE", "users/{name}/quota"): admin_quotas.clear_user_quota,
    ("GET", "buckets/{bucket}"): admin_quotas.bucket_info,
    ("PUT", "buckets/{bucket}/quota"): admin_quotas.set_bucket_quota,
    ("DELETE", "buckets/{bucket}/quota"): admin_quotas.clear_bucket_quota,
    ("GET", "notify"): admin_notify.list_targets,
    ("POST", "notify"): admin_notify.add_target,
    ("DELETE", "notify/{name}"): admin_notify.remove_target,
}
