"""python -m bench.index_copies end to end, on a quick setting: both layouts of the embedded server's index take
PUTs, only the copies have writer processes, and the floor's writers run."""

from __future__ import annotations

import json
import subprocess
import sys


def test_quick_index_copies_bench_compares_the_two_layouts_and_runs_the_floor() -> None:
    cmd = [sys.executable, "-m", "bench.index_copies", "--rounds", "1", "--duration", "0.5", "--concurrency", "4"]
    cmd += ["--commits", "50", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["file_put_4k_ops_s"] > 0 and got["copies_put_4k_ops_s"] > 0
    assert got["ratio_copies_to_file"] == round(got["copies_put_4k_ops_s"] / got["file_put_4k_ops_s"], 3)
    # --index DIR keeps one index file in the server process; the copies are written by processes of their own.
    assert got["file_writers_us_per_put"] == 0 and got["copies_writers_us_per_put"] > 0
    for n in (1, 3, 5):
        assert got[f"floor_{n}_puts_s"] > 0 and got[f"floor_{n}_machine_us_per_put"] >= 0
    assert "ratio, copies to one file" in res.stdout


def test_index_copies_bench_refuses_a_setting_it_cannot_run() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench.index_copies", "--rounds", "0"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and "must be at least 1" in res.stderr and "Traceback" not in res.stderr
