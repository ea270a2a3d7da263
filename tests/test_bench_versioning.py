"""python -m bench.versioning end to end, on a quick setting: it starts its own server, measures both buckets
and lists every version it wrote."""

from __future__ import annotations

import json
import subprocess
import sys


def test_quick_versioning_bench_reports_both_buckets_and_lists_every_version() -> None:
    cmd = [sys.executable, "-m", "bench.versioning", "--duration", "0.5", "--rounds", "1", "--big-mib", "1"]
    cmd += ["--versions", "60", "--keys", "20"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert (got["listed_versions"], got["listed_keys"]) == (60, 20)
    for op in ("put_4k", "over_4k", "get_4k", "put_big", "get_big"):
        assert got[f"ratio_{op}"] > 0
    assert got["list_versions_entries_s"] > 0 and got["list_v2_keys_s"] > 0
    assert "ListObjectVersions over 60 versions of 20 keys" in res.stdout
