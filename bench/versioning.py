"""Versioning's cost: PUT and GET in a versioned bucket beside an unversioned one, and ListObjectVersions.

    python -m bench.versioning [--duration 5] [--rounds 3] [--big-mib 64] [--versions 100000] [--keys 10000]

All against one embedded `tessera server` on temporary drives, in the same run:
- 4 KiB PUT of new keys, 4 KiB overwrites of 200 keys, and 4 KiB GET (python -m bench's workload, 16
  concurrent clients) in an unversioned bucket and in a versioned one, alternating, --rounds times each; the
  median rates and their ratio. An overwrite in a versioned bucket adds a version (a new entry in the index,
  where an unversioned overwrite replaces one): shown apart from PUTs of new keys.
- 64 MiB PUT and GET (boto3, one at a time, median of --rounds) in each bucket, and their ratio.
- ListObjectVersions over --versions versions of --keys keys (every key overwritten versions/keys times),
  paginated 1,000 at a time, in entries per second, beside ListObjectsV2 over the same bucket's current keys.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import xml.etree.ElementTree as ET

from bench.__main__ import run_bench
from bench.client import Credentials, S3Client
from bench.put_get import ACCESS, SECRET, MiB, embedded_server, s3_client
from bench.workload import Spec

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
PLAIN, VERSIONED = "bench-plain", "bench-versioned"


async def enable_versioning(client: S3Client, bucket: str) -> None:
    body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    await client.request("PUT", bucket, query=[("versioning", "")], body=body)


async def small_rates(endpoint: str, creds: Credentials, duration: float, rounds: int) -> dict[str, float]:
    """Median 4 KiB PUT (new keys), overwrite and GET objects/s in each bucket; the buckets take turns so drift
    hits both alike. Each round's PUTs go under a prefix of their own: no key of an earlier round is overwritten."""
    samples: dict[str, list[float]] = {}
    for r in range(rounds):
        specs = {
            "put": Spec("put", 4096, concurrency=16, duration=duration, prefix=f"small-put-{r}/"),
            "over": Spec("mixed", 4096, concurrency=16, duration=duration, objects=200, get_ratio=0.0, prefix="over/"),
            "get": Spec("get", 4096, concurrency=16, duration=duration, objects=200, prefix="small-get/"),
        }
        for op, spec in specs.items():
            for bucket in (PLAIN, VERSIONED):
                summary, _ = await run_bench(endpoint, creds, spec, bucket=bucket, keep=True)
                assert summary["errors"] == 0, summary
                samples.setdefault(f"{bucket}_{op}_4k_ops_s", []).append(summary["objects_s"])
    return {name: statistics.median(values) for name, values in samples.items()}


