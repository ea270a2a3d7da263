"""The admin API's user endpoints: list, add (answers the new secret, once), remove."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.accounts.users import InvalidUserName
from gateway.admin.errors import AdminError
from gateway.admin.http import json_ok
from gateway.context import Gateway
from metadata.index import UserExists
from metadata.records import UserRecord


def _user(rec: UserRecord, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rec.name, "access_key": rec.access_key}
    if with_secret:
        out["secret_key"] = rec.secret_key
    out["created"] = rec.created
    return out


async def list_users(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return json_ok({"users": [_user(u) for u in await gw.users.list()]})


async def add_user(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = request.query.get("name")
    if name is None:
        raise AdminError(400, "InvalidArgument", "the name query parameter is required")
    try:
        rec = await gw.users.add(name)
    except InvalidUserName as exc:
        raise AdminError(400, "InvalidArgument", str(exc)) from None
    except UserExists:
        raise AdminError(409, "UserExists", f"a user named {name!r} exists") from None
    if gw.siblings is not None:  # every worker of this server knows the user before the answer
        await gw.siblings.users_changed(added=[rec.access_key])
    return json_ok(_user(rec, with_secret=True))


async def remove_user(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    rec = await gw.users.remove(params["name"])
    if rec is None:
        raise AdminError(404, "NoSuchUser", f"no user named {params['name']!r}")
    if gw.siblings is not None:  # the keys stop working on every worker of this server before the answer
        await gw.siblings.users_changed(removed=[rec.access_key])
    return web.Response(status=204)
