"""Repair and scrub throughput beside PUT throughput, all in the same run.

    python -m bench.repair [--objects 24] [--size 8MiB] [--runs 3] [--corrupt 3] [--cluster] [--json]

Each run starts a fresh `tessera server` on temporary drives (or, with --cluster, a 7-node `tessera dev`
cluster), with scheduled scrubbing off and repair and scrub rate caps far above what the machine can do (so
the caps are not what is measured; both are reported), and then:

1. PUTs --objects objects of --size with the lean bench client (--concurrency at once): PUT MB/s.
2. Wipes one drive (every fragment file under it deleted, as a replaced disk; in a cluster the node is killed,
   its drive wiped and the node restarted empty), runs `POST repair` through the admin API and polls the job
   to its end: repair MB/s = object bytes of the parts rebuilt (the job's "bytes") / the job's wall time.
3. Flips one byte in --corrupt fragment files (distinct objects), runs `POST scrub`: scrub MB/s = fragment
   bytes verified / time from the job's start until it leaves its "scrubbing" phase; checks the job found
   exactly the flipped fragments and rebuilt them.
4. GETs every object back and compares it byte for byte with what was put.

Figures are medians over --runs; ratios are medians of per-run ratios against figures of the same run:
repair MB/s / PUT MB/s, and scrub MB/s / this machine's CRC32C rate (awscrt, the fragments' chunk checksum;
bench.limits' figure, measured just before each run).
The admin job is polled server-side every 0.5 s for scrub progress, so the scrub time can be up to ~0.5 s
long; the scrubber's own figure from the server log (embedded server) is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.__main__ import parse_size
from bench.client import Credentials, S3Client
from bench.limits import hashing
from bench.workload import Content
from cli import event_loop
from gateway.admin.client import AdminClient
from storage_node.drive import FragmentId
from storage_node.fragment_format import HEADER_SIZE, parse_header

MiB = 1 << 20
ACCESS_KEY, SECRET_KEY = "BENCHREPAIRKEY000001", "bench-repair-secret-0123456789"
BUCKET = "bench-repair"
POLL = 0.02  # seconds between job polls
JOB_TIMEOUT = 600.0
CLUSTER_NODES = 7
_SCRUB_LOG = re.compile(r"scrub pass: (\d+) fragments, ([0-9.]+) MB at ([0-9.]+) MB/s, (\d+) corrupt")
_CORRUPT_MSG = re.compile(r"(\d+) corrupt fragment")


class BenchFailure(RuntimeError):
    """The store did something wrong (a job failed, a byte differs): the run's figures mean nothing."""


@dataclass
class Deployment:
    """A fresh store: its endpoint, admin credentials, where its fragment files are, how to wipe one drive."""

    endpoint: str
    creds: Credentials
    drives: list[Path]  # drive roots (each has fragments/)
    wipe: Callable[[], int]  # wipe one drive; returns the fragment files removed
    stop: Callable[[], None]
    log: Path | None = None  # the embedded server's log (for the scrubber's own figure)
    wait_live: bool = False  # after the wipe, wait until every node is live again (cluster)


def fragment_files(drive: Path) -> list[Path]:
    root = drive / "fragments"
    if not root.is_dir():
        return []
    return sorted(p for shard in root.iterdir() if shard.is_dir() for p in shard.iterdir() if p.is_file())


def wipe_drive(drive: Path) -> int:
    """Delete everything under DRIVE/fragments/, keeping the directory: a blank disk, not an unmounted one."""
    removed = len(fragment_files(drive))
    for entry in (drive / "fragments").iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return removed


def embedded(base: Path, args: argparse.Namespace) -> Deployment:
    from cli.launch import launch, stop

    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    drives = [base / f"d{i + 1}" for i in range(6)]
    log = base / "server.log"
    cmd = ["server", *map(str, drives), "--listen", "127.0.0.1:0", *_care_flags(args)]
    cmd += ["--scrub-interval", "0", "--scrub-rate", str(args.scrub_rate)]
    run = launch(cmd, env, log)
    return Deployment(
        run.endpoint,
        Credentials(ACCESS_KEY, SECRET_KEY),
        drives,
        wipe=lambda: wipe_drive(drives[0]),
        stop=lambda: stop(run.proc),
        log=log,
    )


