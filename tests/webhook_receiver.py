"""A real webhook receiver for notification tests: an aiohttp server on loopback in a thread of its own, which
can be taken down (its port closed) and brought back up on the same port; and `receiver`, a fixture of one that
wants a token (a pytest plugin of conftest.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    def __init__(self, token: str = "") -> None:
        self.port = free_port()
        self.token = token
        self.records: list[dict[str, Any]] = []  # every Record received, duplicates included
        self.refused = 0  # requests without the right token
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            with self._lock:
                self.refused += 1
            return web.Response(status=401)
        doc = await request.json()
        with self._lock:
            self.records += doc["Records"]
        return web.Response(status=200)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def got(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records)

    def keys(self) -> set[tuple[str, str]]:
        """(eventName, key) of what arrived."""
        return {(r["eventName"], r["s3"]["object"]["key"]) for r in self.got()}

    def wait_for(self, what: str, check: Callable[[], bool], deadline: float = DEADLINE) -> None:
        end = time.monotonic() + deadline
        while not check():
            assert time.monotonic() < end, f"not within {deadline} s: {what}; got {self.keys()}"
            time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(token="s3cret")
    r.up()
    yield r
    r.close()
