"""The admin API's user endpoints: list, add (answers the new secret, once), remove, and user policies."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.accounts import policy as policies
from gateway.accounts.conditions import PolicyError
from gateway.accounts.users import InvalidUserName
from gateway.admin.errors import AdminError
from gateway.admin.http import json_ok
from gateway.context import Gateway
from metadata.index import UserExists
from metadata.records import UserRecord

_MAX_POLICY_BODY = 64 * 1024


def _policy_name(text: str) -> str:
    """A stored policy as listings show it: a built-in's name, or "custom"."""
    return next((name for name, doc in policies.BUILTIN.items() if doc == text), "custom")


def _user(rec: UserRecord, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rec.name, "access_key": rec.access_key}
    if with_secret:
        out["secret_key"] = rec.secret_key
    out["created"] = rec.created
    out["policy"] = _policy_name(rec.policy)
    return out


async def _requested_policy(request: web.Request) -> str | None:
    """The policy a request gives: ?policy=readonly|readwrite, or a JSON document as the body; None if
    neither. Checked here (400 MalformedPolicy) so that nothing is stored when it does not parse."""
    builtin = request.query.get("policy")
    body = await request.content.read(_MAX_POLICY_BODY + 1)
    if len(body) > _MAX_POLICY_BODY:
        raise AdminError(413, "PolicyTooLarge", f"a policy is at most {_MAX_POLICY_BODY} bytes")
    if builtin is not None and body.strip():
        raise AdminError(400, "InvalidArgument", "give either ?policy=NAME or a policy document, not both")
    if builtin is not None:
        if builtin not in policies.BUILTIN:
            names = ", ".join(sorted(policies.BUILTIN))
            raise AdminError(400, "InvalidArgument", f"no built-in policy {builtin!r} (there are: {names})")
        return policies.BUILTIN[builtin]
    if not body.strip():
        return None
    try:
        text = body.decode()
        policies.parse(text)
    except UnicodeDecodeError:
        raise AdminError(400, "MalformedPolicy", "a policy is UTF-8 JSON") from None
    except (PolicyError, NotImplementedError) as exc:
        raise AdminError(400, "MalformedPolicy", str(exc)) from None
    return text


async def list_users(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return json_ok({"users": [_user(u) for u in await gw.users.list()]})


async def add_user(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = request.query.get("name")
    if name is None:
        raise AdminError(400, "InvalidArgument", "the name query parameter is required")
    policy = await _requested_policy(request)
    try:
        rec = await gw.users.add(name, policy or "")
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


def _policy_doc(rec: UserRecord) -> dict[str, Any]:
    return {"name": rec.name, "policy": _policy_name(rec.policy), "document": rec.policy or None}


async def set_policy(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    policy = await _requested_policy(request)
    if policy is None:
        raise AdminError(400, "InvalidArgument", "give ?policy=NAME or a policy document as the body")
    rec = await gw.users.set_policy(params["name"], policy)
    if rec is None:
        raise AdminError(404, "NoSuchUser", f"no user named {params['name']!r}")
    if gw.siblings is not None:  # every worker reads the user afresh before the answer: a right removed is gone
        await gw.siblings.users_changed(removed=[rec.access_key], added=[rec.access_key])
    return json_ok(_policy_doc(rec))


async def show_policy(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    rec = next((u for u in await gw.users.list() if u.name == params["name"]), None)
    if rec is None:
        raise AdminError(404, "NoSuchUser", f"no user named {params['name']!r}")
    return json_ok(_policy_doc(rec))
