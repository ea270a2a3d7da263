"""64 MiB PUT and GET through `tessera server` and a `tessera dev` cluster, beside this machine's
own ceilings, all in the same run.

    python -m bench.put_get [--size-mib 64] [--runs 5] [--no-cluster]

Times boto3 PUTs and GETs (median of --runs) against an embedded server on temporary drives,
then against a 6-node cluster (1 metadata service, 1 gateway), then GETs on that cluster with
two storage nodes killed. Each figure is reported as MB/s and as a ratio to the single-core MD5
rate and to pyeclib's encode rate alone.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from cli.dev import DevCluster
from cli.launch import Launched, launch, stop
from cli.malloc_tuning import tune_malloc
from gateway.objects.erasure import Scheme

MiB = 1 << 20
ACCESS, SECRET = "BENCHKEY0001", "bench-secret-0123456789"


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


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def put_get(s3: Any, size: int, runs: int, prefix: str) -> dict[str, float]:
    s3.create_bucket(Bucket="bench")
    body = os.urandom(size)

    def put() -> int:
        s3.put_object(Bucket="bench", Key="obj", Body=body)
        return size

    return {f"{prefix}put_mb_s": rate(put, runs), f"{prefix}get_mb_s": rate(lambda: get(s3, size), runs)}


def get(s3: Any, size: int) -> int:
    n = 0
    for chunk in s3.get_object(Bucket="bench", Key="obj")["Body"].iter_chunks(MiB):
        n += len(chunk)
    assert n == size
    return n


@contextlib.contextmanager
def embedded_server(base: Path | None = None, flags: Sequence[str] = ()) -> Iterator[Launched]:
    """A `tessera server` on six drives under `base` (else a temporary directory, removed after) with the bench's
    credentials and `flags`, stopped on the way out."""
    if base is None:
        with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp, embedded_server(Path(tmp), flags) as run:
            yield run
        return
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS, "TESSERA_SECRET_KEY": SECRET}
    base.mkdir(parents=True, exist_ok=True)
    drives = [str(base / f"d{i}") for i in range(6)]
    run = launch(["server", *drives, "--listen", "127.0.0.1:0", *flags], env, base / "server.log")
    try:
        yield run
    finally:
        stop(run.proc)


def embedded(base: Path, size: int, runs: int) -> dict[str, float]:
    with embedded_server(base) as run:
        return put_get(s3_client(run.endpoint), size, runs, "embedded_")


def cluster(base: Path, size: int, runs: int) -> dict[str, float]:
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS, "TESSERA_SECRET_KEY": SECRET}
    c = DevCluster(base, nodes=6, metas=1, gateways=1, env=env)
    c.start()
    try:
        s3 = s3_client(c.endpoint())
        result = put_get(s3, size, runs, "cluster_")
        c.kill("node1")
        c.kill("node2")
        result["cluster_2down_get_mb_s"] = rate(lambda: get(s3, size), runs)
        return result
    finally:
        c.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-cluster", action="store_true", help="only the embedded server")
    args = ap.parse_args()
    size = args.size_mib * MiB
    base = ceilings(args.runs)
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        got = embedded(Path(tmp) / "embedded", size, args.runs)
        if not args.no_cluster:
            got |= cluster(Path(tmp) / "cluster", size, args.runs)
    print(f"{args.size_mib} MiB objects, EC 4+2, median of {args.runs} runs (boto3 client)")
    for name, value in got.items():
        label = name.removesuffix("_mb_s").replace("_", " ")
        print(
            f"  {label:<22} {value:8.1f} MB/s   {value / base['md5_mb_s']:.2f} x MD5   "
            f"{value / base['pyeclib_encode_mb_s']:.3f} x encode"
        )
    print(f"  ceilings: MD5 {base['md5_mb_s']:.0f} MB/s, pyeclib encode {base['pyeclib_encode_mb_s']:.0f} MB/s")
    print(json.dumps({k: round(v, 1) for k, v in (got | base).items()}))


if __name__ == "__main__":
    main()
