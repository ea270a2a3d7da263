"""What a bucket quota costs a write: PUT latency into a bucket with a quota beside one without, both holding
the same number of objects.

    python -m bench.quota [--objects 20000] [--puts 50] [--rounds 3]

One embedded `tessera server` on temporary drives. Both buckets are filled with --objects one-byte objects; a
quota is set on one (`admin bucket quota`, far above what they hold); then --puts PUTs of 100 bytes go to each
bucket in turn, one at a time, --rounds times. Every PUT into the quota bucket is checked against the bucket's
usage (docs/quotas.md). Prints the median latency of each and their ratio, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from bench.client import Credentials, S3Client
from bench.put_get import ACCESS, SECRET, embedded_server
from gateway.admin.client import AdminClient

PLAIN, QUOTA = "bench-no-quota", "bench-quota"


async def measure(endpoint: str, args: argparse.Namespace) -> dict[str, float]:
    async with S3Client(endpoint, Credentials(ACCESS, SECRET), connections=32) as client:
        t = time.perf_counter()
        for bucket in (PLAIN, QUOTA):
            await client.create_bucket(bucket)
            await client.put_many(bucket, (f"fill/{i:08d}" for i in range(args.objects)), b"v")
        filled = time.perf_counter() - t
        async with AdminClient(endpoint, ACCESS, SECRET) as admin:
            await admin.set_bucket_quota(QUOTA, 1 << 50, None)
            usage = (await admin.bucket_info(QUOTA))["usage"]
        assert usage["objects"] == args.objects, usage
        samples: dict[str, list[float]] = {PLAIN: [], QUOTA: []}
        body = b"x" * 100
        for r in range(args.rounds):
            for bucket in (PLAIN, QUOTA):
                for i in range(args.puts):
                    t = time.perf_counter()
                    await client.put_object(bucket, f"put/{r}/{i}", body, len(body))
                    samples[bucket].append(time.perf_counter() - t)
    plain, quota = (statistics.median(samples[b]) * 1000 for b in (PLAIN, QUOTA))
    return {"objects": args.objects, "fill_s": filled, "put_ms": plain, "put_quota_ms": quota, "ratio": quota / plain}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--objects", type=int, default=20_000, help="objects in each bucket before the PUTs")
    ap.add_argument("--puts", type=int, default=50, help="PUTs per bucket per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with embedded_server() as run:
        got = asyncio.run(measure(run.endpoint, args))
    print(f"PUT of 100 bytes, one at a time, into buckets of {args.objects} objects (embedded server)")
    print(
        f"  without a quota {got['put_ms']:8.2f} ms   with a quota {got['put_quota_ms']:8.2f} ms   "
        f"ratio {got['ratio']:.2f}"
    )
    print(json.dumps({k: round(v, 3) for k, v in got.items()}))


if __name__ == "__main__":
    main()
