"""Issue 21's large-object figures for bench.scenarios: server CPU per MiB, boto3's 64 MiB PUT, aws-cli's 1 GiB copy.

Each is measured --runs times with the single-core MD5 rate measured just before it, as the other
scenarios are. CPU is the utime+stime of the server processes (every pid of the deployment) over the
run, per MiB moved: on a shared machine it moves far less with other load than a rate does.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.client import S3Client
from bench.limits import hashing
from bench.proc_stats import cpu_seconds
from bench.report import summarize
from bench.workload import Spec, Workload

if TYPE_CHECKING:
    from bench.scenarios import Ceilings, Scenarios

MiB = 1 << 20
BIG_FILE = 1 << 30  # the aws-cli copy
FIGURE_KEYS = ("mb_s", "objects_s", "p50_ms", "p99_ms", "client_cpu_share")


def server_cpu(pids: dict[str, int]) -> float:
    total = 0.0
    for pid in pids.values():
        try:
            total += cpu_seconds(pid)
        except FileNotFoundError:
            continue  # a node killed for the degraded runs
    return total


def md5_ceilings(per_mib: bool = False) -> Ceilings:
    """The single-core MD5 rate in MB/s or, for the CPU figures, as milliseconds of one core per MiB."""

    async def rate() -> float:
        return hashing(3, 64 * MiB)["md5_mb_s"]

    async def ms() -> float:
        return 1000 * MiB / (await rate() * 1e6)

    return {"md5_ms_per_mib": ms} if per_mib else {"md5_mb_s": rate}


def _timed(nbytes: int, seconds: float, client_cpu: float, cpu: float) -> dict[str, Any]:
    """A summary in the shape bench.report gives, for runs that are not Workloads."""
    ms = seconds * 1000
    return {
        "ops": 1,
        "errors": 0,
        "mb_s": nbytes / seconds / 1e6,
        "objects_s": 1 / seconds,
        "p50_ms": ms,
        "p99_ms": ms,
        "client_cpu_share": client_cpu / seconds,
        "cpu_ms_per_mib": cpu * 1000 / (nbytes / MiB),
    }


class LargeObjects:
    def __init__(self, sc: Scenarios, client: S3Client, bucket: str) -> None:
        self.sc, self.client, self.bucket = sc, client, bucket
        self.pids = sc.dep.pids
        self.tmp = Path(sc.dep.stack.enter_context(_tempdir()))

    def _with_cpu(self, run: Callable[[], Awaitable[dict[str, Any]]]) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def go() -> dict[str, Any]:
            c0 = server_cpu(self.pids)
            s = await run()
            moved = s["ops"] * s["size"]
            return {**s, "cpu_ms_per_mib": (server_cpu(self.pids) - c0) * 1000 / max(moved / MiB, 1e-9)}

        return go

    def workload(self, spec: Spec, r: int, keep: Workload | None = None) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def go() -> dict[str, Any]:
            wl = keep or Workload(self.client, self.bucket, replace(spec, prefix=f"{spec.prefix}{r}/"))
            result = await wl.run()
            if keep is None:
                await wl.cleanup()
            return summarize(result)

        return self._with_cpu(go)

    def boto3_put(self, r: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        """put_object of 64 MiB with boto3's default settings (its checksums included), one at a time."""
        import boto3

        from bench.scenarios import ACCESS_KEY, SECRET_KEY

        s3 = boto3.client(
            "s3",
            endpoint_url=self.sc.dep.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        body = os.urandom(64 * MiB)

        def put_all() -> tuple[int, float, float, float]:
            n, c0, u0, t0 = 0, server_cpu(self.pids), _own_cpu(), time.perf_counter()
            while n == 0 or time.perf_counter() - t0 < self.sc.duration:
                s3.put_object(Bucket=self.bucket, Key=f"boto3/{r}/{n}", Body=body)
                n += 1
            return n, time.perf_counter() - t0, _own_cpu() - u0, server_cpu(self.pids) - c0

        async def go() -> dict[str, Any]:
            n, seconds, client, cpu = await asyncio.to_thread(put_all)
            await asyncio.to_thread(
                lambda: [s3.delete_object(Bucket=self.bucket, Key=f"boto3/{r}/{i}") for i in range(n)]
            )
            return {**_timed(n * len(body), seconds, client, cpu), "ops": n, "objects_s": n / seconds}

        return go

    def awscli_copy(self, r: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        """`aws s3 cp` of a 1 GiB file with aws-cli's defaults (8 MiB parts, 10 at once)."""
        from bench.scenarios import ACCESS_KEY, SECRET_KEY

        src = self.tmp / "1gib.bin"
        if not src.exists():
            with open(src, "wb") as f:
                for _ in range(BIG_FILE // (64 * MiB)):
                    f.write(os.urandom(64 * MiB))
        aws = shutil.which("aws")
        cmd = [aws] if aws else [sys.executable, "-m", "awscli"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        # No profile or config of the user's: the defaults are what is measured.
        env.update(AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        url = f"s3://{self.bucket}/awscli/{r}/1gib.bin"

        def copy() -> dict[str, Any]:
            c0, u0, t0 = server_cpu(self.pids), _children_cpu(), time.perf_counter()
            args = [*cmd, "--endpoint-url", self.sc.dep.endpoint, "s3", "cp", "--only-show-errors", str(src), url]
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
            seconds = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(f"aws s3 cp exited {done.returncode}: {done.stderr[-2000:]}")
            out = _timed(BIG_FILE, seconds, _children_cpu() - u0, server_cpu(self.pids) - c0)
            subprocess.run(
                [*cmd, "--endpoint-url", self.sc.dep.endpoint, "s3", "rm", url], env=env, capture_output=True
            )
            return out

        async def go() -> dict[str, Any]:
            return await asyncio.to_thread(copy)

        return go

    async def run(self) -> None:
        sc = self.sc
        put = Spec("put", 64 * MiB, 2, sc.duration, prefix="cpuput/")
        get = Workload(self.client, self.bucket, Spec("get", 64 * MiB, 2, sc.duration, objects=4, prefix="cpuget/"))
        await get.prepare()
        for r in range(sc.runs):
            await sc.measure("put_64mib_cpu", r, self.workload(put, r), "cpu_ms_per_mib", md5_ceilings(True))
            await sc.measure("get_64mib_cpu", r, self.workload(get.spec, r, get), "cpu_ms_per_mib", md5_ceilings(True))
            await sc.measure("put_64mib_boto3", r, self.boto3_put(r), "mb_s", md5_ceilings())
            await sc.measure("awscli_cp_1gib", r, self.awscli_copy(r), "mb_s", md5_ceilings())
        await get.cleanup()


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _tempdir() -> Any:
    import tempfile

    return tempfile.TemporaryDirectory(prefix="tessera-large-")
