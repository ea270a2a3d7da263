"""Metadata operations per second: the local LMDB index beside three replicas, in one run.

    python -m bench.meta_ops [--ops 2000] [--concurrency 16] [--rebuild 100000] [--data DIR]

Three real `tessera meta` replicas on loopback; this process coordinates as a gateway does (the
replicated index over the three). The local index is opened in this process, as the embedded server
does. Measures put_object, get_object and list_objects (a 100-key page) on each, then, with
--rebuild N: loads N records into every replica, wipes one, restarts it, and times its anti-entropy
rebuild (until it reports itself initialized). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from cli import event_loop
from cli.dev import _free_ports
from cli.launch import Launched, launch, stop
from metadata import keys
from metadata.hlc import HLC
from metadata.index import Index
from metadata.local.store import LocalIndex
from metadata.records import BucketRecord, ObjectManifest, PartRecord, encode
from metadata.replica.client import ReplicaClient
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from metadata.replicated.index import ReplicatedIndex

SECRET = "bench-cluster-secret-0123456789"


def manifest(bucket: str, key: str) -> ObjectManifest:
    part = PartRecord(0, uuid.uuid4().hex, 4096, "0" * 32, [f"d{i}" for i in range(6)], 4, 2, 1 << 20)
    return ObjectManifest(bucket, key, uuid.uuid4().hex, 4096, "0" * 32, time.time(), "AKIA", [part])


async def rate(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def measure(index: Index, ops: int, concurrency: int) -> dict[str, float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    await index.create_bucket(BucketRecord(bucket, "AKIA", time.time()))
    out = {"put": await rate(ops, concurrency, lambda i: index.put_object(manifest(bucket, f"k{i:07}")))}
    out["get"] = await rate(ops, concurrency, lambda i: index.get_object(bucket, f"k{i:07}"))
    out["list"] = await rate(
        max(ops // 10, 10),
        concurrency,
        lambda i: index.list_objects(bucket, start_after=f"k{i * 7 % ops:07}", max_keys=100),
    )
    return out


def start_replicas(root: Path) -> tuple[list[Launched], list[list[str]], list[str]]:
    ports = _free_ports(3)
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = dict(os.environ, TESSERA_CLUSTER_SECRET=SECRET)
    runs, argv = [], []
    for i, p in enumerate(ports):
        args = ["meta", "--data", str(root / f"m{i}"), "--listen", f"127.0.0.1:{p}", "--peers", peers]
        args += ["--anti-entropy-interval", "1"]
        argv.append(args)
        runs.append(launch(args, env, root / f"m{i}.log", banner_end="Endpoint:"))
    return runs, argv, [f"http://127.0.0.1:{p}" for p in ports]


def initialized(url: str) -> bool:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        return re.search(r"^tessera_meta_replica_initialized 1\.0$", resp.read().decode(), re.M) is not None


async def rebuild_time(root: Path, runs: list[Launched], argv: list[list[str]], urls: list[str], n: int) -> float:
    clients = [ReplicaClient(u, SECRET.encode(), timeout=60) for u in urls]
    clock = HLC()
    bucket = "rebuild"
    value = encode(manifest(bucket, "x"))
    try:
        for start in range(0, n, 2000):
            writes = [
                Write("objects", keys.composite(bucket, f"obj/{i:08}"), Entry(clock.now(), False, value))
                for i in range(start, min(n, start + 2000))
            ]
            await asyncio.gather(*(c.put(writes) for c in clients))
    finally:
        for c in clients:
            await c.close()
    stop(runs[2].proc)
    shutil.rmtree(root / "m2" / "replica")
    env = dict(os.environ, TESSERA_CLUSTER_SECRET=SECRET)
    started = time.perf_counter()
    runs[2] = launch(argv[2], env, root / "m2.log", banner_end="Endpoint:")
    for _ in range(6000):  # 10 minutes at most
        if await asyncio.to_thread(initialized, urls[2]):
            return time.perf_counter() - started
        await asyncio.sleep(0.1)
    raise RuntimeError("the wiped replica did not finish rebuilding")


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    root = Path(args.data or tempfile.mkdtemp(prefix="tessera-meta-bench-"))
    local = LocalIndex.open(root / "local")
    runs, argv, urls = start_replicas(root)
    result: dict[str, object] = {"ops": args.ops, "concurrency": args.concurrency}
    try:
        result["local"] = await measure(local, args.ops, args.concurrency)
        clients = [ReplicaClient(u, SECRET.encode()) for u in urls]
        replicated = ReplicatedIndex(list(clients), closers=clients)
        await asyncio.sleep(1.5)  # let the brand-new replica set initialize
        result["replicated"] = await measure(replicated, args.ops, args.concurrency)
        await replicated.close()
        if args.rebuild:
            result["rebuild_records"] = args.rebuild
            result["rebuild_seconds"] = round(await rebuild_time(root, runs, argv, urls, args.rebuild), 2)
    finally:
        await local.close()
        for r in runs:
            stop(r.proc)
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rebuild", type=int, default=0, help="records for the wiped-replica rebuild timing (0: skip)")
    p.add_argument("--data", default="", help="directory for the run's data (default: a temporary one, removed)")
    result = event_loop.run(main_async(p.parse_args()))
    print(f"{'index':<12}{'put/s':>10}{'get/s':>10}{'list/s':>10}")
    for name in ("local", "replicated"):
        r = result[name]
        assert isinstance(r, dict)
        print(f"{name:<12}{r['put']:>10.0f}{r['get']:>10.0f}{r['list']:>10.0f}")
    if "rebuild_seconds" in result:
        print(f"wiped replica rebuilt {result['rebuild_records']} records in {result['rebuild_seconds']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
