"""The other worker processes of one `tessera server --workers N`, as seen from one of them.

Each worker serves its app on the shared TCP port and on a Unix socket of its own, in a directory
only the server's user can enter. Admin jobs live in the worker that runs the background
maintenance (worker 0), so the others forward admin requests to it over its socket; a scrape of
/metrics on any worker sums every worker's own figures, fetched over theirs. When worker 0 adds or
removes a user, it tells the others over their sockets before the admin request answers, so that a
removed user's keys stop working on every worker at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web
from yarl import URL

log = logging.getLogger(__name__)

PRIMARY = 0  # the worker that runs repair, scans, scrubbing and admin jobs
# Hop-by-hop headers, and the body framing that the forwarded request sets anew.
_NOT_FORWARDED = frozenset(
    "connection keep-alive proxy-authenticate proxy-authorization te trailer transfer-encoding upgrade "
    "content-length expect".split()
)
_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=5)
_METRICS_TIMEOUT = aiohttp.ClientTimeout(total=5)
_USERS_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)  # the sibling may read the users from the index
USERS_CHANGED_PATH = "/_tessera/internal/users-changed"  # answered over the Unix sockets only


class UserCache(Protocol):
    """What a worker's user directory (gateway.accounts.users.UserDirectory) offers its siblings."""

    def forget(self, access_key: str) -> None: ...

    async def ensure(self, access_key: str, limited: bool = True) -> None: ...


def socket_path(run_dir: Path, number: int) -> Path:
    return run_dir / f"w{number}.sock"


def is_internal(request: web.Request) -> bool:
    """A request that came in over a worker's Unix socket, i.e. from a sibling worker."""
    return isinstance(request.transport.get_extra_info("sockname") if request.transport else None, str)


class Siblings:
    def __init__(self, run_dir: Path, number: int, count: int) -> None:
        self.run_dir = run_dir
        self.number = number
        self.count = count
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    @property
    def runs_admin(self) -> bool:
        return self.number == PRIMARY

    def _session(self, number: int) -> aiohttp.ClientSession:
        session = self._sessions.get(number)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=str(socket_path(self.run_dir, number)))
            session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
            self._sessions[number] = session
        return session

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sessions.values()))
        self._sessions.clear()

    async def forward_admin(self, request: web.Request, unreachable: Callable[[], web.Response]) -> web.Response:
        """Answer an admin request with the primary worker's answer (it checks the signature itself),
        or with unreachable() (the admin API's own 503) when that worker does not answer."""
        body = await request.read()  # admin requests are small JSON; client_max_size bounds them
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        url = URL.build(
            scheme="http",
            host="tessera-worker",
            path=request.rel_url.raw_path,
            query_string=request.rel_url.raw_query_string,
            encoded=True,
        )
        try:
            async with self._session(PRIMARY).request(
                request.method, url, headers=headers, data=body, timeout=_TIMEOUT, allow_redirects=False
            ) as resp:
                answer = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in _NOT_FORWARDED}
                return web.Response(status=resp.status, body=answer, headers=out)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("admin request not forwarded to worker %d: %r", PRIMARY, exc)
            return unreachable()

    async def metrics(self) -> dict[int, bytes]:
        """The other workers' own /metrics by worker number (a worker that does not answer now is left out)."""
        others = [n for n in range(self.count) if n != self.number]
        texts = await asyncio.gather(*(self._metrics_of(n) for n in others))
        return {n: text for n, text in zip(others, texts, strict=True) if text is not None}

    async def _metrics_of(self, number: int) -> bytes | None:
        try:
            async with self._session(number).get("http://tessera-worker/metrics", timeout=_METRICS_TIMEOUT) as resp:
                if resp.status == 200:
                    return await resp.read()
                log.warning("worker %d answered /metrics with %d", number, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("worker %d did not answer /metrics: %r", number, exc)
        return None

    async def users_changed(self, added: Sequence[str] = (), removed: Sequence[str] = ()) -> None:
        """Tell every other worker of users (by access key) added or removed here; returns once each has
        applied the change. A worker that does not answer is restarting: it reads the users afresh."""
        body = {"added": list(added), "removed": list(removed)}
        others = [n for n in range(self.count) if n != self.number]
        await asyncio.gather(*(self._tell_users(n, body) for n in others))

    async def _tell_users(self, number: int, body: dict[str, list[str]]) -> None:
        url = "http://tessera-worker" + USERS_CHANGED_PATH
        try:
            async with self._session(number).post(url, json=body, timeout=_USERS_TIMEOUT) as resp:
                if resp.status != 204:
                    log.warning("worker %d answered a user change with %d", number, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("worker %d was not told of a user change: %r", number, exc)


async def answer_users_changed(request: web.Request, users: UserCache) -> web.Response:
    """A sibling's news of users added or removed (only ever over the Unix socket: see is_internal())."""
    try:
        doc = json.loads(await request.read())
        added, removed = doc["added"], doc["removed"]
        if not all(isinstance(k, str) for k in [*added, *removed]):
            raise TypeError("access keys are strings")
    except (ValueError, KeyError, TypeError) as exc:
        return web.Response(status=400, text=f"bad user change: {exc}")
    for key in removed:
        users.forget(key)
    for key in added:
        await users.ensure(key, limited=False)
    return web.Response(status=204)
