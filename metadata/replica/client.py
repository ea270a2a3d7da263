"""ReplicaClient: one remote replica over the replica protocol (metadata/replica/protocol.py).

No retries here: a coordinator asks all three replicas and needs two, so a replica that fails or is
slow is simply not counted (retries at one layer only). Every failure is ReplicaDown, except a
refused argument (ValueError) which is the caller's bug or bad input and must surface as such.
Calls go through cluster/client.py's RpcClient, with no retry policy.
"""

from __future__ import annotations

from typing import Any

import msgpack

from cluster.client import ErrorAnswer, RpcClient, Timeouts
from metadata.replica import protocol as rp
from metadata.replica.merge import Entry
from metadata.replica.protocol import Head, Prepared, Write


class ReplicaClient:
    def __init__(self, base_url: str, secret: bytes, timeout: float = 5.0) -> None:
        self.name = base_url
        self._rpc = RpcClient(
            base_url,
            secret,
            timeouts=Timeouts(total=timeout),
            unavailable=lambda why: rp.ReplicaDown(f"{self.name}: {why}"),
            refused=self._refused,
        )

    async def close(self) -> None:
        await self._rpc.close()

    def _refused(self, answer: ErrorAnswer) -> Exception:
        if answer.status == 400:
            return ValueError(answer.message)
        if answer.status == 507:
            return rp.ReplicaFull(f"{self.name} has no room: {answer.message}")
        return rp.ReplicaDown(f"{self.name} answered {answer.status}: {answer.message}")

    async def _call(self, op: str, budget: float | None = None, **args: Any) -> dict[str, Any]:
        data = await self._rpc.call(
            "POST",
            rp.PREFIX + op,
            msgpack.packb(args, use_bin_type=True),
            limit=None,  # bounded by the budget
            timeouts=Timeouts(total=budget) if budget else None,
        )
        return msgpack.unpackb(data, raw=False)

    async def get(self, table: str, key_list: list[bytes]) -> list[Entry | None]:
        r = await self._call("get", table=table, keys=key_list)
        return [rp.entry_in(e) for e in r["entries"]]

    async def get_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]:
        r = await self._call("get_many", reads=[[t, k] for t, k in reads])
        return [rp.entry_in(e) for e in r["entries"]]

    async def head(self, reads: list[tuple[str, bytes]], table: str, prefix: bytes, scope: bytes, limit: int) -> Head:
        r = await self._call(
            "head", reads=[[t, k] for t, k in reads], table=table, prefix=prefix, scope=scope, limit=limit
        )
        return Head([rp.entry_in(e) for e in r["entries"]], rp.items_in(r["run"]), bool(r["cut"]))

    async def put(self, writes: list[Write]) -> int:
        return int((await self._call("put", writes=rp.writes_out(writes)))["changed"])

    async def scan(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        return await self._scan("scan", table, start, inclusive, scope, limit)

    async def scan_runs(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        return await self._scan("scan_runs", table, start, inclusive, scope, limit)

    async def _scan(
        self, op: str, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]:
        r = await self._call(op, table=table, start=start, inclusive=inclusive, scope=scope, limit=limit)
        return rp.items_in(r["entries"]), bool(r["more"])

    async def prepare(self, table: str, key: bytes, txn_id: str, ts: int, lease: float) -> Prepared:
        r = await self._call("prepare", table=table, key=key, txn=txn_id, ts=ts, lease=lease)
        return Prepared(bool(r["granted"]), rp.entry_in(r["entry"]), int(r["promised"]))

    async def commit(self, table: str, key: bytes, txn_id: str, writes: list[Write]) -> bool:
        r = await self._call("commit", table=table, key=key, txn=txn_id, writes=rp.writes_out(writes))
        return bool(r["ok"])

    async def release(self, table: str, key: bytes, txn_id: str) -> None:
        await self._call("release", table=table, key=key, txn=txn_id)

    async def chunk_digests(self, table: str, chunk: int) -> list[tuple[bytes, bytes]]:
        r = await self._call("chunk_digests", budget=60.0, table=table, chunk=chunk)
        return [(s, d) for s, d in r["chunks"]]

    async def range_digests(self, table: str, starts: list[bytes]) -> list[bytes]:
        return list((await self._call("range_digests", budget=60.0, table=table, starts=starts))["digests"])

    async def pull(
        self, table: str, start: bytes, end: bytes | None, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bytes | None]:
        r = await self._call("pull", budget=60.0, table=table, start=start, end=end, limit=limit)
        return rp.items_in(r["entries"]), r["next"]

    async def status(self) -> bool:
        return bool((await self._call("status"))["initialized"])
