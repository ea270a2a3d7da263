"""What the policy check costs: 4 KiB GETs from a bucket with a five-statement bucket policy beside the same
from a bucket without one, in one run (issue 17: at most +10 %).

    python -m bench.policy [--rounds 3] [--duration 3] [--concurrency 16] [--json]

Starts `tessera server` on temporary drives and makes a user (the root is never judged by policies, so the
GETs are a user's, in buckets the user owns). One bucket has no policy; the other has five statements that
all have to be read for every GET (conditions on the source address, the user name, the time, and a Deny
on a prefix nobody reads), so every request is judged in full. The rounds alternate between the buckets
and the figure is the median of the per-round ratios of the server's CPU time per GET (the request rate is
reported too, but on a shared machine it swings too much between runs to judge a few percent by).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.client import Credentials, S3Client
from bench.proc_stats import cpu_seconds
from bench.report import summarize
from bench.scenarios import ACCESS_KEY, SECRET_KEY, embedded
from bench.workload import Spec, Workload
from cli import event_loop
from gateway.admin.client import AdminClient

TARGET = 0.10  # the policy check may cost at most this share of the rate without it
_ARN = "arn:aws:s3:::"


def five_statements(bucket: str, user: str) -> str:
    """A realistic bucket policy: every statement is evaluated for a GET, none of them denies it."""
    objects = f"{_ARN}{bucket}/*"
    me = {"AWS": f"arn:aws:iam::tessera:user/{user}"}
    statements = [
        {"Sid": "LoopbackReads", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": objects,
         "Condition": {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}},
        {"Sid": "TeamWrites", "Effect": "Allow", "Principal": me, "Action": ["s3:PutObject", "s3:DeleteObject"],
         "Resource": objects, "Condition": {"StringLike": {"aws:username": "bench-*"}}},
        {"Sid": "Listing", "Effect": "Allow", "Principal": me, "Action": "s3:ListBucket",
         "Resource": f"{_ARN}{bucket}", "Condition": {"StringLike": {"s3:prefix": ["bench/*", ""]}}},
        {"Sid": "NoSecrets", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": f"{_ARN}{bucket}/secret/*"},
        {"Sid": "UntilNextCentury", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": objects, "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}}},
    ]  # fmt: skip
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


async def _measure(endpoint: str, pid: int, rounds: int, duration: float, concurrency: int) -> dict[str, Any]:
    async with AdminClient(endpoint, ACCESS_KEY, SECRET_KEY) as admin:
        user = await admin.add_user("bench-policy")
    creds = Credentials(user["access_key"], user["secret_key"])
    spec = Spec("get", 4096, concurrency=concurrency, duration=duration, objects=64)
    async with S3Client(endpoint, creds, connections=max(concurrency, 4)) as client:
        workloads = {}
        for name in ("plain", "policy"):
            bucket = f"bench-{name}"
            await client.create_bucket(bucket)
            workloads[name] = Workload(client, bucket, spec)
            await workloads[name].prepare()
        doc = five_statements("bench-policy", "bench-policy").encode()
        await client.request("PUT", "bench-policy", query=[("policy", "")], body=doc, expect=(204,))
        rates: dict[str, list[float]] = {"plain": [], "policy": []}
        cpu: dict[str, list[float]] = {"plain": [], "policy": []}  # server CPU microseconds per GET
        for wl in workloads.values():  # a warm-up run each (connections, caches), not counted
            await wl.run()
        for r in range(rounds):
            order = list(workloads.items())
            for name, wl in order if r % 2 == 0 else order[::-1]:  # neither always goes first
                before = cpu_seconds(pid)
                summary = summarize(await wl.run(), endpoint)
                if summary["errors"]:
                    raise RuntimeError(f"{name}: {summary['error_kinds']}")
                rates[name].append(summary["objects_s"])
                cpu[name].append((cpu_seconds(pid) - before) / summary["ops"] * 1e6)
    # Judged by the server's CPU time per GET: on a machine shared with other work the request rate swings
    # by a third between runs of the same bucket, the CPU a request costs far less.
    cost = statistics.median(p / q for p, q in zip(cpu["policy"], cpu["plain"], strict=True)) - 1
    return {
        "plain_objects_s": statistics.median(rates["plain"]),
        "policy_objects_s": statistics.median(rates["policy"]),
        "plain_cpu_us": round(statistics.median(cpu["plain"]), 1),
        "policy_cpu_us": round(statistics.median(cpu["policy"]), 1),
        "cost": round(cost, 4),
        "target": TARGET,
        "met": cost <= TARGET,
        "rounds": rounds,
        "per_round": {k: [round(x) for x in v] for k, v in rates.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="alternating runs per bucket (medians reported)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tessera-policy-bench-") as tmp:
        dep = embedded(Path(tmp), m=0)
        with dep.stack:
            pid = dep.pids["server"]
            out = event_loop.run(_measure(dep.endpoint, pid, args.rounds, args.duration, args.concurrency))
    if not args.json:
        print(f"4 KiB GET without a bucket policy: {out['plain_objects_s']:.0f}/s, {out['plain_cpu_us']} us CPU each")
        print(f"4 KiB GET with five statements:   {out['policy_objects_s']:.0f}/s, {out['policy_cpu_us']} us CPU each")
        print(f"cost of the policy check: {out['cost']:+.1%} server CPU per GET (target at most +{TARGET:.0%})")
    print(json.dumps(out))
    return 0 if out["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
