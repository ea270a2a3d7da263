"""Overload an embedded `tessera server`: many clients with mixed PUT/GET, plus connections that dribble
their request heads, and check the front door holds (only 200 and 503 SlowDown; slow connections closed
within the header timeout; normal clients still served). Reports the server's peak RSS.

    python -m bench.overload [--clients 64] [--duration 60] [--slow 200] [--header-timeout 10]

Prints a summary and one JSON line; exits 1 when an answer was neither 200 nor SlowDown, or a slow
connection outlived the header timeout (plus --slack).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.__main__ import parse_size
from bench.client import Credentials, S3Client, S3RequestError
from bench.proc_stats import peak_rss
from bench.report import percentile
from cli import event_loop
from cli.launch import launch, stop

KiB, MiB = 1 << 10, 1 << 20


async def _client(
    s3: S3Client, bucket: str, until: float, sizes: tuple[int, int], seed: int, out: dict[str, Any]
) -> None:
    """PUT and GET objects of log-uniform sizes until `until`; count every answer by kind."""
    rng = random.Random(seed)
    mine: list[str] = []
    lo, hi = sizes
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            if mine and rng.random() < 0.5:
                await s3.get_object(bucket, rng.choice(mine), lambda _piece: None)
            else:
                size = int(lo * (hi / lo) ** rng.random())
                key = f"c{seed}/{len(mine)}"
                await s3.put_object(bucket, key, [os.urandom(size)], size)
                mine.append(key)
            out["answers"]["200"] += 1
            out["latencies"].append(time.monotonic() - start)
        except S3RequestError as exc:
            out["answers"][f"{exc.status} {exc.code}"] += 1
            if exc.code == "SlowDown":
                await asyncio.sleep(rng.uniform(0.05, 0.2))  # as an SDK backs off
        except Exception as exc:  # a timeout or a cut connection: what the front door must never cause
            out["answers"][type(exc).__name__] += 1


async def _slow(host: str, port: int, deadline: float, closed_after: list[float]) -> None:
    """A connection that sends a request head one header line a second, never finishing it."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        while time.monotonic() < deadline:
            try:
                if await asyncio.wait_for(reader.read(65536), 1.0) == b"":
                    closed_after.append(time.monotonic() - start)
                    return
            except TimeoutError:
                pass
            except ConnectionError:
                closed_after.append(time.monotonic() - start)
                return
            writer.write(b"X-Slow: 1\r\n")
    finally:
        writer.close()


async def overload(endpoint: str, creds: Credentials, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    parts = urlsplit(endpoint)
    out: dict[str, Any] = {"answers": Counter(), "latencies": []}
    bucket = "overload-" + secrets.token_hex(4)
    async with S3Client(endpoint, creds, connections=args.clients, timeout=120) as s3:
        await s3.create_bucket(bucket)
        started = time.monotonic()
        until = started + args.duration
        closed: list[float] = []
        slow_deadline = until + args.header_timeout + args.slack
        slow = [
            asyncio.create_task(_slow(parts.hostname or "", parts.port or 80, slow_deadline, closed))
            for _ in range(args.slow)
        ]
        sizes = (args.min_size, args.max_size)
        clients = [_client(s3, bucket, until, sizes, i, out) for i in range(args.clients)]
        await asyncio.gather(*clients)
        elapsed = time.monotonic() - started
        await asyncio.gather(*slow)
    answers: Counter[str] = out["answers"]
    lat = sorted(out["latencies"])
    limit = args.header_timeout + args.slack
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "answers": dict(answers),
        "ok": answers["200"],
        "slowdown": answers["503 SlowDown"],
        "other": sum(n for kind, n in answers.items() if kind not in ("200", "503 SlowDown")),
        "ok_s": round(answers["200"] / elapsed, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
        "slow_connections": args.slow,
        "slow_closed": len(closed),
        "slow_closed_max_s": round(max(closed), 2) if closed else None,
        "slow_within_timeout": len(closed) == args.slow and all(t <= limit for t in closed),
        "server_peak_rss_mib": round((peak_rss(pid) or 0) / MiB, 1),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--slow", type=int, default=200, help="connections that dribble a request head")
    p.add_argument("--min-size", type=parse_size, default=4 * KiB)
    p.add_argument("--max-size", type=parse_size, default=1 * MiB)
    p.add_argument("--header-timeout", type=float, default=10.0, help="the server's --header-timeout")
    p.add_argument("--slack", type=float, default=3.0, help="seconds a close may come late on a busy machine")
    p.add_argument("--server-arg", action="append", default=[], help="one more `tessera server` flag; repeatable")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    creds = Credentials("OVERLOADBENCH0000001", secrets.token_hex(20))
    env = {**os.environ, "TESSERA_ACCESS_KEY": creds.access_key, "TESSERA_SECRET_KEY": creds.secret_key}
    with tempfile.TemporaryDirectory(prefix="tessera-overload-") as tmp:
        base = Path(tmp)
        drives = [str(base / f"d{i}") for i in range(1, 7)]
        flags = ["--listen", "127.0.0.1:0", "--header-timeout", str(args.header_timeout), *args.server_arg]
        run = launch(["server", *drives, *flags], env, base / "server.log")
        try:
            summary = event_loop.run(overload(run.endpoint, creds, args, run.proc.pid))
        finally:
            stop(run.proc)
    print(
        f"{summary['clients']} clients, {summary['seconds']} s: {summary['ok']} ok ({summary['ok_s']}/s, "
        f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms), {summary['slowdown']} SlowDown, "
        f"{summary['other']} other {summary['answers']}"
    )
    print(
        f"{summary['slow_connections']} slow-header connections: {summary['slow_closed']} closed by the server, "
        f"the last after {summary['slow_closed_max_s']} s; server peak RSS {summary['server_peak_rss_mib']} MiB"
    )
    print(json.dumps(summary))
    return 0 if summary["other"] == 0 and summary["slow_within_timeout"] else 1


if __name__ == "__main__":
    sys.exit(main())
