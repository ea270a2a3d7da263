"""Three metadata replicas in this process, each a real metadata service on a loopback port."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from metadata.remote.service import make_meta_app
from metadata.replica.anti_entropy import AntiEntropy
from metadata.replica.client import ReplicaClient
from metadata.replica.store import ReplicaStore
from metadata.replicated.index import ReplicatedIndex

SECRET = b"test-cluster-secret-0123456789"
MAP_SIZE = 1 << 30


@dataclass
class Replica:
    path: Path
    port: int = 0
    store: ReplicaStore | None = None
    runner: web.AppRunner | None = None
    anti_entropy: AntiEntropy | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Replicas:
    """Three replicas; start/stop/wipe each; clients build ReplicatedIndex over them."""

    root: Path
    interval: float = 3600.0  # anti-entropy runs when a test asks, unless it says otherwise
    members: list[Replica] = field(default_factory=list)
    indexes: list[ReplicatedIndex] = field(default_factory=list)

    async def start(self) -> None:
        for i in range(3):
            r = Replica(self.root / f"r{i}")
            self.members.append(r)
            await self._serve(r, initialized=True)

    async def _serve(self, r: Replica, initialized: bool = False) -> None:
        r.store = ReplicaStore.open(r.path, map_size=MAP_SIZE)
        if initialized and not r.store.initialized:
            await r.store.mark_initialized()
        app = make_meta_app(_Unused(), SECRET, replica=r.store)  # type: ignore[arg-type]
        r.runner = web.AppRunner(app, access_log=None)
        await r.runner.setup()
        site = web.TCPSite(r.runner, "127.0.0.1", r.port)
        await site.start()
        r.port = r.runner.addresses[0][1]

    def peers_of(self, r: Replica) -> list[ReplicaClient]:
        return [ReplicaClient(o.url, SECRET) for o in self.members if o is not r]

    def start_anti_entropy(self, r: Replica, interval: float | None = None) -> AntiEntropy:
        assert r.store is not None
        r.anti_entropy = AntiEntropy(r.store, self.peers_of(r), interval=interval or self.interval)
        r.anti_entropy.start()
        return r.anti_entropy

    async def stop(self, i: int) -> None:
        r = self.members[i]
        if r.anti_entropy is not None:
            await r.anti_entropy.close()
            r.anti_entropy = None
        if r.runner is not None:
            await r.runner.cleanup()
            r.runner = None
        if r.store is not None:
            await r.store.close()
            r.store = None

    async def restart(self, i: int, wipe: bool = False) -> None:
        await self.stop(i)
        if wipe:
            shutil.rmtree(self.members[i].path)
        await self._serve(self.members[i])

    def index(self) -> ReplicatedIndex:
        clients = [ReplicaClient(r.url, SECRET, timeout=2.0) for r in self.members]
        idx = ReplicatedIndex(list(clients), closers=clients)
        self.indexes.append(idx)
        return idx

    async def close(self) -> None:
        for idx in self.indexes:
            await idx.close()
        for i in range(len(self.members)):
            await self.stop(i)


class _Unused:
    """The /v1 Index API is not what these tests exercise: replicas are reached through /r1."""
