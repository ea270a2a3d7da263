"""`python -m bench.rebalance` end to end, tiny: a six-node cluster is written to, grows by two nodes and is
rebalanced while GETs run, and the module reports positive figures and that it checked every byte."""

from __future__ import annotations

import json
import subprocess
import sys


def test_rebalance_bench_runs_and_reports_checked_figures() -> None:
    cmd = [sys.executable, "-m", "bench.rebalance", "--objects", "12", "--size", "1MiB", "--get-seconds", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert any(line.startswith("  GET during the rebalance") for line in lines)  # the table for people
    out = json.loads(lines[-1])
    assert out["put_mb_s"] > 0 and out["rebalance_mb_s"] > 0 and out["rebalance_bytes"] > 0, out
    assert out["get_alone"]["gets"] > 0 and out["get_during"]["gets"] > 0, out
    assert all(b > 0 for b in out["new_node_bytes"]) and out["verified_bytes"] == 12 << 20, out


def test_rebalance_bench_rejects_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.rebalance", "--objects", "0"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and "--objects" in res.stderr
