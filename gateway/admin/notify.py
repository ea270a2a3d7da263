"""The admin API's webhook targets for event notifications: list, add, remove (docs/notifications.md)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.admin.errors import AdminError
from gateway.admin.http import json_ok
from gateway.context import Gateway
from metadata.records import NotifyTarget

MAX_NAME = 64


def _target(t: NotifyTarget) -> dict[str, Any]:
    # The token is a secret: only whether there is one is shown.
    return {"name": t.name, "webhook": t.url, "auth_token": bool(t.auth_token), "created": t.created}


async def list_targets(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    targets = [_target(t) for t in await gw.index.list_notify_targets()]
    backlog = await gw.index.event_backlog()
    return json_ok({"targets": targets, "backlog": backlog})


async def add_target(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name, url = request.query.get("name", ""), request.query.get("webhook", "")
    ok_name = 0 < len(name) <= MAX_NAME and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    if not ok_name:
        raise AdminError(400, "InvalidArgument", f"a target name is 1-{MAX_NAME} of A-Z a-z 0-9 - _ ., not {name!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AdminError(400, "InvalidArgument", f"the webhook must be an http(s) URL, not {url!r}")
    rec = NotifyTarget(name, url, request.query.get("auth-token", ""), time.time())
    await gw.index.put_notify_target(rec)
    arn = f"arn:tessera:sqs::{name}"
    return json_ok({**_target(rec), "arn": arn})


async def remove_target(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    if not await gw.index.remove_notify_target(params["name"]):
        raise AdminError(404, "NoSuchTarget", f"no notification target named {params['name']!r}")
    return web.Response(status=204)
