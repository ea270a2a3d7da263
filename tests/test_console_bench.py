"""bench/console.py runs end to end (a server of its own, a filled bucket, HTTP and browser timings) and
reports every page under its limit."""

from __future__ import annotations

import json
import subprocess
import sys


def test_console_benchmark_reports_every_page_under_the_limit() -> None:
    cmd = [sys.executable, "-m", "bench.console", "--objects", "450", "--rounds", "1", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 0 and doc["ok"], res.stdout + res.stderr[-2000:]
    times = doc["times"]
    # 450 objects are three pages of the browser: the first, then two more.
    assert times["objects: next page"]["n"] == 2
    assert {"page and assets", "bucket list", "object fragments", "cluster"} <= times.keys()
    assert all(t["max_s"] < doc["limit_s"] for t in times.values())
