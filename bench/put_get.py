"""64 MiB PUT and GET through `tessera server`, beside this machine's own ceilings in the same run.

    python -m bench.put_get [--size-mib 64] [--runs 5]

Starts a server on temporary drives, times boto3 PUTs and GETs (median of --runs), and reports
each as MB/s and as a ratio to the single-core MD5 rate and to pyeclib's encode rate alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3
from botocore.config import Config

from cli.launch import launch, stop
from cli.malloc_tuning import tune_malloc
from gateway.erasure import Scheme

MiB = 1 << 20


def rate(fn: Callable[[], int], runs: int) -> float:
    """Median MB/s of fn(), which returns the bytes it moved."""
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        samples.append(n / (time.perf_counter() - t) / 1e6)
    return statistics.median(samples)


def ceilings(runs: int) -> dict[str, float]:
    tune_malloc()  # the same settings the server runs with, so the encode ceiling is a fair one
    data = os.urandom(64 * MiB)
    seg = data[:MiB]
    scheme = Scheme(4, 2)

    def md5() -> int:
        hashlib.md5(data).digest()
        return len(data)

    def encode() -> int:
        for _ in range(64):
            scheme.encode(seg)
        return 64 * MiB

    return {"md5_mb_s": rate(md5, runs), "pyeclib_encode_mb_s": rate(encode, runs)}


def through_tessera(size: int, runs: int) -> dict[str, float]:
    access, secret = "BENCHKEY0001", "bench-secret-0123456789"
    env = {**os.environ, "TESSERA_ACCESS_KEY": access, "TESSERA_SECRET_KEY": secret}
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        base = Path(tmp)
        drives = [str(base / f"d{i}") for i in range(6)]
        run = launch(["server", *drives, "--listen", "127.0.0.1:0"], env, base / "server.log")
        proc, endpoint = run.proc, run.endpoint
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                region_name="us-east-1",
                config=Config(max_pool_connections=4),
            )
            s3.create_bucket(Bucket="bench")
            body = os.urandom(size)

            def put() -> int:
                s3.put_object(Bucket="bench", Key="obj", Body=body)
                return size

            def get() -> int:
                n = 0
                for chunk in s3.get_object(Bucket="bench", Key="obj")["Body"].iter_chunks(MiB):
                    n += len(chunk)
                assert n == size
                return n

            return {"put_mb_s": rate(put, runs), "get_mb_s": rate(get, runs)}
        finally:
            stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = ceilings(args.runs)
    got = through_tessera(args.size_mib * MiB, args.runs)
    result = {**got, **base}
    for op in ("put", "get"):
        result[f"{op}_vs_md5"] = got[f"{op}_mb_s"] / base["md5_mb_s"]
        result[f"{op}_vs_encode"] = got[f"{op}_mb_s"] / base["pyeclib_encode_mb_s"]
    print(f"{args.size_mib} MiB objects, EC 4+2, median of {args.runs} runs")
    print(
        f"  PUT {got['put_mb_s']:8.1f} MB/s   {result['put_vs_md5']:.2f} x MD5   {result['put_vs_encode']:.2f} x encode"
    )
    print(
        f"  GET {got['get_mb_s']:8.1f} MB/s   {result['get_vs_md5']:.2f} x MD5   {result['get_vs_encode']:.2f} x encode"
    )
    print(f"  ceilings: MD5 {base['md5_mb_s']:.0f} MB/s, pyeclib encode {base['pyeclib_encode_mb_s']:.0f} MB/s")
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()
