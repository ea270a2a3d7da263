"""python -m bench.lifecycle end to end, on a quick setting: it fills a bucket, expires every object with a job, and
reports the rate and the GET rates beside it."""

from __future__ import annotations

import json
import subprocess
import sys


def test_quick_lifecycle_bench_expires_everything_and_reports_rates() -> None:
    cmd = [sys.executable, "-m", "bench.lifecycle", "--objects", "300", "--duration", "0.5"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["expired_by_job"] == 300 and got["expire_objects_s"] > 0
    assert got["get_4k_ops_s_idle"] > 0 and got["get_4k_ops_s_during"] > 0 and got["get_ratio"] > 0
    assert "lifecycle expiring 300 objects" in res.stdout
