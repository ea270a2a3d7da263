"""The benchmark tool against a real `tessera server`: sane results, verification that catches wrong bytes,
a signer the server accepts for awkward keys, and the trivial server that bench.limits measures against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parse_ratio, parse_size, run_bench
from bench.client import Credentials, S3Client
from bench.limits import fsync_files, trivial_server
from bench.report import percentile, plot
from bench.workload import Spec, VerifyError, Workload
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess

CREDS = Credentials(ACCESS_KEY, SECRET_KEY)
MiB = 1 << 20


def test_sizes_ratios_and_percentiles() -> None:
    assert parse_size("4KiB") == 4096 and parse_size("64MiB") == 64 * MiB and parse_size("1kb") == 1000
    assert parse_ratio("0.7") == 0.7 and parse_ratio("70%") == 0.7 and parse_ratio("7:3") == 0.7
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_cli_mixed_run_reports_sane_json_and_cleans_up(server: ServerProcess, s3: Any, tmp_path: Path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    png = tmp_path / "run.png"
    cmd = [sys.executable, "-m", "bench", "--endpoint", server.endpoint, "--op", "mixed", "--ratio", "7:3"]
    cmd += ["--size", "4KiB", "--concurrency", "8", "--duration", "1", "--objects", "30", "--json"]
    cmd += ["--plot", str(png)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["errors"] == 0 and summary["error_kinds"] == {}
    assert summary["ops"] > 20 and summary["objects_s"] > 10
    assert summary["mb_s"] == pytest.approx(summary["objects_s"] * 4096 / 1e6, rel=0.01)
    assert 0 < summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert set(summary["by_op"]) == {"get", "put"}
    assert summary["by_op"]["get"]["ops"] > summary["by_op"]["put"]["ops"]
    assert summary["bucket"] not in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # cleaned up
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_verification_catches_a_wrong_byte_and_a_short_object(server: ServerProcess, s3: Any) -> None:
    s3.create_bucket(Bucket="bench-verify")
    spec = Spec("get", 8192, concurrency=2, duration=5, objects=3, max_ops=30, prefix="v/")
    async with S3Client(server.endpoint, CREDS) as client:
        wl = Workload(client, "bench-verify", spec)
        await wl.prepare()
        await wl.get(wl.keys[0])  # the honest object verifies
        bad = bytearray(b"".join(wl.content.window(wl.keys[0], 0, 8192)))
        bad[5000] ^= 0x01
        s3.put_object(Bucket="bench-verify", Key=wl.keys[0], Body=bytes(bad))
        short = b"".join(wl.content.window(wl.keys[1], 0, 8191))  # the right bytes, one too few
        s3.put_object(Bucket="bench-verify", Key=wl.keys[1], Body=short)
        with pytest.raises(VerifyError, match="wrong byte at offset 5000"):
            await wl.get(wl.keys[0])
        with pytest.raises(VerifyError, match="got 8191 bytes"):
            await wl.get(wl.keys[1])
        result = await wl.run()
    assert result.errors["verify"] >= 1
    assert sum(not s.ok for s in result.samples) == result.errors["verify"]
    assert any(s.ok for s in result.samples)  # the third, untouched object still verifies


async def test_multipart_put_and_verified_get(server: ServerProcess, s3: Any) -> None:
    s3.create_bucket(Bucket="bench-multipart")
    spec = Spec("get", 11 * MiB, concurrency=2, duration=5, objects=2, part_size=5 * MiB, max_ops=4, prefix="m/")
    summary, _ = await run_bench(server.endpoint, CREDS, spec, bucket="bench-multipart", keep=True)
    assert summary["errors"] == 0 and summary["ops"] == 4
    etag = s3.head_object(Bucket="bench-multipart", Key="m/obj/00000000")["ETag"]
    assert etag.endswith('-3"')  # 5 + 5 + 1 MiB parts


ODD_KEYS = [
    "space in key",
    "unicode/ü/ñ/漢字/emoji-🎉",
    "plus+amp&eq=q?hash#pct%41",
    "punct~*'()!$,;:@[]{}^`|\\\"<>",
    "double//slash/",
    "./dot/../segments/.",
    "trailing space ",
    "x" * 1000,
]


async def test_signer_is_accepted_for_odd_keys(server: ServerProcess, s3: Any) -> None:
    s3.create_bucket(Bucket="bench-odd")
    spec = Spec("get", 100, objects=0, prefix="")
    async with S3Client(server.endpoint, CREDS) as client:
        wl = Workload(client, "bench-odd", spec)
        for key in ODD_KEYS:
            await wl.put(key)
        listed = s3.list_objects_v2(Bucket="bench-odd")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted(ODD_KEYS)
        for key in ODD_KEYS:
            await wl.get(key)
            await wl.stat(key)
        keys, token = await client.list_objects("bench-odd", prefix="plus+amp&")
        assert keys == ["plus+amp&eq=q?hash#pct%41"] and token is None
        await client.delete_object("bench-odd", ODD_KEYS[0])
        await client.delete_objects("bench-odd", ODD_KEYS[1:])
    assert s3.list_objects_v2(Bucket="bench-odd")["KeyCount"] == 0


async def test_trivial_server_round_trip_client_processes_and_plot(tmp_path: Path) -> None:
    with trivial_server() as (endpoint, _pid):
        for op, size in (("put", 4096), ("get", 2 * MiB), ("stat", 0)):
            spec = Spec(op, size, concurrency=4, duration=0.3, objects=8, prefix=f"{op}/")
            summary, result = await run_bench(endpoint, Credentials("k", "s"), spec, bucket="trivial")
            assert summary["errors"] == 0 and summary["ops"] > 0, summary
        spec = Spec("get", 4096, concurrency=4, duration=0.5, objects=8, prefix="procs/")
        split, _ = await run_bench(endpoint, Credentials("k", "s"), spec, bucket="trivial", processes=2)
        assert split["processes"] == 2 and split["errors"] == 0 and split["ops"] > 0
        assert 0.4 < split["seconds"] < 2, split  # the client processes ran side by side, not one after the other
    plot(result, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert fsync_files(str(tmp_path), seconds=0.1)["fsync_4kib_files_s"] > 0


def test_overload_briefly_only_200_and_slowdown_and_slow_heads_closed() -> None:
    """bench.overload for 3 s: 8 clients against a cap of 4 requests, 20 connections dribbling heads."""
    cmd = [sys.executable, "-m", "bench.overload", "--clients", "8", "--duration", "3", "--slow", "20"]
    cmd += ["--header-timeout", "1", "--server-arg=--max-requests", "--server-arg=4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["ok"] > 0 and summary["other"] == 0, summary
    assert set(summary["answers"]) <= {"200", "503 SlowDown"}, summary
    assert summary["slow_closed"] == 20 and summary["slow_within_timeout"], summary
    assert summary["server_peak_rss_mib"] > 0


def test_scenarios_without_the_large_figures_report_the_rest() -> None:
    """`python -m bench.scenarios --no-large --json` (it starts its own server): every target it measured, none
    of the large ones it skipped (an earlier version looked those up anyway and ended in a KeyError)."""
    cmd = [sys.executable, "-m", "bench.scenarios", "--quick", "--runs", "1", "--duration", "0.5", "--no-large"]
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    names = [t["figure"] for t in got["targets"]]
    assert {"64 MiB PUT", "64 MiB GET", "4 KiB PUT x32", "4 KiB GET x32", "degraded 64 MiB GET"} <= set(names)
    assert not any("boto3" in n or "aws s3 cp" in n or "server CPU" in n for n in names), names
    assert all(t["value"] > 0 for t in got["targets"]), got["targets"]
