"""Server CPU per MiB of large PUTs and GETs, and an old/new A/B of it that a busy machine does not blur.

    python -m bench.cpu_cost [--rounds 5] [--objects 20] [--size-mib 64] [--concurrency 2] TREE [TREE ...]

Each TREE is a source tree (e.g. a git worktree of main and one of a branch); every round starts
`tessera server` from each tree in turn (PYTHONPATH=TREE) on fresh temporary drives, PUTs and then GETs
--objects objects with the lean bench client, and reads the server's utime+stime from /proc before and
after each. Throughput on a shared machine moves with everyone else's load; CPU seconds spent per MiB
hardly do. Medians per tree are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.__main__ import run_bench
from bench.client import Credentials
from bench.proc_stats import cpu_seconds
from bench.workload import Spec

MiB = 1 << 20
ACCESS_KEY, SECRET_KEY = "BENCHCPUCOSTKEY00001", "bench-cpu-cost-secret-0123456789"


async def cpu_per_mib(
    endpoint: str, creds: Credentials, pid: int, objects: int, size: int, concurrency: int, prefix: str = "cpu/"
) -> dict[str, float]:
    """Server CPU ms per MiB of `objects` PUTs of `size` bytes, then of as many GETs of them."""
    spec = Spec("put", size, concurrency, 3600, prefix=f"{prefix}p/", max_ops=objects)
    c0 = cpu_seconds(pid)
    summary, _ = await run_bench(endpoint, creds, spec, bucket=None)
    c1 = cpu_seconds(pid)
    if summary["errors"]:
        raise RuntimeError(f"PUT: {summary.get('error_examples')}")
    put_ms = (c1 - c0) * 1000 / (objects * size / MiB)
    # A GET run prepares its objects first (PUTs): measure that apart and subtract it.
    gspec = Spec("get", size, concurrency, 3600, objects=concurrency, prefix=f"{prefix}g/", max_ops=objects)
    c2 = cpu_seconds(pid)
    summary, _ = await run_bench(endpoint, creds, gspec, bucket=None)
    c3 = cpu_seconds(pid)
    if summary["errors"]:
        raise RuntimeError(f"GET: {summary.get('error_examples')}")
    prepared_mib = concurrency * size / MiB
    get_ms = ((c3 - c2) * 1000 - put_ms * prepared_mib) / (objects * size / MiB)
    return {"put_cpu_ms_per_mib": put_ms, "get_cpu_ms_per_mib": get_ms, "put_mb_s": summary.get("mb_s", 0.0)}


def _one(tree: str, objects: int, size: int, concurrency: int) -> dict[str, float]:
    from cli.launch import launch, stop

    with tempfile.TemporaryDirectory(prefix="tessera-cpu-") as tmp:
        env = {**os.environ, "PYTHONPATH": tree, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
        drives = [str(Path(tmp) / f"d{i}") for i in range(6)]
        cmd = ["server", *drives, "--listen", "127.0.0.1:0", "--no-auto-repair"]
        run = launch(cmd, env, Path(tmp) / "server.log", cwd=Path(tmp))
        try:
            creds = Credentials(ACCESS_KEY, SECRET_KEY)
            return asyncio.run(cpu_per_mib(run.endpoint, creds, run.proc.pid, objects, size, concurrency))
        finally:
            stop(run.proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu_cost", description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="source trees to compare (PYTHONPATH for the server)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {t: [] for t in args.trees}
    for r in range(args.rounds):
        for tree in args.trees:
            res = _one(tree, args.objects, args.size_mib * MiB, args.concurrency)
            results[tree].append(res)
            print(
                f"r{r} {tree:28s} PUT {res['put_cpu_ms_per_mib']:5.2f} ms/MiB  GET {res['get_cpu_ms_per_mib']:5.2f}",
                flush=True,
            )
    for tree, rows in results.items():
        put = statistics.median(x["put_cpu_ms_per_mib"] for x in rows)
        get = statistics.median(x["get_cpu_ms_per_mib"] for x in rows)
        print(f"MEDIAN {tree:28s} PUT {put:5.2f} ms/MiB  GET {get:5.2f} ms/MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
