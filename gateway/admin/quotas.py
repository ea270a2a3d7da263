"""The admin API's quota endpoints: a bucket's or a user's quota and usage (docs/quotas.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.accounts.quota import forget_users, owner_usage
from gateway.admin.errors import AdminError
from gateway.admin.http import json_ok
from gateway.context import Gateway
from gateway.s3.numbers import decimal
from metadata.index import NoSuchBucket
from metadata.records import Usage


def _usage(u: Usage) -> dict[str, int]:
    return {"bytes": u.bytes, "objects": u.objects}


def _quota(max_size: int, max_objects: int) -> dict[str, int]:
    return {"max_size": max_size, "max_objects": max_objects}


def _limits(request: web.Request) -> tuple[int, int]:
    """max-size and max-objects from the query (absent: 0, no limit); at least one is required."""
    values = []
    for name in ("max-size", "max-objects"):
        raw = request.query.get(name)
        value = 0 if raw is None else decimal(raw)
        if value is None:
            raise AdminError(400, "InvalidArgument", f"{name} must be a whole number of bytes/objects, not {raw!r}")
        values.append(value)
    if "max-size" not in request.query and "max-objects" not in request.query:
        raise AdminError(400, "InvalidArgument", "give max-size, max-objects or both")
    return values[0], values[1]


async def bucket_info(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = params["bucket"]
    rec = await gw.index.get_bucket(name)
    if rec is None:
        raise AdminError(404, "NoSuchBucket", f"no bucket named {name!r}")
    try:
        usage = await gw.index.bucket_usage(name)
    except NoSuchBucket:
        raise AdminError(404, "NoSuchBucket", f"no bucket named {name!r}") from None
    doc: dict[str, Any] = {
        "name": rec.name,
        "owner": rec.owner,
        "created": rec.created,
        "versioning": rec.versioning or "Off",
        "quota": _quota(rec.quota_size, rec.quota_objects),
        "usage": _usage(usage),
        "notifications": bool(rec.notifications),
    }
    return json_ok(doc)


async def _set_bucket(gw: Gateway, name: str, max_size: int, max_objects: int) -> web.StreamResponse:
    try:
        await gw.index.set_bucket_quota(name, max_size, max_objects)
    except NoSuchBucket:
        raise AdminError(404, "NoSuchBucket", f"no bucket named {name!r}") from None
    return json_ok({"bucket": name, "quota": _quota(max_size, max_objects)})


async def set_bucket_quota(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return await _set_bucket(gw, params["bucket"], *_limits(request))


async def clear_bucket_quota(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return await _set_bucket(gw, params["bucket"], 0, 0)


async def _set_user(gw: Gateway, name: str, max_size: int, max_objects: int) -> web.StreamResponse:
    rec = await gw.index.set_user_quota(name, max_size, max_objects)
    if rec is None:
        raise AdminError(404, "NoSuchUser", f"no user named {name!r}")
    forget_users(gw.index)
    return json_ok({"user": name, "quota": _quota(max_size, max_objects)})


async def set_user_quota(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return await _set_user(gw, params["name"], *_limits(request))


async def clear_user_quota(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return await _set_user(gw, params["name"], 0, 0)


async def user_info(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    rec = next((u for u in await gw.index.list_users() if u.name == name), None)
    if rec is None:
        raise AdminError(404, "NoSuchUser", f"no user named {name!r}")
    usage = await owner_usage(gw.index, rec.access_key)
    doc = {"name": rec.name, "access_key": rec.access_key, "created": rec.created}
    return json_ok({**doc, "quota": _quota(rec.quota_size, rec.quota_objects), "usage": _usage(usage)})
