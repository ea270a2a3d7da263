"""`python -m bench.repair` end to end, tiny: a real server is written to, loses a drive, is repaired and scrubbed,
and the module reports positive figures, their ratios, and that it checked every byte."""

from __future__ import annotations

import json
import subprocess
import sys


def test_repair_bench_runs_and_reports_checked_figures() -> None:
    cmd = [sys.executable, "-m", "bench.repair", "--objects", "4", "--size", "2MiB", "--runs", "1", "--corrupt", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert any(line.startswith("  repair, one drive wiped") for line in lines)  # the table for people
    out = json.loads(lines[-1])
    for name in ("put_mb_s", "repair_mb_s", "scrub_mb_s", "crc32c_mb_s", "repair_vs_put", "scrub_vs_crc32c"):
        assert out[name] > 0, (name, out)
    assert out["repair_vs_put"] == round(out["repair_mb_s"] / out["put_mb_s"], 3)
    assert out["runs"] == 1 and out["repair_rate_cap_mb_s"] > 0 and out["scrub_rate_cap_mb_s"] > 0
    run = out["per_run"][0]
    assert run["wiped_fragments"] == 4 and run["repair_parts"] == 4 and run["repair_bytes"] == 4 * (2 << 20)
    assert run["rebuilt_fragments_on_wiped_drive"] == 4
    assert out["corrupted"] == out["corrupt_found"] == run["corrupt_repaired"] == 2
    assert out["verified_objects"] == 4 and out["verified_bytes"] == 4 * (2 << 20)


def test_repair_bench_rejects_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.repair", "--objects", "2", "--corrupt", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--corrupt" in res.stderr
