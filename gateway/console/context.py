"""What every console handler works with: sessions, the upstream S3 listener, the metrics history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cluster.service import ErrorAnswer, request_key
from gateway.console.history import History
from gateway.console.sessions import Session, Sessions
from gateway.console.upstream import Upstream


@dataclass
class Console:
    sessions: Sessions
    upstream: Upstream
    history: History
    s3_port: int  # where share links point, on the host the browser reached the console by
    s3_scheme: str  # "http" or "https"
    secure: bool  # the console itself is served over HTTPS: its cookie is Secure


CONSOLE = web.AppKey("tessera.console", Console)
SESSION: Any = request_key("tessera.console.session", tuple)  # (Session, secret)


def console(request: web.Request) -> Console:
    return request.app[CONSOLE]


def signed_in(request: web.Request) -> Session:
    return request[SESSION][0]


def user(request: web.Request) -> tuple[str, str]:
    """(access key, secret) of the signed-in user, to sign the upstream requests with."""
    session, secret = request[SESSION]
    return session.access_key, secret


def required(request: web.Request, name: str, limit: int = 1024) -> str:
    value = request.query.get(name, "")
    if not value:
        raise ErrorAnswer(400, "InvalidArgument", f"give ?{name}=")
    if len(value.encode("utf-8", "surrogateescape")) > limit:
        raise ErrorAnswer(400, "InvalidArgument", f"{name} is longer than {limit} bytes")
    return value


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > 1 << 20:
        raise ErrorAnswer(413, "EntityTooLarge", "a JSON body is at most 1 MiB")
    try:
        doc = await request.json()
    except ValueError:
        raise ErrorAnswer(400, "MalformedJSON", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ErrorAnswer(400, "MalformedJSON", "the body is not a JSON object")
    try:  # JSON may spell lone UTF-16 surrogates ("\ud800"), which no name, key or tag can hold
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ErrorAnswer(400, "MalformedJSON", "the body holds text that is not UTF-8") from None
    return doc
