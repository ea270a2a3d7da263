"""A TCP proxy between services, to put faults on the wire: latency, a partition (bytes are dropped
while connections stay open, as a dropped link looks; a connection that lost bytes is closed when the
partition heals, nothing of it delivered late), or cut connections.

    with FaultNet() as net:
        link = net.link("127.0.0.1", 7000)   # clients use link.address instead of 127.0.0.1:7000
        link.partition()                     # ... link.heal(), link.cut(), link.delay(0.2)

The proxies run on an event loop of their own in a thread of the test process; stopping the FaultNet
closes every connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 64 * 1024


class Link:
    """One proxied address: a listener on loopback that forwards to target."""

    def __init__(self, net: FaultNet, host: str, port: int) -> None:
        self._net = net
        self.target = (host, port)
        self.address = ""  # HOST:PORT to give clients instead of the target's
        self._latency = 0.0
        self._partitioned = False
        self._refuse = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._lossy: set[asyncio.StreamWriter] = set()  # connections that lost bytes to a partition
        self._server: asyncio.Server | None = None

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuse:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer, writer), self._pump(up_reader, writer, up_writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                self._lossy.discard(w)
                w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self._partitioned:  # dropped on the floor; the peers see silence
                    self._lossy |= {writer, other}
                    continue
                if self._latency:
                    await asyncio.sleep(self._latency)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except OSError:
                    pass

    # -- faults, called from the test's thread

    def partition(self) -> None:
        """Bytes are dropped both ways; connections stay open and new ones are accepted (then hang)."""

        def partition() -> None:
            self._partitioned = True

        self._net.call(partition)

    def heal(self) -> None:
        def heal() -> None:
            self._refuse = self._partitioned = False
            self._latency = 0.0
            for w in list(self._lossy):  # their streams have holes: as TCP would, they end in errors
                w.close()

        self._net.call(heal)

    def cut(self) -> None:
        """Every connection closed now, and new ones closed as they come (a refused peer)."""

        def cut() -> None:
            self._refuse = True
            for w in list(self._writers):
                w.close()

        self._net.call(cut)

    def delay(self, seconds: float) -> None:
        """Each chunk forwarded this much later (a slow or distant peer)."""

        def delay() -> None:
            self._latency = seconds

        self._net.call(delay)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()


class FaultNet:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netfault", daemon=True)
        self._links: list[Link] = []

    def __enter__(self) -> FaultNet:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.run(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close_all(self) -> None:
        for link in self._links:
            await link._close()

    def run(self, aw: Awaitable[T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(aw, self._loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Any) -> None:
        async def call() -> None:
            fn()

        self.run(call())

    def link(self, host: str, port: int) -> Link:
        async def make() -> Link:
            link = Link(self, host, port)
            await link._start()
            return link

        link = self.run(make())
        self._links.append(link)
        return link
