"""rclone (Debian's, installed by `python -m tests.system_deps`) against the embedded server: copy, list,
check, read back, and `rclone purge` of a plain and of a versioned bucket."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server

RCLONE = shutil.which("rclone")
pytestmark = pytest.mark.skipif(RCLONE is None, reason="rclone is not installed (python -m tests.system_deps)")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = start_server(tmp_path_factory.mktemp("server"), extra=("--scrub-interval", "0"))
    yield s
    s.stop()


def rclone(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
    env |= {
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_TESS_TYPE": "s3",
        "RCLONE_CONFIG_TESS_PROVIDER": "Other",
        "RCLONE_CONFIG_TESS_ENDPOINT": srv.endpoint,
        "RCLONE_CONFIG_TESS_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_TESS_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_TESS_REGION": "us-east-1",
    }
    assert RCLONE is not None
    return subprocess.run([RCLONE, *args], env=env, capture_output=True, text=True, timeout=180)


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(300 * 1024), "dir/sub/c.bin": os.urandom(9 * 1024 * 1024)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_copy_list_check_and_purge(srv: ServerProcess, tmp_path: Path) -> None:
    files = _tree(tmp_path / "src")
    r = rclone(srv, "copy", str(tmp_path / "src"), "tess:rcl")
    assert r.returncode == 0, r.stderr
    listed = rclone(srv, "lsf", "-R", "--files-only", "tess:rcl")
    assert sorted(listed.stdout.split()) == sorted(files)
    r = rclone(srv, "check", str(tmp_path / "src"), "tess:rcl")
    assert r.returncode == 0, r.stderr
    assert rclone(srv, "cat", "tess:rcl/a.txt").stdout == "alpha\n"
    r = rclone(srv, "copy", "tess:rcl", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    assert all((tmp_path / "back" / n).read_bytes() == d for n, d in files.items())
    r = rclone(srv, "purge", "tess:rcl")
    assert r.returncode == 0, r.stderr
    assert "NotImplemented" not in r.stderr
    assert "rcl" not in [b["Name"] for b in srv.client().list_buckets()["Buckets"]]


def test_purge_of_a_versioned_bucket(srv: ServerProcess, tmp_path: Path) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="rclv")
    s3.put_bucket_versioning(Bucket="rclv", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two", b"three"):  # three versions of one key
        s3.put_object(Bucket="rclv", Key="k", Body=body)
    s3.delete_object(Bucket="rclv", Key="k")  # and a delete marker on top
    _tree(tmp_path / "src")
    assert rclone(srv, "copy", str(tmp_path / "src"), "tess:rclv").returncode == 0
    # rclone reads the versioning status, deletes every version (--s3-versions) and the bucket.
    r = rclone(srv, "purge", "--s3-versions", "tess:rclv")
    assert r.returncode == 0, r.stderr
    assert "NotImplemented" not in r.stderr
    assert "rclv" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