def _care_flags(args: argparse.Namespace) -> list[str]:
    return ["--repair-rate", str(args.repair_rate), "--repair-concurrency", str(args.repair_concurrency)]


def cluster(base: Path, args: argparse.Namespace) -> Deployment:
    from cli.dev import DevCluster, Service

    class Cluster(DevCluster):
        def _start(self, svc: Service) -> None:
            # The rate caps and on-demand-only scrubbing, added once (a restart reuses svc.args).
            if svc.name.startswith("gateway") and "--repair-rate" not in svc.args:
                svc.args += _care_flags(args)
            if svc.name.startswith("node") and "--scrub-rate" not in svc.args:
                svc.args += ["--scrub-interval", "0", "--scrub-rate", str(args.scrub_rate)]
            super()._start(svc)

    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    dev = Cluster(base, nodes=CLUSTER_NODES, gateways=1, env=env)
    dev.start()
    drives = [base / f"node{i + 1}" / "drive1" for i in range(CLUSTER_NODES)]

    def wipe() -> int:
        dev.kill("node1")
        removed = wipe_drive(drives[0])
        dev.restart("node1")
        return removed

    creds = Credentials(dev.env["TESSERA_ACCESS_KEY"], dev.env["TESSERA_SECRET_KEY"])
    return Deployment(dev.endpoint(), creds, drives, wipe=wipe, stop=dev.stop, wait_live=True)


# -- one run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    put_mb_s: float = 0.0
    repair_mb_s: float = 0.0
    scrub_mb_s: float = 0.0
    crc32c_mb_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def repair_vs_put(self) -> float:
        return self.repair_mb_s / self.put_mb_s

    @property
    def scrub_vs_crc32c(self) -> float:
        return self.scrub_mb_s / self.crc32c_mb_s


async def put_all(client: S3Client, content: Content, keys: list[str], size: int, concurrency: int) -> float:
    """PUT every key (concurrency at once); MB/s of object bytes over the wall time."""
    queue = list(reversed(keys))

    async def worker() -> None:
        while queue:
            key = queue.pop()
            await client.put_object(BUCKET, key, content.body(key, size), size)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(keys)))))
    return len(keys) * size / (time.perf_counter() - t0) / 1e6


async def verify_all(client: S3Client, content: Content, keys: list[str], size: int) -> int:
    """GET every key and compare with what was put; bytes verified."""
    total = 0
    for key in keys:
        check = content.verifier(key, size)
        await client.get_object(BUCKET, key, check)
        if check.bad_at is not None or check.pos != size:
            raise BenchFailure(f"{key}: read back wrong (first bad byte {check.bad_at}, {check.pos} of {size} bytes)")
        total += check.pos
    return total


