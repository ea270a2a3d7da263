"""Who may do what: a user's policy (through the admin API, for the root) and a bucket's policy (through S3's
?policy)."""

from __future__ import annotations

import json

from aiohttp import web

from cluster.service import ErrorAnswer
from gateway.console.cluster_api import admin_call
from gateway.console.context import console, read_json, user
from gateway.console.upstream import object_path
from gateway.s3.signer import encode_segment

MAX_POLICY = 20 << 10  # bytes of a policy document, as S3 allows a bucket policy


def _document(doc: dict[str, object]) -> bytes:
    """The policy document of a request: JSON text, checked to parse (the server judges the rest)."""
    text = doc.get("document")
    if not isinstance(text, str) or len(text.encode()) > MAX_POLICY:
        raise ErrorAnswer(400, "MalformedPolicy", f"give the policy as JSON text of at most {MAX_POLICY} bytes")
    try:
        json.loads(text)
    except ValueError as exc:
        raise ErrorAnswer(400, "MalformedPolicy", f"the policy is not JSON: {exc}") from None
    return text.encode()


async def get_user_policy(request: web.Request) -> web.StreamResponse:
    rel = f"users/{encode_segment(request.match_info['name'])}/policy"
    return web.json_response(await admin_call(request, "GET", rel))


async def put_user_policy(request: web.Request) -> web.StreamResponse:
    """{"policy": a built-in policy's name} or {"document": a policy's JSON text}."""
    doc = await read_json(request)
    rel = f"users/{encode_segment(request.match_info['name'])}/policy"
    name = doc.get("policy")
    if isinstance(name, str) and name:
        return web.json_response(await admin_call(request, "PUT", rel, [("policy", name)]))
    return web.json_response(await admin_call(request, "PUT", rel, data=_document(doc)))


async def get_bucket_policy(request: web.Request) -> web.StreamResponse:
    path = object_path(request.match_info["bucket"])
    try:
        _, _, body = await console(request).upstream.call(user(request), "GET", path, [("policy", "")])
    except ErrorAnswer as err:
        if err.failure.kind == "NoSuchBucketPolicy":
            return web.json_response({"document": ""})
        raise
    return web.json_response({"document": body.decode("utf-8", "replace")})


async def put_bucket_policy(request: web.Request) -> web.StreamResponse:
    """{"document": JSON text} sets the bucket's policy; an empty document removes it."""
    doc = await read_json(request)
    c, who, path = console(request), user(request), object_path(request.match_info["bucket"])
    if doc.get("document") in ("", None):
        await c.upstream.call(who, "DELETE", path, [("policy", "")])
        return web.json_response({"document": ""})
    body = _document(doc)
    await c.upstream.call(who, "PUT", path, [("policy", "")], headers={"Content-Type": "application/json"}, data=body)
    return web.json_response({"document": body.decode()})
