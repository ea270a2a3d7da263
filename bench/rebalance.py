"""Rebalance throughput beside PUT throughput, and client GETs during a rebalance beside without one, same run.

    python -m bench.rebalance [--objects 48] [--size 4MiB] [--concurrency 2] [--json]

Starts a six-node `tessera dev` cluster (EC 4+2, one metadata service) with the repair/rebalance rate cap far
above what the machine can do (so the cap is not what is measured; it is reported), then:

1. PUTs --objects objects of --size with the lean bench client (--concurrency at once): PUT MB/s.
2. GETs every object (--concurrency at once) for --get-seconds: GET MB/s and GETs/s without a rebalance.
3. Adds two nodes, waits until they are live, and starts `POST rebalance`; the same GET loop runs until the
   job ends: GET MB/s and GETs/s during the rebalance. Rebalance MB/s = fragment bytes moved (the job's
   "bytes") / the job's wall time.
4. Reads every object back and compares it byte for byte, and checks the new nodes now hold fragments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.__main__ import parse_size
from bench.client import Credentials, S3Client
from bench.repair import BenchFailure, put_all, verify_all
from bench.workload import Content
from cli import event_loop
from cli.dev import DevCluster
from gateway.admin.client import AdminClient

MiB = 1 << 20
ACCESS_KEY, SECRET_KEY = "BENCHREBALANCEKEY001", "bench-rebalance-secret-0123456789"
BUCKET = "bench-repair"  # bench.repair's helpers PUT and GET in this bucket
POLL = 0.1  # seconds between job polls
JOB_TIMEOUT = 900.0


async def get_loop(client: S3Client, content: Content, keys: list[str], size: int, concurrency: int, done: Any) -> dict:
    """GET keys round-robin, `concurrency` at once, until done() is true; count and check what came back."""
    count, nbytes, next_key = 0, 0, 0

    async def worker() -> None:
        nonlocal count, nbytes, next_key
        while not done():
            key = keys[next_key % len(keys)]
            next_key += 1
            check = content.verifier(key, size)
            await client.get_object(BUCKET, key, check)
            if check.bad_at is not None or check.pos != size:
                raise BenchFailure(f"{key}: read back wrong (first bad byte {check.bad_at})")
            count, nbytes = count + 1, nbytes + check.pos

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    return {"gets": count, "get_per_s": count / seconds, "get_mb_s": nbytes / seconds / 1e6, "seconds": seconds}


async def wait_live(admin: AdminClient, want: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if sum(n["live"] for n in (await admin.list_nodes())["nodes"]) >= want:
            return
        await asyncio.sleep(0.2)
    raise BenchFailure(f"fewer than {want} nodes live after {within:g}s")


def fragment_bytes(node_dir: Path) -> int:
    return sum(p.stat().st_size for p in node_dir.glob("drive*/fragments/*/*"))


async def run(dev: DevCluster, args: argparse.Namespace) -> dict[str, Any]:
    content = Content(args.seed)
    keys = [f"obj/{i:05d}" for i in range(args.objects)]
    creds = Credentials(dev.env["TESSERA_ACCESS_KEY"], dev.env["TESSERA_SECRET_KEY"])
    out: dict[str, Any] = {}
    async with (
        S3Client(dev.endpoint(), creds, connections=max(args.concurrency, 4)) as client,
        AdminClient(dev.endpoint(), creds.access_key, creds.secret_key) as admin,
    ):
        await client.create_bucket(BUCKET)
        out["put_mb_s"] = await put_all(client, content, keys, args.size, args.concurrency)
        until = time.monotonic() + args.get_seconds
        out["get_alone"] = await get_loop(
            client, content, keys, args.size, args.concurrency, lambda: time.monotonic() > until
        )

        new = [dev.add_node(), dev.add_node()]
        await wait_live(admin, 8)
        job = (await admin.rebalance())["job"]
        state: dict[str, Any] = {"job": job}

        async def follow() -> None:
            deadline = time.monotonic() + JOB_TIMEOUT
            while state["job"]["finished"] is None:
                if time.monotonic() > deadline:
                    raise BenchFailure(f"the rebalance did not finish within {JOB_TIMEOUT:g}s")
                await asyncio.sleep(POLL)
                state["job"] = (await admin.job(job["id"]))["job"]

        during, _ = await asyncio.gather(
            get_loop(client, content, keys, args.size, args.concurrency, lambda: state["job"]["finished"] is not None),
            follow(),
        )
        job = state["job"]
        if job["phase"] != "done" or job["failed"]:
            raise BenchFailure(f"rebalance ended {job['phase']}: {job['message']}")
        seconds = job["finished"] - job["started"]
        out["get_during"] = during
        out["rebalance_bytes"], out["rebalance_s"] = job["bytes"], round(seconds, 3)
        out["rebalance_mb_s"] = job["bytes"] / seconds / 1e6 if seconds else 0.0
        out["rebalance_message"] = job["message"]
        out["new_node_bytes"] = [fragment_bytes(dev.data / s.name) for s in new]
        if not all(out["new_node_bytes"]):
            raise BenchFailure(f"the new nodes hold {out['new_node_bytes']} fragment bytes after the rebalance")
        out["verified_bytes"] = await verify_all(client, content, keys, args.size)
    return out


def report(s: dict[str, Any]) -> None:
    alone, during = s["get_alone"], s["get_during"]
    print(
        f"Tessera (6-node dev cluster + 2 added, EC 4+2): {s['objects']} x {s['size'] / MiB:g} MiB, "
        f"concurrency {s['concurrency']}, {s['moves_at_once']} moves at once"
    )
    print(f"  rate cap {s['rate_cap_mb_s']:g} MB/s (not what is measured)")
    print(f"  PUT (object bytes)                 {s['put_mb_s']:>9,.1f} MB/s")
    print(
        f"  rebalance (fragment bytes moved)   {s['rebalance_mb_s']:>9,.1f} MB/s   "
        f"{s['rebalance_mb_s'] / s['put_mb_s']:.3f} x PUT; "
        f"{s['rebalance_bytes'] / MiB:,.1f} MiB in {s['rebalance_s']} s"
    )
    print(f"  GET without a rebalance            {alone['get_mb_s']:>9,.1f} MB/s   {alone['get_per_s']:.1f} GETs/s")
    print(
        f"  GET during the rebalance           {during['get_mb_s']:>9,.1f} MB/s   {during['get_per_s']:.1f} GETs/s "
        f"({during['get_per_s'] / alone['get_per_s']:.3f} x without)"
    )
    print(f"  new nodes hold {[round(b / MiB, 1) for b in s['new_node_bytes']]} MiB; {s['rebalance_message']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rebalance", description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=48, help="objects written")
    ap.add_argument("--size", type=parse_size, default=4 * MiB, help="object size, e.g. 4MiB")
    ap.add_argument("--concurrency", type=int, default=2, help="PUTs and GETs at once")
    ap.add_argument("--get-seconds", type=float, default=10.0, help="seconds of GETs without a rebalance")
    ap.add_argument("--rate", type=float, default=100000.0, help="the gateway's repair/rebalance cap, MB/s (high)")
    ap.add_argument("--moves", type=int, default=2, help="the gateway's --repair-concurrency: parts moved at once")
    ap.add_argument("--seed", type=int, default=1, help="content seed")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.objects < 1 or args.size < 1 or args.concurrency < 1 or args.get_seconds <= 0:
        print("bench.rebalance: --objects, --size, --concurrency and --get-seconds must be positive", file=sys.stderr)
        return 2
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    with tempfile.TemporaryDirectory(prefix="tessera-bench-rebalance-") as tmp:
        dev = DevCluster(
            Path(tmp),
            nodes=6,
            metas=1,
            gateways=1,
            env=env,
            gateway_args=["--repair-rate", str(args.rate), "--repair-concurrency", str(args.moves)],
        )
        dev.start()
        try:
            figures = event_loop.run(run(dev, args))
        except BenchFailure as exc:
            print(f"bench.rebalance: FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            dev.stop()
    summary = {
        "bench": "rebalance",
        "objects": args.objects,
        "size": args.size,
        "concurrency": args.concurrency,
        "rate_cap_mb_s": args.rate,
        "moves_at_once": args.moves,
        **figures,
    }
    if not args.json:
        report(summary)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
