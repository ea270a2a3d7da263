"""Load any S3 endpoint: put, get, mixed, list or stat, and report throughput, latency and errors.

    python -m bench --endpoint URL --op put|get|mixed|list|stat --size 4KiB --concurrency N --duration S

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or --access-key / --secret-key). The run
creates its own bucket (or uses --bucket), verifies every GET against the bytes it put, and deletes what it
created unless --keep. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pickle
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import Credentials, S3Client, S3RequestError
from bench.report import human_size, json_line, plot, summarize, table
from bench.workload import MAX_ERROR_EXAMPLES, OPS, Result, Spec, Workload
from cli import event_loop

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 10**6, "mb": 10**6, "mib": 1 << 20}
_UNITS |= {"g": 10**9, "gb": 10**9, "gib": 1 << 30}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4KiB, 1MiB, 64MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_ratio(text: str) -> float:
    """The GET share of a mixed run: 0.7, 70%, or GET:PUT weights such as 7:3."""
    try:
        if ":" in text:
            gets, puts = (float(x) for x in text.split(":"))
            value = gets / (gets + puts)
        elif text.endswith("%"):
            value = float(text[:-1]) / 100
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a ratio: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("the GET share must be between 0 and 1")
    return value


async def run_bench(
    endpoint: str,
    creds: Credentials,
    spec: Spec,
    bucket: str | None = None,
    keep: bool = False,
    connections: int | None = None,
    processes: int = 1,
    ca_bundle: str | None = None,
) -> tuple[dict[str, Any], Result]:
    """Prepare, run (in this process, or split over `processes` client processes), clean up.

    ca_bundle: the CAs an https endpoint's certificate is checked against (else the system's).

    Returns the summary (the JSON line's content) and the raw samples.
    """
    own_bucket = bucket is None
    bucket = bucket or f"tessera-bench-{secrets.token_hex(4)}"
    pool = connections or max(spec.concurrency, 4)
    async with S3Client(endpoint, creds, connections=pool, ca_bundle=ca_bundle) as client:
        if own_bucket:
            await client.create_bucket(bucket)
        workload = Workload(client, bucket, spec)
        try:
            await workload.prepare()
            if processes > 1:
                result = await asyncio.to_thread(_run_processes, endpoint, creds, spec, bucket, processes, ca_bundle)
            else:
                result = await workload.run()
        finally:
            if not keep:
                await workload.cleanup()
                if own_bucket:
                    await client.delete_bucket(bucket)
    summary = summarize(result, endpoint)
    summary["bucket"] = bucket
    if processes > 1:
        summary["processes"] = processes
    return summary, result


def _run_processes(
    endpoint: str, creds: Credentials, spec: Spec, bucket: str, processes: int, ca_bundle: str | None
) -> Result:
    """Split the concurrency over client processes that start together; merge their samples.

    For endpoints with more cores than one client process can keep busy. Sample times travel as wall-clock
    seconds (perf_counter values mean nothing in another process).
    """
    processes = min(processes, spec.concurrency)
    start_at = time.time() + 1.0 + 0.3 * processes  # every worker has imported and connected by then
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        jobs = []
        first = 0
        for i in range(processes):
            share = spec.concurrency // processes + (1 if i < spec.concurrency % processes else 0)
            job = Path(tmp) / f"worker{i}"
            part = dataclasses.replace(spec, concurrency=share, first_worker=first, max_ops=None)
            job.with_suffix(".in").write_bytes(pickle.dumps((endpoint, creds, part, bucket, start_at, ca_bundle)))
            first += share
            cmd = [sys.executable, "-m", "bench", "--worker-job", str(job)]
            jobs.append((job, subprocess.Popen(cmd)))
        results = []
        for job, proc in jobs:
            if proc.wait() != 0:
                raise RuntimeError(f"client process {proc.pid} exited {proc.returncode}")
            results.append(pickle.loads(job.with_suffix(".out").read_bytes()))
    merged = Result(spec)
    merged.started = min(r.started for r in results)
    merged.ended = max(r.ended for r in results)
    for r in results:
        merged.samples.extend(r.samples)
        merged.errors.update(r.errors)
        merged.error_examples.extend(r.error_examples[: MAX_ERROR_EXAMPLES - len(merged.error_examples)])
        merged.client_cpu_s += r.client_cpu_s
    return merged


def _worker_job(job: Path) -> None:
    endpoint, creds, spec, bucket, start_at, ca_bundle = pickle.loads(job.with_suffix(".in").read_bytes())

    async def go() -> Result:
        async with S3Client(endpoint, creds, connections=max(spec.concurrency, 4), ca_bundle=ca_bundle) as client:
            workload = Workload(client, bucket, spec)
            workload.use_prepared()
            await asyncio.sleep(max(0.0, start_at - time.time()))
            wall, perf = time.time(), time.perf_counter()
            result = await workload.run()
        for s in result.samples:
            s.start, s.end = s.start - perf + wall, s.end - perf + wall
        result.started, result.ended = result.started - perf + wall, result.ended - perf + wall
        return result

    job.with_suffix(".out").write_bytes(pickle.dumps(event_loop.run(go())))


OTHER_BENCHMARKS = """\
other benchmarks (each starts its own Tessera and reports figures against same-run baselines):
  python -m bench.limits      this machine's ceilings: hashes, pyeclib, aiohttp loopback, fsync
  python -m bench.scenarios   each Tessera figure with its ratio to a ceiling, healthy and degraded
  python -m bench.put_get     64 MiB PUT and GET MB/s, embedded and cluster (also with two nodes down)
  python -m bench.meta_ops    metadata ops/s: three replicas beside the local index
  python -m bench.repair      repair and scrub MB/s beside PUT MB/s (a wiped drive, flipped bytes)
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=OTHER_BENCHMARKS,
    )
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"))
    ap.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    ap.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    ap.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    ap.add_argument(
        "--ca-bundle",
        default=os.environ.get("AWS_CA_BUNDLE") or None,
        metavar="FILE.pem",
        help="https: the CAs to check the endpoint's certificate against (else AWS_CA_BUNDLE, else the system's)",
    )
    ap.add_argument("--op", choices=OPS, default="put")
    ap.add_argument("--size", type=parse_size, default=parse_size("1MiB"), help="object size, e.g. 4KiB, 64MiB")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--objects", type=int, help="objects prepared for get/stat/list/mixed")
    ap.add_argument("--ratio", type=parse_ratio, default=0.5, help="mixed: GET share (0.7, 70%%, 7:3 GET:PUT)")
    ap.add_argument("--part-size", type=parse_size, help="multipart PUT in parts of this size (>= 5MiB)")
    ap.add_argument("--bucket", help="use this existing bucket instead of creating one")
    ap.add_argument("--prefix", default=None, help="key prefix (default: bench/<random>/)")
    ap.add_argument("--seed", type=int, default=1, help="content seed")
    ap.add_argument("--keep", action="store_true", help="leave the bucket and objects in place")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--plot", metavar="FILE.png", help="draw throughput over time and latency percentiles")
    ap.add_argument("--processes", type=int, default=1, help="client processes sharing --concurrency")
    ap.add_argument("--worker-job", type=Path, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker_job:
        _worker_job(args.worker_job)
        return 0
    if not args.access_key or not args.secret_key:
        print("bench: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --access-key/--secret-key)", file=sys.stderr)
        return 2
    if args.concurrency < 1 or args.duration <= 0 or args.size < 0 or args.processes < 1:
        print("bench: --concurrency and --duration must be positive", file=sys.stderr)
        return 2
    spec = Spec(
        op=args.op,
        size=args.size,
        concurrency=args.concurrency,
        duration=args.duration,
        objects=args.objects,
        get_ratio=args.ratio,
        part_size=args.part_size,
        seed=args.seed,
        prefix=args.prefix if args.prefix is not None else f"bench/{secrets.token_hex(3)}/",
    )
    creds = Credentials(args.access_key, args.secret_key, args.region)
    try:
        summary, result = event_loop.run(
            run_bench(
                args.endpoint, creds, spec, args.bucket, args.keep, processes=args.processes, ca_bundle=args.ca_bundle
            )
        )
    except (S3RequestError, aiohttp.ClientError, OSError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        table(summary)
    if args.plot:
        plot(result, args.plot, f"{args.op} {human_size(args.size)} x{args.concurrency}  {args.endpoint}")
    print(json_line(summary), flush=True)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
