"""The console's cluster and user endpoints: admin API requests signed as the signed-in user (so only the
root gets answers, exactly as with `tessera admin`), and the in-memory metrics history."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cluster.service import ErrorAnswer
from gateway.console.context import console, read_json, required, signed_in, user
from gateway.console.upstream import admin_path
from gateway.s3.signer import encode_segment


async def admin_call(
    request: web.Request, method: str, rel: str, query: list[tuple[str, str]] | None = None, data: bytes | None = None
) -> Any:
    """An admin API request as the signed-in user; its JSON answer."""
    path = admin_path(rel)
    _, _, body = await console(request).upstream.call(user(request), method, path, query or [], data=data)
    try:
        return json.loads(body) if body else {}
    except ValueError:
        raise ErrorAnswer(502, "InvalidResponse", "the admin API answered with malformed JSON") from None


def _answer(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status)


async def whoami(request: web.Request) -> web.StreamResponse:
    session = signed_in(request)
    return _answer(
        {"access_key": session.access_key, "root": session.root, "csrf": session.csrf, "expires": session.expires}
    )


async def status(request: web.Request) -> web.StreamResponse:
    return _answer(await admin_call(request, "GET", "status"))


async def inspect(request: web.Request) -> web.StreamResponse:
    bucket, key = required(request, "bucket", 255), required(request, "key")
    return _answer(await admin_call(request, "GET", "inspect", [("bucket", bucket), ("key", key)]))


async def start_repair(request: web.Request) -> web.StreamResponse:
    return _answer(await admin_call(request, "POST", "repair"), 202)


async def start_scrub(request: web.Request) -> web.StreamResponse:
    return _answer(await admin_call(request, "POST", "scrub"), 202)


async def drain(request: web.Request) -> web.StreamResponse:
    node = request.match_info["node"]
    return _answer(await admin_call(request, "POST", f"nodes/{encode_segment(node)}/drain"), 202)


async def job(request: web.Request) -> web.StreamResponse:
    return _answer(await admin_call(request, "GET", f"jobs/{encode_segment(request.match_info['job'])}"))


async def list_users(request: web.Request) -> web.StreamResponse:
    return _answer(await admin_call(request, "GET", "users"))


async def add_user(request: web.Request) -> web.StreamResponse:
    name = (await read_json(request)).get("name")
    if not isinstance(name, str) or not name:
        raise ErrorAnswer(400, "InvalidArgument", "give the user a name")
    return _answer(await admin_call(request, "POST", "users", [("name", name)]), 201)


async def remove_user(request: web.Request) -> web.StreamResponse:
    return _answer(await admin_call(request, "DELETE", f"users/{encode_segment(request.match_info['name'])}"))


async def metrics(request: web.Request) -> web.StreamResponse:
    """The charts' points. Only the root sees them: they describe every user's traffic."""
    if not signed_in(request).root:
        raise ErrorAnswer(403, "AccessDenied", "Access Denied")
    return _answer(console(request).history.doc())
