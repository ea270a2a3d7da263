"""Versioning against a real `tessera server` (the embedded server, LocalIndex): the cases of
tests/versioning_cases.py, and what only the embedded server shows (GC of deleted versions' fragments)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3_helpers import MiB, data, expect_error, signed_request, unique
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server
from tests.system_deps import S3FS
from tests.test_admin_embedded import admin, fragment_files, wait_for
from tests.versioning_cases import (  # noqa: F401  (collected here)
    enable,
    test_bucket_with_versions_is_not_empty_until_purged,
    test_copy_and_multipart_versions,
    test_delete_markers,
    test_delete_objects_with_versions,
    test_list_object_versions_pages_prefixes_and_encoding,
    test_null_version,
    test_tags_and_attributes_of_each_version,
    test_versioning_configuration,
    test_versions_put_get_head_delete,
)


@pytest.fixture
def gc_srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # A scan (with GC and repair of what it finds) every second, collecting what is unreferenced for 1 s.
    s = start_server(tmp_path / "server", extra=("--gc-grace", "1", "--scan-interval", "1", "--scrub-interval", "0"))
    yield s
    s.stop()


def status(srv: ServerProcess) -> dict[str, Any]:
    res = admin(srv, "status", "--json")
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def test_gc_keeps_every_version_and_repair_heals_noncurrent_ones(gc_srv: ServerProcess) -> None:
    srv, s3 = gc_srv, gc_srv.client()
    s3.create_bucket(Bucket="keep")
    enable(s3, "keep")
    bodies = [data(MiB + i, seed=i) for i in range(3)]
    ids = [s3.put_object(Bucket="keep", Key="k", Body=b)["VersionId"] for b in bodies]
    assert len(fragment_files(srv)) == 18  # three versions of 4+2 fragments
    since = time.time() + 1.5  # past the grace of every fragment written so far
    wait_for("two scans with GC past the grace", lambda: status(srv)["gc"]["last_run"] > since + 1)
    assert len(fragment_files(srv)) == 18  # nothing of a noncurrent version is garbage
    for vid, body in zip(ids, bodies, strict=True):
        assert s3.get_object(Bucket="keep", Key="k", VersionId=vid)["Body"].read() == body

    # A noncurrent version is inspected by its id, and a lost fragment of it is repaired by the scans.
    doc = json.loads(admin(srv, "inspect", "keep/k", "--version-id", ids[0], "--json").stdout)
    assert (doc["s3_version_id"], doc["health"]) == (ids[0], "healthy")
    victim = next(f for f in fragment_files(srv) if f.name == f"{doc['parts'][0]['data_id']}.0.2")
    victim.unlink()
    wait_for("the noncurrent version's fragment rebuilt", victim.exists)
    doc = json.loads(admin(srv, "inspect", "keep/k", "--version-id", ids[0], "--json").stdout)
    assert doc["health"] == "healthy"
    bad = admin(srv, "inspect", "keep/k", "--version-id", "0" * 32)
    assert bad.returncode != 0 and "NoSuchVersion" in bad.stdout + bad.stderr

    # Deleting a version for good frees its fragments (in the background, right away).
    s3.delete_object(Bucket="keep", Key="k", VersionId=ids[1])
    wait_for("the deleted version's fragments removed", lambda: len(fragment_files(srv)) == 12)
    marker = s3.delete_object(Bucket="keep", Key="k")["VersionId"]
    assert len(fragment_files(srv)) == 12  # a delete marker frees nothing
    s3.delete_object(Bucket="keep", Key="k", VersionId=marker)
    assert s3.get_object(Bucket="keep", Key="k")["Body"].read() == bodies[2]


# s3fs pins a botocore other than the one installed here, so it lives in a directory of its own
# (pip install --target "$TESSERA_S3FS_PATH" s3fs) and runs in a subprocess that has it on its path.
S3FS_PATH = os.environ.get("TESSERA_S3FS_PATH", str(S3FS))  # where `python -m tests.system_deps` puts it
_S3FS_RM = """
import sys, s3fs
endpoint, key, secret, bucket = sys.argv[1:]
fs = s3fs.S3FileSystem(key=key, secret=secret, client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
fs.rm(bucket, recursive=True)
print("removed")
"""


def test_s3fs_rm_recursive_empties_and_removes_a_versioned_bucket(server: ServerProcess, s3: Any) -> None:
    env = {**os.environ, "PYTHONPATH": S3FS_PATH}
    if subprocess.run([sys.executable, "-c", "import s3fs"], env=env, capture_output=True).returncode != 0:
        pytest.skip(f"s3fs is not installed in {S3FS_PATH}")
    bucket = unique("s3fs")
    s3.create_bucket(Bucket=bucket)
    enable(s3, bucket)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"dir/{i}", Body=b"one")
        s3.put_object(Bucket=bucket, Key=f"dir/{i}", Body=b"two")
    s3.delete_object(Bucket=bucket, Key="dir/0")
    res = subprocess.run(
        [sys.executable, "-c", _S3FS_RM, server.endpoint, ACCESS_KEY, SECRET_KEY, bucket],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "removed" in res.stdout, res.stderr[-2000:]
    expect_error(s3.head_bucket, "404", 404, Bucket=bucket)


@pytest.mark.parametrize(("method", "query"), [("DELETE", "versioning"), ("PUT", "versions"), ("POST", "versioning")])
def test_versioning_subresources_are_never_plain_bucket_requests(
    server: ServerProcess, s3: Any, bucket: str, method: str, query: str
) -> None:
    """DELETE ?versioning is no DeleteBucket, PUT ?versions no CreateBucket: S3 has neither operation."""
    resp = signed_request(server, method, f"/{bucket}?{query}")
    assert (resp.status, resp.error()["Code"]) == (405, "MethodNotAllowed")
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_versioning_requests_with_bad_input_change_nothing(server: ServerProcess, s3: Any, bucket: str) -> None:
    for body in (b"", b"<VersioningConfiguration><Status>Enabled", b"<Other><Status>Enabled</Status></Other>"):
        resp = signed_request(server, "PUT", f"/{bucket}?versioning", body=body)
        assert (resp.status, resp.error()["Code"]) == (400, "MalformedXML"), body
    body = b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Maybe</MfaDelete></VersioningConfiguration>"
    assert signed_request(server, "PUT", f"/{bucket}?versioning", body=body).status == 400
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for target in (f"/{bucket}/k?versionId=%0D%0Ax", f"/{bucket}/k?versionId=" + "g" * 32):
        resp = signed_request(server, "GET", target)
        assert (resp.status, resp.error()["Code"]) == (400, "InvalidArgument"), target
        assert signed_request(server, "DELETE", target).status == 400
    resp = signed_request(server, "GET", f"/{bucket}?versions&max-keys=-1")
    assert (resp.status, resp.error()["Code"]) == (400, "InvalidArgument")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
