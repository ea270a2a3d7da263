"""python -m bench.quota end to end, on a quick setting: it starts its own server, fills both buckets, sets the
quota and times PUTs into each."""

from __future__ import annotations

import json
import subprocess
import sys


def test_quick_quota_bench_reports_both_buckets() -> None:
    cmd = [sys.executable, "-m", "bench.quota", "--objects", "50", "--puts", "3", "--rounds", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["objects"] == 50 and got["put_ms"] > 0 and got["put_quota_ms"] > 0
    assert "into buckets of 50 objects" in res.stdout
