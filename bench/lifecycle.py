"""Lifecycle's pace: expiring --objects objects, and what it costs the clients reading meanwhile.

    python -m bench.lifecycle [--objects 100000] [--duration 5]

Against one embedded `tessera server` on temporary drives, in the same run:
- fills a bucket with --objects one-byte objects (64 PUTs in flight) and gives it a rule expiring them (on a past date);
- measures 4 KiB GETs (python -m bench's workload, 16 concurrent clients, --duration seconds) without lifecycle work;
- then starts `tessera admin lifecycle run` on that bucket and measures the same GETs while it runs, and once
  more after it (idle again);
- reports the objects expired per second by the job and both GET rates, with how much of the second GET window
  the job actually overlapped.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

from bench.__main__ import run_bench
from bench.client import Credentials, S3Client
from bench.put_get import ACCESS, SECRET, embedded_server, s3_client
from bench.repair import wait_job
from bench.workload import Spec
from gateway.admin.client import AdminClient

EXPIRE, READ = "bench-expire", "bench-read"


async def get_rate(endpoint: str, creds: Credentials, duration: float) -> float:
    spec = Spec("get", 4096, concurrency=16, duration=duration, objects=200, prefix="read/")
    summary, _ = await run_bench(endpoint, creds, spec, bucket=READ, keep=True)
    assert summary["errors"] == 0, summary
    return float(summary["objects_s"])


async def measure(endpoint: str, args: argparse.Namespace) -> dict[str, float]:
    creds = Credentials(ACCESS, SECRET)
    async with S3Client(endpoint, creds, connections=64) as client:
        for bucket in (EXPIRE, READ):
            await client.create_bucket(bucket)
        started = time.perf_counter()
        await client.put_many(EXPIRE, (f"o/{i:07d}" for i in range(args.objects)), b"x", concurrency=64)
        got = {"objects": float(args.objects), "fill_s": time.perf_counter() - started}
    got["get_4k_ops_s_idle"] = await get_rate(endpoint, creds, args.duration)
    # A date gone by: every object is due at once. The background worker's first pass ran at start, before
    # there were rules, and the next is an hour away: the job alone expires them, and its pace is measured.
    rule = {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": "o/"}, "Expiration": {"Date": "2020-01-01"}}
    s3 = s3_client(endpoint)
    await asyncio.to_thread(
        s3.put_bucket_lifecycle_configuration, Bucket=EXPIRE, LifecycleConfiguration={"Rules": [rule]}
    )
    async with AdminClient(endpoint, ACCESS, SECRET) as admin:
        job = (await admin.run_lifecycle(EXPIRE))["job"]
        got["get_4k_ops_s_during"] = await get_rate(endpoint, creds, args.duration)
        get_end = time.time()
        done = await wait_job(admin, job["id"])
    assert done["phase"] == "done", done
    found = re.search(r"(\d+) expired", done["message"])
    expired = int(found.group(1)) if found else 0
    seconds = done["finished"] - done["started"]
    got["expired_by_job"], got["job_s"] = expired, seconds
    got["expire_objects_s"] = expired / seconds if seconds > 0 else 0.0
    window = (get_end - args.duration, get_end)
    overlap = min(window[1], done["finished"]) - max(window[0], done["started"])
    got["overlap"] = max(0.0, min(1.0, overlap / args.duration))
    # Idle again after the job, so that drift in a shared machine shows, and the ratio is to their mean.
    got["get_4k_ops_s_idle_after"] = await get_rate(endpoint, creds, args.duration)
    idle = (got["get_4k_ops_s_idle"] + got["get_4k_ops_s_idle_after"]) / 2
    got["get_ratio"] = got["get_4k_ops_s_during"] / idle
    left = await asyncio.to_thread(s3.list_objects_v2, Bucket=EXPIRE, MaxKeys=10)
    assert left.get("KeyCount", 0) == 0, "objects left after the pass"
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of each 4 KiB GET run")
    args = ap.parse_args()
    with embedded_server() as run:
        got = asyncio.run(measure(run.endpoint, args))
    print(f"lifecycle expiring {args.objects} objects, embedded server")
    print(
        f"  expired {got['expired_by_job']:.0f} object(s) in {got['job_s']:.1f} s: "
        f"{got['expire_objects_s']:.0f} objects/s"
    )
    print(
        f"  GET 4 KiB: {got['get_4k_ops_s_idle']:.0f} ops/s idle before, {got['get_4k_ops_s_during']:.0f} during the "
        f"run, {got['get_4k_ops_s_idle_after']:.0f} idle after (during / mean idle {got['get_ratio']:.2f}; the job "
        f"overlapped {got['overlap']:.0%} of the GET window)"
    )
    print(json.dumps({k: round(v, 3) for k, v in got.items()}))


if __name__ == "__main__":
    main()