async def wait_job(admin: AdminClient, job_id: str, on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job = (await admin.job(job_id))["job"]
        if on_poll is not None:
            on_poll(job)
        if job["finished"] is not None:
            return job
        await asyncio.sleep(POLL)
    raise BenchFailure(f"job {job_id} did not finish within {JOB_TIMEOUT:g}s")


async def wait_all_live(admin: AdminClient, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        nodes = (await admin.status())["nodes"]
        if nodes and all(n["live"] for n in nodes if n["state"] == "active"):
            return
        await asyncio.sleep(0.2)
    raise BenchFailure("the restarted node never came back live")


def corrupt(drives: list[Path], count: int) -> list[tuple[Path, int, int]]:
    """Flip one payload byte in `count` fragment files of distinct parts, spread over the drives.

    Returns (file, offset, original byte) for each."""
    done: list[tuple[Path, int, int]] = []
    seen: set[tuple[str, int]] = set()
    per_drive = [fragment_files(d) for d in drives]
    i = 0
    while len(done) < count and any(per_drive):
        files = per_drive[i % len(per_drive)]
        i += 1
        while files:
            path = files.pop(0)
            fid = FragmentId.parse(path.name)
            if (fid.version, fid.part) in seen or path.stat().st_size <= HEADER_SIZE + 100:
                continue
            seen.add((fid.version, fid.part))
            offset = HEADER_SIZE + 100  # inside chunk 0's payload
            with open(path, "r+b") as f:
                f.seek(offset)
                old = f.read(1)[0]
                f.seek(offset)
                f.write(bytes([old ^ 0xFF]))
            done.append((path, offset, old))
            break
    if len(done) < count:
        raise BenchFailure(f"only {len(done)} fragment files of distinct parts to corrupt, {count} wanted")
    return done


def check_unflipped(flipped: list[tuple[Path, int, int]]) -> None:
    """Every flipped fragment was rebuilt in place (or, in a cluster, possibly moved away)."""
    for path, offset, old in flipped:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                if f.read(1)[0] != old:
                    raise BenchFailure(f"{path.name} still holds the flipped byte after the scrub job")


def payload_bytes(drives: list[Path]) -> int:
    """Payload bytes of every fragment file on the drives: what a scrub pass verifies (its total)."""
    total = 0
    for drive in drives:
        for path in fragment_files(drive):
            with open(path, "rb") as f:
                total += parse_header(FragmentId.parse(path.name), f.read(HEADER_SIZE)).size
    return total


def scrubber_log_figure(log: Path | None, after: int) -> float | None:
    """The scrubber's own MB/s for its latest pass, from the server log written after byte `after`."""
    if log is None or not log.exists():
        return None
    with open(log, "rb") as f:
        f.seek(after)
        hits = _SCRUB_LOG.findall(f.read().decode(errors="replace"))
    return float(hits[-1][2]) if hits else None


async def one_run(dep: Deployment, args: argparse.Namespace, crc32c: float, r: int) -> Run:
    content = Content(args.seed + r)
    keys = [f"obj/{i:05d}" for i in range(args.objects)]
    size = args.size
    run = Run(crc32c_mb_s=crc32c)
    d = run.details
    async with (
        S3Client(dep.endpoint, dep.creds, connections=max(args.concurrency, 4)) as client,
        AdminClient(dep.endpoint, dep.creds.access_key, dep.creds.secret_key) as admin,
    ):
        await client.create_bucket(BUCKET)
        run.put_mb_s = await put_all(client, content, keys, size, args.concurrency)

        # -- repair a wiped drive ------------------------------------------------------------------
        d["wiped_fragments"] = dep.wipe()
        if dep.wait_live:
            await wait_all_live(admin)
        phases: dict[str, float] = {}

        def note_phase(job: dict[str, Any]) -> None:
            phases.setdefault(job["phase"], time.time())

        job = (await admin.start_repair())["job"]
        job = await wait_job(admin, job["id"], note_phase)
        if job["phase"] != "done" or job["failed"]:
            raise BenchFailure(f"repair job ended {job['phase']}, {job['failed']} failed: {job['message']}")
        # One fragment per part on the wiped drive (a part never has two on one drive, or in a cluster on one node).
        if job["total"] != d["wiped_fragments"] or job["bytes"] != d["wiped_fragments"] * size:
            raise BenchFailure(f"repair rebuilt {job['total']} parts, {job['bytes']} bytes: {job['message']}")
        seconds = job["finished"] - job["started"]
        run.repair_mb_s = job["bytes"] / seconds / 1e6
        d["repair_parts"], d["repair_bytes"], d["repair_s"] = job["total"], job["bytes"], round(seconds, 3)
        if "repairing" in phases:  # when the scan ended, as seen by polling
            d["repair_scan_s"] = round(phases["repairing"] - job["started"], 3)
        rebuilt = len(fragment_files(dep.drives[0]))
        d["rebuilt_fragments_on_wiped_drive"] = rebuilt
        if not dep.wait_live and rebuilt != d["wiped_fragments"]:  # embedded: the only drive they can go to
            raise BenchFailure(f"{d['wiped_fragments']} fragments wiped, {rebuilt} back on the drive")

        # -- scrub, with a few flipped bytes ---------------------------------------------------------
        flipped = corrupt(dep.drives, args.corrupt)
        on_disk = payload_bytes(dep.drives)
        log_at = dep.log.stat().st_size if dep.log is not None and dep.log.exists() else 0
        # The job reports progress every 0.5 s and a short pass may never show its final count while
        # "scrubbing": the bytes verified are the payload on the drives (the pass's total), or more if seen.
        scrub: dict[str, Any] = {"bytes": on_disk}

        def note_scrub(job: dict[str, Any]) -> None:
            if job["phase"] == "scrubbing":
                scrub["bytes"] = max(job["bytes"], job["total"], scrub.get("bytes", 0))
            elif "left" not in scrub:
                scrub["left"] = time.time()

        job = (await admin.start_scrub())["job"]
        job = await wait_job(admin, job["id"], note_scrub)
        if job["phase"] != "done" or job["failed"]:
            raise BenchFailure(f"scrub job ended {job['phase']}, {job['failed']} failed: {job['message']}")
        m = _CORRUPT_MSG.search(job["message"])
        found = int(m.group(1)) if m else -1
        if found != len(flipped) or job["completed"] != len(flipped):
            raise BenchFailure(f"{len(flipped)} fragments corrupted; the scrub job says: {job['message']}")
        scrub_s = min(scrub.get("left", job["finished"]), job["finished"]) - job["started"]
        run.scrub_mb_s = scrub["bytes"] / scrub_s / 1e6
        d["scrub_bytes"], d["scrub_s"] = scrub["bytes"], round(scrub_s, 3)
        d["corrupted"], d["corrupt_found"] = len(flipped), found
        d["corrupt_repaired"] = job["completed"] - job["failed"]
        check_unflipped(flipped)
        own = scrubber_log_figure(dep.log, log_at)
        if own is not None:
            d["scrubber_own_mb_s"] = own

        # -- everything reads back identical -----------------------------------------------------------
        d["verified_objects"] = len(keys)
        d["verified_bytes"] = await verify_all(client, content, keys, size)
    return run


# -- report ----------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def summarize(runs: list[Run], args: argparse.Namespace, deployment: str) -> dict[str, Any]:
    def r3(v: float) -> float:
        return round(v, 3)

    out: dict[str, Any] = {
        "bench": "repair",
        "deployment": deployment,
        "objects": args.objects,
        "size": args.size,
        "put_concurrency": args.concurrency,
        "repair_concurrency": args.repair_concurrency,
        "repair_rate_cap_mb_s": args.repair_rate,
        "scrub_rate_cap_mb_s": args.scrub_rate,
        "runs": len(runs),
        "put_mb_s": r3(median([r.put_mb_s for r in runs])),
        "repair_mb_s": r3(median([r.repair_mb_s for r in runs])),
        "scrub_mb_s": r3(median([r.scrub_mb_s for r in runs])),
        "crc32c_mb_s": r3(median([r.crc32c_mb_s for r in runs])),
        "repair_vs_put": r3(median([r.repair_vs_put for r in runs])),
        "scrub_vs_crc32c": r3(median([r.scrub_vs_crc32c for r in runs])),
        "verified_objects": min(r.details["verified_objects"] for r in runs),
        "verified_bytes": min(r.details["verified_bytes"] for r in runs),
        "corrupted": min(r.details["corrupted"] for r in runs),
        "corrupt_found": min(r.details["corrupt_found"] for r in runs),
        "per_run": [
            {
                "put_mb_s": r3(r.put_mb_s),
                "repair_mb_s": r3(r.repair_mb_s),
                "scrub_mb_s": r3(r.scrub_mb_s),
                "crc32c_mb_s": r3(r.crc32c_mb_s),
                **r.details,
            }
            for r in runs
        ],
    }
    own = [r.details["scrubber_own_mb_s"] for r in runs if "scrubber_own_mb_s" in r.details]
    if own:
        out["scrubber_own_mb_s"] = r3(median(own))
        out["scrubber_own_vs_crc32c"] = r3(
            median([r.details["scrubber_own_mb_s"] / r.crc32c_mb_s for r in runs if "scrubber_own_mb_s" in r.details])
        )
    return out


def print_table(s: dict[str, Any]) -> None:
    size = s["size"]
    size_text = f"{size // MiB} MiB" if size % MiB == 0 else f"{size} B"
    print(
        f"Tessera ({s['deployment']}, EC 4+2): {s['objects']} x {size_text}, median of {s['runs']} run(s); "
        "ratios are medians of per-run ratios"
    )
    print(
        f"  caps (not what is measured): repair {s['repair_rate_cap_mb_s']:g} MB/s, scrub "
        f"{s['scrub_rate_cap_mb_s']:g} MB/s; PUT concurrency {s['put_concurrency']}, "
        f"repair concurrency {s['repair_concurrency']}"
    )
    print(f"  {'figure':<34} {'MB/s':>10}   {'against':<26} {'ratio':>7}")
    print(f"  {'PUT (object bytes)':<34} {s['put_mb_s']:>10,.1f}")
    print(
        f"  {'repair, one drive wiped (object)':<34} {s['repair_mb_s']:>10,.1f}   {'PUT, same run':<26} "
        f"{s['repair_vs_put']:>7.3f}"
    )
    print(
        f"  {'scrub (fragment bytes verified)':<34} {s['scrub_mb_s']:>10,.1f}   "
        f"{'CRC32C ' + format(s['crc32c_mb_s'], ',.0f') + ' MB/s':<26} {s['scrub_vs_crc32c']:>7.3f}"
    )
    names = ("put", "repair", "scrub")
    if "scrubber_own_mb_s" in s:
        print(
            f"  {'  scrubber own figure (server log)':<34} {s['scrubber_own_mb_s']:>10,.1f}   {'CRC32C':<26} "
            f"{s['scrubber_own_vs_crc32c']:>7.3f}"
        )
    print(
        "  per run (MB/s): "
        + "; ".join(f"{name} " + ", ".join(format(r[f"{name}_mb_s"], ".1f") for r in s["per_run"]) for name in names)
    )
    print(
        f"  checked: {s['corrupt_found']} of {s['corrupted']} flipped fragments found and rebuilt; "
        f"{s['verified_objects']} objects ({s['verified_bytes'] / 1e6:,.1f} MB) read back identical after repair"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.repair", description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=24, help="objects written per run")
    ap.add_argument("--size", type=parse_size, default=8 * MiB, help="object size, e.g. 8MiB")
    ap.add_argument("--runs", type=int, default=3, help="runs (medians reported)")
    ap.add_argument("--concurrency", type=int, default=2, help="PUTs at once")
    ap.add_argument("--repair-concurrency", type=int, default=2, help="parts the server repairs at once")
    ap.add_argument("--repair-rate", type=float, default=100000.0, help="server repair cap, MB/s (set high)")
    ap.add_argument("--scrub-rate", type=float, default=100000.0, help="server scrub cap, MB/s (set high)")
    ap.add_argument("--corrupt", type=int, default=3, help="fragment files to flip a byte in")
    ap.add_argument("--seed", type=int, default=1, help="content seed")
    ap.add_argument("--cluster", action="store_true", help=f"a {CLUSTER_NODES}-node `tessera dev` cluster")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.objects < 1 or args.size < 1 or args.runs < 1 or args.concurrency < 1 or args.corrupt < 1:
        print("bench.repair: --objects, --size, --runs, --concurrency and --corrupt must be positive", file=sys.stderr)
        return 2
    if args.corrupt > args.objects:
        print("bench.repair: --corrupt must not exceed --objects", file=sys.stderr)
        return 2
    start = cluster if args.cluster else embedded
    runs: list[Run] = []
    try:
        for r in range(args.runs):
            crc = hashing(3, 32 * MiB)["crc32c_mb_s"]
            with tempfile.TemporaryDirectory(prefix="tessera-bench-repair-") as tmp:
                dep = start(Path(tmp), args)
                try:
                    run = event_loop.run(one_run(dep, args, crc, r))
                finally:
                    dep.stop()
            runs.append(run)
            print(
                f"  run {r + 1}: PUT {run.put_mb_s:.1f} MB/s, repair {run.repair_mb_s:.1f} MB/s "
                f"({run.repair_vs_put:.3f} x PUT), scrub {run.scrub_mb_s:.1f} MB/s "
                f"({run.scrub_vs_crc32c:.3f} x CRC32C)",
                file=sys.stderr,
                flush=True,
            )
    except BenchFailure as exc:
        print(f"bench.repair: FAILED: {exc}", file=sys.stderr)
        return 1
    summary = summarize(runs, args, "cluster" if args.cluster else "embedded")
    if not args.json:
        print_table(summary)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
