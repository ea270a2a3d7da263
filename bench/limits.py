"""This machine's own ceilings, measured in one run, for judging an object store's figures against.

    python -m bench.limits [--quick] [--json]

- hashing: MD5 (single core; S3's ETag), SHA256, CRC32, CRC32C, CRC64NVME (awscrt, as the gateway uses)
- erasure coding: pyeclib 4+2 encode, healthy decode and decode with 2 data fragments lost, 1 MiB segments
- aiohttp over loopback: this package's S3 client against a trivial aiohttp server in another process that
  stores nothing (PUT discards the body, GET regenerates it): 64 MiB streaming PUT/GET MB/s, an empty
  handler's request rate at concurrency 32, and 4 KiB PUT/GET rates, with the client's own CPU use, which
  shows whether the client or the server side saturates first
- storage: fsync'd 4 KiB file creations per second (write, fsync, rename, as durable stores write)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

from bench.client import Credentials
from bench.proc_stats import cpu_seconds
from cli import event_loop

MiB = 1 << 20
TRIVIAL_CREDS = Credentials("TRIVIALKEY", "trivial-secret")


def _best_rate(fn: Callable[[], int], runs: int) -> float:
    """Best MB/s of fn() over runs (fn returns the bytes it processed).

    A ceiling is the best this machine did: other load only ever lowers a figure, so the maximum is the
    estimate least disturbed by it.
    """
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        samples.append(n / (time.perf_counter() - t) / 1e6)
    return max(samples)


def hashing(runs: int = 3, size: int = 64 * MiB) -> dict[str, float]:
    from awscrt import checksums

    data = os.urandom(size)

    def digest(name: str) -> Callable[[], int]:
        def run() -> int:
            hashlib.new(name, data).digest()
            return size

        return run

    def crc(fn: Callable[[bytes, int], int]) -> Callable[[], int]:
        def run() -> int:
            fn(data, 0)
            return size

        return run

    return {
        "md5_mb_s": _best_rate(digest("md5"), runs),
        "sha256_mb_s": _best_rate(digest("sha256"), runs),
        "crc32_mb_s": _best_rate(crc(checksums.crc32), runs),
        "crc32c_mb_s": _best_rate(crc(checksums.crc32c), runs),
        "crc64nvme_mb_s": _best_rate(crc(checksums.crc64nvme), runs),
    }


def erasure(runs: int = 3, segments: int = 64) -> dict[str, float]:
    from cli.malloc_tuning import tune_malloc
    from gateway.objects.erasure import Scheme

    tune_malloc()  # the server runs with these settings; without them encode is ~10x slower
    scheme = Scheme(4, 2)
    segment = os.urandom(MiB)
    fragments = scheme.encode(segment)
    assert scheme.decode(fragments[2:]) == segment

    def encode() -> int:
        for _ in range(segments):
            scheme.encode(segment)
        return segments * MiB

    def decode_healthy() -> int:
        for _ in range(segments):
            scheme.decode(fragments[:4])
        return segments * MiB

    def decode_degraded() -> int:  # fragments 0 and 1 (data) lost: real Reed-Solomon reconstruction
        for _ in range(segments):
            scheme.decode(fragments[2:])
        return segments * MiB

    return {
        "ec_4_2_encode_mb_s": _best_rate(encode, runs),
        "ec_4_2_decode_mb_s": _best_rate(decode_healthy, runs),
        "ec_4_2_decode_degraded_mb_s": _best_rate(decode_degraded, runs),
    }


def fsync_files(directory: str | None = None, seconds: float = 1.5, size: int = 4096) -> dict[str, float]:
    """Durable small-file creations per second: write to a temporary name, fsync, rename (one thread)."""
    payload = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="tessera-limits-", dir=directory) as tmp:
        n = 0
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            tmp_path = os.path.join(tmp, f"{n}.tmp")
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp_path, os.path.join(tmp, str(n)))
            n += 1
        return {"fsync_4kib_files_s": n / (time.perf_counter() - t0)}


# -- the trivial server ----------------------------------------------------------------------------


def serve_trivial(seed: int) -> None:
    """An aiohttp server that speaks just enough S3 for bench and stores only sizes (run in its own process)."""
    from aiohttp import web

    from bench.workload import Content

    content = Content(seed)
    sizes: dict[str, int] = {}
    ns = "http://s3.amazonaws.com/doc/2006-03-01/"

    def key_of(request: web.Request) -> tuple[str, str]:
        raw = unquote_to_bytes(request.rel_url.raw_path).decode("utf-8", "surrogateescape")
        bucket, _, key = raw.lstrip("/").partition("/")
        return bucket, key

    async def handle(request: web.Request) -> web.StreamResponse:
        _, key = key_of(request)
        method = request.method
        if not key:
            if method == "GET":
                prefix = request.query.get("prefix", "")
                keys = sorted(k for k in sizes if k.startswith(prefix))[: int(request.query.get("max-keys", 1000))]
                root = ET.Element("ListBucketResult", xmlns=ns)
                ET.SubElement(root, "IsTruncated").text = "false"
                for k in keys:
                    ET.SubElement(ET.SubElement(root, "Contents"), "Key").text = k
                return web.Response(body=ET.tostring(root), content_type="application/xml")
            if method == "POST":  # DeleteObjects
                for el in ET.fromstring(await request.read()).iter("Key"):
                    sizes.pop(el.text or "", None)
                return web.Response(body=b"<DeleteResult/>", content_type="application/xml")
            return web.Response(status=204 if method == "DELETE" else 200)
        if method == "PUT":
            n = 0
            async for piece in request.content.iter_any():  # discard, but read it all: that is the work
                n += len(piece)
            sizes[key] = n
            return web.Response(headers={"ETag": '"0"'})
        if method == "DELETE":
            sizes.pop(key, None)
            return web.Response(status=204)
        size = sizes.get(key)
        if size is None:
            return web.Response(status=404)
        if method == "HEAD":
            return web.Response(headers={"Content-Length": str(size)})
        body = content.body(key, size)
        if isinstance(body, bytes):
            return web.Response(body=body)
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        for piece in body:
            await resp.write(piece)  # 1 MiB at a time, never one big buffer
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"Endpoint: http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    try:
        event_loop.run(main())
    except KeyboardInterrupt:
        pass


@contextmanager
def trivial_server(seed: int = 1) -> Iterator[tuple[str, int]]:
    """Start serve_trivial in a child process; yield (endpoint, pid); stop it by PID."""
    from cli.launch import stop

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.limits", "--serve-trivial", "--seed", str(seed)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("Endpoint: "):
            raise RuntimeError(f"trivial server did not start (exit {proc.poll()})")
        yield line.split(None, 1)[1].strip(), proc.pid
    finally:
        stop(proc)


async def loopback(endpoint: str, server_pid: int, seconds: float = 1.5, repeats: int = 2) -> dict[str, float]:
    """The bench client against the trivial server: the most aiohttp on loopback gives this client.

    Each figure is the best of `repeats` runs (see _best_rate), with the client's and the server's CPU use
    in that run: a side at ~1.0 core is the one that saturated.
    """
    from bench.__main__ import run_bench
    from bench.workload import Spec

    out: dict[str, float] = {}
    runs = [
        ("stream_put_64mib", Spec("put", 64 * MiB, concurrency=1, duration=seconds, prefix="lim/p/")),
        ("stream_get_64mib", Spec("get", 64 * MiB, concurrency=1, duration=seconds, objects=2, prefix="lim/g/")),
        ("empty_handler", Spec("stat", 0, concurrency=32, duration=seconds, objects=32, prefix="lim/e/")),
        ("put_4kib", Spec("put", 4096, concurrency=32, duration=seconds, prefix="lim/p4/")),
        ("get_4kib", Spec("get", 4096, concurrency=32, duration=seconds, objects=256, prefix="lim/g4/")),
    ]
    for name, spec in runs:
        best: dict[str, float] = {}
        for _ in range(repeats):
            figure, row = await _loopback_once(endpoint, server_pid, name, spec, run_bench)
            if figure > best.get("figure", -1.0):
                best = {"figure": figure, **row}
        del best["figure"]
        out |= best
    return out


async def _loopback_once(
    endpoint: str, server_pid: int, name: str, spec: Any, run_bench: Any
) -> tuple[float, dict[str, float]]:
    cpu0 = cpu_seconds(server_pid)
    summary, result = await run_bench(endpoint, TRIVIAL_CREDS, spec, bucket="trivial")
    # Server CPU includes preparing and cleaning up, so it is an upper bound.
    server_share = (cpu_seconds(server_pid) - cpu0) / max(result.ended - result.started, 1e-9)
    if summary["errors"]:
        raise RuntimeError(f"loopback {name}: {summary.get('error_examples')}")
    figure = summary["mb_s"] if spec.size >= MiB else summary["objects_s"]
    row = {
        f"{name}_{'mb_s' if spec.size >= MiB else 'rps'}": figure,
        f"{name}_client_cpu": summary["client_cpu_share"],
        f"{name}_server_cpu": round(server_share, 3),
        # What the client alone could drive with one whole core: ops per second of its own CPU time.
        f"{name}_client_capacity_rps": summary["ops"] / max(result.client_cpu_s, 1e-9),
    }
    return figure, row


def measure(quick: bool = False, directory: str | None = None, seed: int = 1) -> dict[str, float]:
    """Every ceiling, in this process (hashing, erasure, fsync) and against a trivial server (loopback)."""
    runs = 1 if quick else 5
    result: dict[str, float] = {}
    result |= hashing(runs, 16 * MiB if quick else 64 * MiB)
    result |= erasure(runs, 16 if quick else 64)
    result |= fsync_files(directory, 0.5 if quick else 1.5)
    with trivial_server(seed) as (endpoint, pid):
        result |= event_loop.run(loopback(endpoint, pid, 1.0 if quick else 1.5, 1 if quick else 3))
    return {k: round(v, 3) for k, v in result.items()}


def print_table(limits: dict[str, Any]) -> None:
    width = max(map(len, limits))
    for name, value in limits.items():
        unit = ""
        if name.endswith("_mb_s"):
            unit = "MB/s"
        elif name.endswith(("_rps", "_files_s")):
            unit = "/s"
        elif name.endswith("_cpu"):
            unit = "cores"
        print(f"  {name:<{width}}  {value:>12,.2f} {unit}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (less precise)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--dir", help="directory for the fsync test (default: the temp directory)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serve-trivial", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_trivial:
        serve_trivial(args.seed)
        return 0
    limits = measure(args.quick, args.dir, args.seed)
    if not args.json:
        print(f"This machine's ceilings ({os.cpu_count()} cores)")
        print_table(limits)
    print(json.dumps(limits), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
