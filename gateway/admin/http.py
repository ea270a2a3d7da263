"""The admin API's answers: JSON documents, and its own errors as {"code", "message"} JSON (see errors.AdminError)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def json_ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)