def big_rates(endpoint: str, size: int, rounds: int) -> dict[str, float]:
    """Median MB/s of one-at-a-time PUTs and GETs of `size` bytes in each bucket, taking turns. Each PUT is a
    new key: an overwrite in the unversioned bucket would delete the old data while the next request runs."""
    s3 = s3_client(endpoint)
    body = os.urandom(size)
    samples: dict[str, list[float]] = {}
    for i in range(rounds):
        for bucket in (PLAIN, VERSIONED):
            t = time.perf_counter()
            s3.put_object(Bucket=bucket, Key=f"big-{i}", Body=body)
            samples.setdefault(f"{bucket}_put_big_mb_s", []).append(size / (time.perf_counter() - t) / 1e6)
    for i in range(rounds):
        for bucket in (PLAIN, VERSIONED):
            t = time.perf_counter()
            n = sum(len(c) for c in s3.get_object(Bucket=bucket, Key=f"big-{i}")["Body"].iter_chunks(MiB))
            assert n == size
            samples.setdefault(f"{bucket}_get_big_mb_s", []).append(size / (time.perf_counter() - t) / 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


async def fill_versions(client: S3Client, bucket: str, versions: int, keys: int) -> None:
    """`versions` tiny versions spread evenly over `keys` keys, 64 writes in flight."""
    await client.put_many(bucket, (f"k/{i % keys:07d}" for i in range(versions)), b"v", concurrency=64)


async def list_rate(client: S3Client, bucket: str, versions: bool) -> tuple[int, float]:
    """(entries listed, entries/s) of a whole paginated ListObjectVersions (or ListObjectsV2) of the bucket."""
    entries, started = 0, time.perf_counter()
    key_marker = id_marker = token = ""
    while True:
        if versions:
            query = [("versions", ""), ("max-keys", "1000"), ("key-marker", key_marker)]
            query += [("version-id-marker", id_marker)] if id_marker else []
        else:
            query = [("list-type", "2"), ("max-keys", "1000")] + ([("continuation-token", token)] if token else [])
        _, _, payload = await client.request("GET", bucket, query=query)
        root = ET.fromstring(payload)
        entries += len(root.findall(f"{_NS}Version")) + len(root.findall(f"{_NS}DeleteMarker"))
        entries += len(root.findall(f"{_NS}Contents"))
        if root.findtext(f"{_NS}IsTruncated") != "true":
            break
        key_marker = root.findtext(f"{_NS}NextKeyMarker") or ""
        id_marker = root.findtext(f"{_NS}NextVersionIdMarker") or ""
        token = root.findtext(f"{_NS}NextContinuationToken") or ""
    return entries, entries / (time.perf_counter() - started)


async def measure(endpoint: str, args: argparse.Namespace) -> dict[str, float]:
    creds = Credentials(ACCESS, SECRET)
    async with S3Client(endpoint, creds, connections=64) as client:
        for bucket in (PLAIN, VERSIONED, "bench-listing"):
            await client.create_bucket(bucket)
        await enable_versioning(client, VERSIONED)
        await enable_versioning(client, "bench-listing")
    got = await small_rates(endpoint, creds, args.duration, args.rounds)
    got |= await asyncio.to_thread(big_rates, endpoint, args.big_mib * MiB, args.rounds)
    async with S3Client(endpoint, creds, connections=64) as client:
        t = time.perf_counter()
        await fill_versions(client, "bench-listing", args.versions, args.keys)
        got["fill_versions_s"] = time.perf_counter() - t
        got["listed_versions"], got["list_versions_entries_s"] = await list_rate(client, "bench-listing", True)
        got["listed_keys"], got["list_v2_keys_s"] = await list_rate(client, "bench-listing", False)
    assert got["listed_versions"] == args.versions and got["listed_keys"] == min(args.keys, args.versions), got
    for op in ("put_4k_ops_s", "over_4k_ops_s", "get_4k_ops_s", "put_big_mb_s", "get_big_mb_s"):
        op_name = op.rsplit("_", 2)[0]
        got[f"ratio_{op_name}"] = got[f"{VERSIONED}_{op}"] / got[f"{PLAIN}_{op}"]
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of each 4 KiB run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=64)
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--keys", type=int, default=10_000)
    args = ap.parse_args()
    with embedded_server() as run:
        got = asyncio.run(measure(run.endpoint, args))
    print(f"versioned vs unversioned bucket, embedded server, median of {args.rounds} rounds")
    for what, label, unit in (
        ("put_4k_ops_s", "PUT 4 KiB", "ops/s"),
        ("over_4k_ops_s", "overwrite 4 KiB", "ops/s"),
        ("get_4k_ops_s", "GET 4 KiB", "ops/s"),
        ("put_big_mb_s", f"PUT {args.big_mib} MiB", "MB/s"),
        ("get_big_mb_s", f"GET {args.big_mib} MiB", "MB/s"),
    ):
        plain, versioned = got[f"{PLAIN}_{what}"], got[f"{VERSIONED}_{what}"]
        print(
            f"  {label:<16} unversioned {plain:9.1f} {unit}   versioned {versioned:9.1f} {unit}   "
            f"ratio {versioned / plain:.3f}"
        )
    print(
        f"  ListObjectVersions over {args.versions} versions of {args.keys} keys: "
        f"{got['list_versions_entries_s']:.0f} entries/s; ListObjectsV2 of the same bucket: "
        f"{got['list_v2_keys_s']:.0f} keys/s (filled in {got['fill_versions_s']:.0f} s)"
    )
    print(json.dumps({k: round(v, 3) for k, v in got.items()}))


if __name__ == "__main__":
    main()
