"""Issue 6's target workloads against a fresh Tessera, each beside the ceiling it is judged by, in one run.

    python -m bench.scenarios [--runs 3] [--duration 4] [--cluster | --workers N] [--profile DIR] [--json]

Measures this machine's limits (bench.limits), starts `tessera server` on temporary drives (or, with
--cluster, a whole `tessera dev` cluster), then runs each scenario --runs times: 64 MiB PUT and GET at
concurrency 1, 4 KiB PUT and GET at concurrency 32, and the GETs degraded, with m fragments of every
object unavailable (embedded server: m drives' fragment files moved away, and back for the next healthy
run; cluster: m storage nodes killed after the healthy runs). Every GET is verified against the bytes put.
Then (bench/client_scenarios.py; --no-large skips them) the server's CPU per MiB of 64 MiB PUTs and GETs,
boto3's 64 MiB put_object and aws-cli's `aws s3 cp` of a 1 GiB file, each beside the MD5 rate.

Each run is paired with its ceiling measured just before it (MD5 rate, an empty aiohttp handler's request
rate, the bench client against a trivial server; the healthy GET for a degraded one), and the ratio reported
is the median of the per-pair ratios: on a shared machine, background load drifts over a run of minutes, and
a ceiling measured seconds away from its figure is the fair one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.__main__ import run_bench
from bench.client import Credentials, S3Client
from bench.client_scenarios import FIGURE_KEYS, LargeObjects
from bench.limits import TRIVIAL_CREDS, hashing, measure, trivial_server
from bench.proc_stats import children, peak_rss
from bench.report import summarize
from bench.workload import Spec, Workload
from cli import event_loop

MiB = 1 << 20
ACCESS_KEY, SECRET_KEY = "BENCHSCENARIOKEY0001", "bench-scenario-secret-0123456789"
UNITS = {"mb_s": "MB/s", "objects_s": "obj/s", "cpu_ms_per_mib": "ms/MiB"}
STASH = "fragments-unavailable"  # beside a drive's fragments/: where the degraded runs hide them


@dataclass
class Deployment:
    """Where the load goes, how to take m fragments away (and give them back), and which processes run it."""

    endpoint: str
    pids: dict[str, int]  # service name -> pid
    degrade: Callable[[], None] = lambda: None
    restore: Callable[[], None] | None = None  # None: degrading is for good (killed nodes)
    stack: ExitStack = field(default_factory=ExitStack)


def embedded(base: Path, m: int, workers: int = 1) -> Deployment:
    from cli.launch import launch, stop

    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    drives = [base / f"d{i + 1}" for i in range(6)]
    # No background repair: the degraded runs measure reads with m fragments missing, not their healing.
    cmd = ["server", *map(str, drives), "--listen", "127.0.0.1:0", "--no-auto-repair", "--workers", str(workers)]
    run = launch(cmd, env, base / "server.log")
    pids = {"server": run.proc.pid}
    if workers > 1:  # the parent only watches; the workers serve (Linux lists a process's children in /proc)
        children = Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children")
        pids.update({f"worker {i}": int(pid) for i, pid in enumerate(children.read_text().split())})
    dep = Deployment(run.endpoint, pids)
    dep.stack.callback(stop, run.proc)

    def move(src: str, dst: str) -> None:
        # Entries move, the fragments directory itself stays: a missing one reads as an unmounted drive.
        for drive in drives[:m]:
            (drive / dst).mkdir(exist_ok=True)
            for entry in (drive / src).iterdir():
                os.rename(entry, drive / dst / entry.name)

    dep.degrade = lambda: move("fragments", STASH)
    dep.restore = lambda: move(STASH, "fragments")
    return dep


def cluster(base: Path, m: int) -> Deployment:
    from cli.dev import DevCluster

    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    dev = DevCluster(base, nodes=6, gateways=1, env=env)  # metadata replicas: tessera dev's default
    dev.start()
    dep = Deployment(dev.endpoint(), {s.name: s.pid for s in dev.services.values()})
    dep.stack.callback(dev.stop)

    def degrade() -> None:
        for i in range(m):
            dev.kill(f"node{i + 1}")

    dep.degrade = degrade
    return dep


class Profiler(AbstractContextManager["Profiler"]):
    """py-spy record of the server processes while one scenario runs (collapsed stacks, for a summary)."""

    def __init__(self, directory: Path | None, name: str, pids: dict[str, int], seconds: float) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        if directory is None or shutil.which("py-spy") is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        for service, pid in pids.items():
            if peak_rss(pid) is None:
                continue  # killed for the degraded runs
            out = directory / f"{name}-{service}.txt"
            # --gil: only the thread holding the GIL, i.e. what the one Python core is busy with.
            cmd = ["py-spy", "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "200", "-f", "raw", "--gil"]
            self.procs.append(
                subprocess.Popen(
                    [*cmd, "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def profile_summary(path: Path, top: int = 8) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of the busiest frames in a py-spy collapsed-stack file."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0] for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    if not total:
        return []
    return [(f, n / total, incl[f] / total) for f, n in own.most_common(top)]


@dataclass
class Figure:
    """One scenario's runs, each with the ceilings measured just before it."""

    label: str
    key: str  # "mb_s", "objects_s" or "cpu_ms_per_mib" (server CPU)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    ceilings: list[dict[str, float]] = field(default_factory=list)

    @property
    def value(self) -> float:
        return statistics.median(s[self.key] for s in self.summaries)

    def ceiling(self, name: str) -> float:
        return statistics.median(c[name] for c in self.ceilings)

    def ratio(self, name: str) -> float:
        return statistics.median(s[self.key] / c[name] for s, c in zip(self.summaries, self.ceilings, strict=True))

    def median_summary(self) -> dict[str, Any]:
        ordered = sorted(self.summaries, key=lambda s: s[self.key])
        return {**ordered[len(ordered) // 2], self.key: self.value, "runs": [s[self.key] for s in self.summaries]}


Ceilings = dict[str, Callable[[], Awaitable[float]]]


class Scenarios:
    def __init__(
        self, dep: Deployment, trivial: str, runs: int, duration: float, profile: Path | None, large: bool = True
    ) -> None:
        self.dep, self.trivial, self.runs, self.duration, self.profile = dep, trivial, runs, duration, profile
        self.large = large  # issue 21's figures (client_scenarios.py)
        self.figures: dict[str, Figure] = {}

    async def _trivial(self, spec: Spec) -> float:
        summary, _ = await run_bench(self.trivial, TRIVIAL_CREDS, spec, bucket="trivial")
        if summary["errors"]:
            raise RuntimeError(f"trivial server: {summary.get('error_examples')}")
        return summary["objects_s"]

    def ceilings_4kib(self, op: str) -> Ceilings:
        seconds = min(self.duration, 1.5)
        empty = Spec("stat", 0, 32, seconds, objects=32, prefix="c/e/")
        client = Spec(op, 4096, 32, seconds, objects=256, prefix=f"c/{op}/")
        return {
            "empty_handler_rps": lambda: self._trivial(empty),
            f"trivial_{op}_4kib_rps": lambda: self._trivial(client),
        }

    @staticmethod
    def ceilings_md5() -> Ceilings:
        async def md5() -> float:
            return hashing(3, 64 * MiB)["md5_mb_s"]

        return {"md5_mb_s": md5}

    async def measure(
        self, label: str, r: int, run: Callable[[], Awaitable[dict[str, Any]]], key: str, ceilings: Ceilings
    ) -> None:
        fig = self.figures.setdefault(label, Figure(label, key))
        measured = {name: await fn() for name, fn in ceilings.items()}
        with Profiler(self.profile if r == 0 else None, label, self.dep.pids, self.duration):
            s = await run()
        if s["errors"]:
            raise RuntimeError(f"{label}: {s['errors']} errors: {s.get('error_examples')}")
        fig.summaries.append(s)
        fig.ceilings.append(measured)
        ratios = "  ".join(f"{s[key] / v:.3f} x {n}" for n, v in measured.items())
        print(f"  {label} run {r + 1}: {s[key]:,.2f} {UNITS[key]}  {ratios}", file=sys.stderr)

    async def run(self) -> dict[str, Figure]:
        dep = self.dep
        async with S3Client(dep.endpoint, Credentials(ACCESS_KEY, SECRET_KEY), connections=64) as client:
            bucket = "bench-scenarios"
            await client.create_bucket(bucket)

            def put_run(spec: Spec, r: int) -> Callable[[], Awaitable[dict[str, Any]]]:
                async def go() -> dict[str, Any]:
                    wl = Workload(client, bucket, replace(spec, prefix=f"{spec.prefix}{r}/"))
                    result = await wl.run()
                    await wl.cleanup()  # keep the drives from filling up between runs
                    return summarize(result, dep.endpoint)

                return go

            def get_run(wl: Workload, degraded: bool = False) -> Callable[[], Awaitable[dict[str, Any]]]:
                async def go() -> dict[str, Any]:
                    if degraded and dep.restore is not None:
                        dep.degrade()
                    try:
                        return summarize(await wl.run(), dep.endpoint)
                    finally:
                        if degraded and dep.restore is not None:
                            dep.restore()

                return go

            put64 = Spec("put", 64 * MiB, 1, self.duration, prefix="put64/")
            put4k = Spec("put", 4096, 32, self.duration, prefix="put4k/")
            for r in range(self.runs):
                await self.measure("put_64mib", r, put_run(put64, r), "mb_s", self.ceilings_md5())
                await self.measure("put_4kib", r, put_run(put4k, r), "objects_s", self.ceilings_4kib("put"))

            get64 = Workload(client, bucket, Spec("get", 64 * MiB, 1, self.duration, objects=4, prefix="get64/"))
            get4k = Workload(client, bucket, Spec("get", 4096, 32, self.duration, objects=1000, prefix="get4k/"))
            await get64.prepare()
            await get4k.prepare()
            pairs = dep.restore is not None  # healthy and degraded runs alternate, each degraded paired
            for r in range(self.runs):
                await self.measure("get_64mib", r, get_run(get64), "mb_s", self.ceilings_md5())
                await self.measure("get_4kib", r, get_run(get4k), "objects_s", self.ceilings_4kib("get"))
                if pairs:
                    await self._degraded(r, get64, get4k, get_run)
            if not pairs:
                dep.degrade()
                for r in range(self.runs):
                    await self._degraded(r, get64, get4k, get_run)
            elif self.large:  # with every fragment in place
                await LargeObjects(self, client, bucket).run()
        return self.figures

    async def _degraded(self, r: int, get64: Workload, get4k: Workload, get_run: Callable[..., Any]) -> None:
        healthy64 = self.figures["get_64mib"].summaries[min(r, len(self.figures["get_64mib"].summaries) - 1)]
        healthy4k = self.figures["get_4kib"].summaries[min(r, len(self.figures["get_4kib"].summaries) - 1)]

        async def h64() -> float:
            return healthy64["mb_s"]

        async def h4k() -> float:
            return healthy4k["objects_s"]

        await self.measure("degraded_get_64mib", r, get_run(get64, True), "mb_s", {"healthy": h64})
        await self.measure("degraded_get_4kib", r, get_run(get4k, True), "objects_s", {"healthy": h4k})


@dataclass
class Target:
    name: str
    fig: Figure
    ceiling_name: str  # key in Figure.ceilings
    ceiling_label: str
    want_ratio: float = 0.0  # 0: informative only
    want_value: float | None = None
    want_at_most: float | None = None  # a cost: the figure itself must stay at or below this

    @property
    def met(self) -> bool | None:
        if self.want_at_most is not None:
            return self.fig.value <= self.want_at_most
        if not self.want_ratio:
            return None
        ok = self.fig.ratio(self.ceiling_name) >= self.want_ratio
        return ok and (self.want_value is None or self.fig.value >= self.want_value)


def _large_targets(f: dict[str, Figure]) -> list[Target]:
    return [
        Target("64 MiB PUT x2 server CPU", f["put_64mib_cpu"], "md5_ms_per_mib", "MD5 ms/MiB", want_at_most=4.0),
        Target("64 MiB GET x2 server CPU", f["get_64mib_cpu"], "md5_ms_per_mib", "MD5 ms/MiB"),
        Target("boto3 64 MiB PUT", f["put_64mib_boto3"], "md5_mb_s", "MD5 single core", 0.45),
        Target("aws s3 cp 1 GiB", f["awscli_cp_1gib"], "md5_mb_s", "MD5 single core", 0.6),
    ]


def targets(f: dict[str, Figure]) -> list[Target]:
    return [
        Target("64 MiB PUT", f["put_64mib"], "md5_mb_s", "MD5 single core", 0.6),
        Target("64 MiB GET", f["get_64mib"], "md5_mb_s", "MD5 single core", 1.0),
        Target("4 KiB PUT x32", f["put_4kib"], "empty_handler_rps", "empty aiohttp handler", 0.5, 1500),
        Target("4 KiB GET x32", f["get_4kib"], "empty_handler_rps", "empty aiohttp handler", 0.5, 2500),
        Target("degraded 64 MiB GET", f["degraded_get_64mib"], "healthy", "healthy 64 MiB GET", 0.9),
        Target("degraded 4 KiB GET x32", f["degraded_get_4kib"], "healthy", "healthy 4 KiB GET", 0.9),
        # Informative: the bench client's own rate against a server that does nothing. A ratio well below 1
        # says the client is not what limits the figure.
        Target("4 KiB PUT x32", f["put_4kib"], "trivial_put_4kib_rps", "client vs trivial server"),
        Target("4 KiB GET x32", f["get_4kib"], "trivial_get_4kib_rps", "client vs trivial server"),
        *(_large_targets(f) if "put_64mib_cpu" in f else []),  # --no-large leaves them out
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scenarios", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario (medians reported)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    ap.add_argument("--cluster", action="store_true", help="a `tessera dev` cluster instead of `tessera server`")
    ap.add_argument("--m", type=int, default=2, help="fragments made unavailable for the degraded runs")
    ap.add_argument("--workers", type=int, default=1, help="`tessera server --workers N` (embedded server only)")
    ap.add_argument("--profile", type=Path, help="write py-spy collapsed stacks of the server per scenario here")
    ap.add_argument("--quick", action="store_true", help="shorter limit measurements")
    ap.add_argument("--no-large", action="store_true", help="skip the CPU per MiB, boto3 and aws-cli figures")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    kind = "dev cluster" if args.cluster else f"embedded server{workers}"

    print("measuring this machine's limits ...", file=sys.stderr, flush=True)
    lim = measure(args.quick)
    with tempfile.TemporaryDirectory(prefix="tessera-scenarios-") as tmp, trivial_server() as (trivial, _):
        dep = cluster(Path(tmp), args.m) if args.cluster else embedded(Path(tmp), args.m, args.workers)
        with dep.stack:
            print(f"Tessera at {dep.endpoint} ({kind})", file=sys.stderr, flush=True)
            figures = event_loop.run(
                Scenarios(dep, trivial, args.runs, args.duration, args.profile, not args.no_large).run()
            )
            rss_peaks = {name: rss for name, pid in dep.pids.items() if (rss := peak_rss(pid)) is not None}
            # The embedded server's index copy writers (a child process per copy) are part of its footprint.
            for name, pid in dep.pids.items():
                kids = [rss for kid in children(pid) if (rss := peak_rss(kid)) is not None]
                if kids:
                    rss_peaks[f"{name}'s {len(kids)} children"] = sum(kids)
    tgts = targets(figures)
    if not args.json:
        print(f"\nTessera ({kind}, EC 4+2), medians of {args.runs} runs of {args.duration:g}s; each ratio is the")
        print("median of per-run ratios to a ceiling measured just before that run")
        print(f"  {'figure':<24} {'value':>10}        {'ceiling':<24} {'ceiling':>10}  {'ratio':>6}  target")
        for t in tgts:
            fig = t.fig
            unit = UNITS[fig.key]
            want = ""
            if t.want_at_most is not None:
                want = f"<= {t.want_at_most:g} {unit}" + ("  met" if t.met else "  NOT met")
            elif t.want_ratio:
                want = f">= {t.want_ratio:g}x" + (f" and {t.want_value:,.0f}" if t.want_value else "")
                want += "  met" if t.met else "  NOT met"
            print(
                f"  {t.name:<24} {fig.value:>10,.1f} {unit:<6}  {t.ceiling_label:<24} "
                f"{fig.ceiling(t.ceiling_name):>10,.1f}  {fig.ratio(t.ceiling_name):>6.3f}  {want}"
            )
        cpu = ", ".join(f"{k} {v.median_summary()['client_cpu_share']:.2f}" for k, v in figures.items())
        print(f"  client CPU during the Tessera runs (cores): {cpu}")
        print("  peak RSS: " + ", ".join(f"{name} {v / MiB:.0f} MiB" for name, v in rss_peaks.items()))
        if args.profile:
            for path in sorted(args.profile.glob("*.txt")):
                print(f"\n  py-spy --gil, {path.name}: self / inclusive share of GIL-holding samples")
                for frame, own, incl in profile_summary(path):
                    print(f"    {own:6.1%} {incl:6.1%}  {frame}")
    out = {
        "deployment": "cluster" if args.cluster else "embedded",
        "workers": 1 if args.cluster else args.workers,
        "figures": {
            k: {
                **{x: v.median_summary().get(x) for x in (*FIGURE_KEYS, "cpu_ms_per_mib")},
                "runs": [s[v.key] for s in v.summaries],
                "ceilings": v.ceilings,
            }
            for k, v in figures.items()
        },
        "limits": lim,
        "targets": [
            {
                "figure": t.name,
                "value": round(t.fig.value, 3),
                "ceiling": t.ceiling_label,
                "ceiling_value": round(t.fig.ceiling(t.ceiling_name), 3),
                "ratio": round(t.fig.ratio(t.ceiling_name), 3),
                "want_ratio": t.want_ratio or None,
                "want_value": t.want_value,
                "met": t.met,
            }
            for t in tgts
        ],
        "peak_rss_bytes": rss_peaks,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
