"""What the embedded server's index copies cost a small PUT, beside the same server with one index file.

    python -m bench.index_copies [--rounds 3] [--duration 4] [--concurrency 32] [--commits 400] [--json]

In one run, on this machine:
- 4 KiB PUTs of new keys (python -m bench's workload) against `tessera server` on six temporary drives with
  its index in one LMDB file (`--index DIR`: one copy, what the server kept before the copies) and with its
  index in min(2M+1, drives) copies on the drives (the default), the two taking turns, --rounds times, a
  fresh server each time; the median rates, their ratio, and each one's CPU per PUT: the server process,
  and the copies' writer processes (docs/durability.md).
- The floor under any index that keeps every acknowledged write on several drives: 1, M+1 and 2M+1
  processes (M = 2), each writing an LMDB environment of its own with the index's durability settings
  (metadata/lmdb_open.py) in synced transactions of --batch values of a 4 KiB object's manifest size, all
  at once, and nothing else (no server, no pipes, no merge). Per PUT: the whole machine's CPU (/proc/stat:
  the kernel's journal and writeback threads count too) and the writers' own.
Prints a table, then (with --json) one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.__main__ import run_bench
from bench.client import Credentials, S3Client
from bench.proc_stats import cpu_seconds, own_cpu_seconds
from bench.put_get import ACCESS, SECRET, embedded_server
from bench.workload import Spec
from metadata.lmdb_open import open_env

LAYOUTS = {"file": "one index file (--index)", "copies": "copies on the drives"}
VALUE = 4500  # bytes of a 4 KiB object's stored manifest: the object inline, its map, the entry's header
_TICK = os.sysconf("SC_CLK_TCK")


async def _put_round(endpoint: str, duration: float, concurrency: int, prefix: str) -> float:
    creds = Credentials(ACCESS, SECRET)
    async with S3Client(endpoint, creds) as client:
        await client.create_bucket("bench")
    spec = Spec("put", 4096, concurrency=concurrency, duration=duration, prefix=prefix)
    summary, _ = await run_bench(endpoint, creds, spec, bucket="bench", keep=True)
    if summary["errors"]:
        raise RuntimeError(f"{summary['errors']} PUTs failed: {summary}")
    return float(summary["objects_s"])


def server_rates(rounds: int, duration: float, concurrency: int) -> dict[str, float]:
    """Median PUT rate and CPU per PUT (µs) of each layout, the layouts taking turns."""
    samples: dict[str, list[float]] = {}
    for r in range(rounds):
        for layout in LAYOUTS:
            with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
                flags = ["--index", str(Path(tmp) / "index")] if layout == "file" else []
                with embedded_server(Path(tmp) / "server", flags) as run:
                    pid = run.proc.pid
                    own0, all0 = own_cpu_seconds(pid), cpu_seconds(pid)
                    rate = asyncio.run(_put_round(run.endpoint, duration, concurrency, f"r{r}/"))
                    own1, all1 = own_cpu_seconds(pid), cpu_seconds(pid)
            puts = rate * duration
            samples.setdefault(f"{layout}_put_4k_ops_s", []).append(rate)
            samples.setdefault(f"{layout}_server_us_per_put", []).append((own1 - own0) * 1e6 / puts)
            samples.setdefault(f"{layout}_writers_us_per_put", []).append((all1 - all0 - (own1 - own0)) * 1e6 / puts)
    got = {name: statistics.median(values) for name, values in samples.items()}
    got["ratio_copies_to_file"] = got["copies_put_4k_ops_s"] / got["file_put_4k_ops_s"]
    return got


def _machine_busy() -> int:
    """Busy jiffies of the whole machine since boot (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def _floor_writer(path: str, batch: int, commits: int, ready: Any, start: Any, done: Any) -> None:
    """Open the environment, say so on `ready`, write `commits` synced transactions once `start` is set, then
    tell `done` the CPU seconds they took (not the start's)."""
    env, dbs = open_env(Path(path), ["objects"])
    value = os.urandom(VALUE)
    ready.put(True)
    start.wait()
    t = os.times()
    seq = 0
    for _ in range(commits):
        with env.begin(write=True) as txn:
            for _ in range(batch):
                seq += 1
                txn.put(b"bench\x00floor/obj-%010d" % seq, value, db=dbs["objects"])
    u = os.times()
    done.put(u.user + u.system - t.user - t.system)
    env.close()


def floor(writers: int, batch: int, commits: int) -> dict[str, float]:
    """Machine and writers' CPU per PUT (µs) and PUTs/s of `writers` synced LMDB environments written at once."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, done = ctx.Queue(), ctx.Event(), ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-floor-") as tmp:
        procs = [
            ctx.Process(target=_floor_writer, args=(os.path.join(tmp, str(i)), batch, commits, ready, start, done))
            for i in range(writers)
        ]
        for p in procs:
            p.start()
        for _ in procs:  # every writer started and opened: the machine's CPU counted from here is the writes'
            ready.get(timeout=120)
        busy, t = _machine_busy(), time.perf_counter()
        start.set()
        own = 0.0
        for _ in procs:
            own += done.get(timeout=600)
        seconds, busy = time.perf_counter() - t, _machine_busy() - busy
        for p in procs:
            p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a floor writer failed: exit codes {[p.exitcode for p in procs]}")
    puts = batch * commits  # one PUT is one value in each writer's environment
    return {
        "machine_us_per_put": busy / _TICK * 1e6 / puts,
        "writers_us_per_put": own * 1e6 / puts,
        "puts_s": puts / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of each PUT run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8, help="values per synced transaction in the floor")
    ap.add_argument("--commits", type=int, default=400, help="transactions per writer in the floor")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if min(args.rounds, args.commits, args.batch, args.concurrency) < 1 or args.duration <= 0:
        ap.error("--rounds, --commits, --batch and --concurrency must be at least 1, --duration above 0")
    got = server_rates(args.rounds, args.duration, args.concurrency)
    for n in (1, 3, 5):
        got |= {f"floor_{n}_{k}": v for k, v in floor(n, args.batch, args.commits).items()}
    print(f"4 KiB PUT of new keys, {args.concurrency} clients, median of {args.rounds} rounds, layouts taking turns")
    for layout, label in LAYOUTS.items():
        rate, server = got[f"{layout}_put_4k_ops_s"], got[f"{layout}_server_us_per_put"]
        writers = got[f"{layout}_writers_us_per_put"]
        print(f"  {label:<26} {rate:8.0f} PUT/s   server {server:5.0f} µs/PUT   copies' writers {writers:5.0f} µs/PUT")
    print(f"  ratio, copies to one file: {got['ratio_copies_to_file']:.3f}")
    print(f"floor: synced LMDB environments written at once, {args.batch} values of {VALUE} B per transaction")
    for n in (1, 3, 5):
        print(
            f"  {n} environment(s): machine {got[f'floor_{n}_machine_us_per_put']:6.1f} µs/PUT   writers"
            f" {got[f'floor_{n}_writers_us_per_put']:6.1f} µs/PUT   {got[f'floor_{n}_puts_s']:7.0f} PUT/s"
        )
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in got.items()}))


if __name__ == "__main__":
    main()
