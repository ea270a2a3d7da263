"""The admin API's answers: JSON documents, and its own errors as {"code", "message"} JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class AdminError(Exception):
    """An error of the API itself, answered as {"code", "message"} JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def json_ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)
