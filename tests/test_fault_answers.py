"""Faults answered honestly, through real processes: a read that becomes unrecoverable after its headers
went out is cut and logged in one line (no traceback, no 500); a full index disk behind the metadata
service (one, or a replica set) is a 503 SlowDown with Retry-After, not a 500."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.parser import text_string_to_metric_families

from cli.dev import DevCluster
from storage_node.fragment_format import CRC_SIZE, HEADER_SIZE
from tests.conftest import mount_tmpfs
from tests.s3_helpers import dev_client
from tests.server_process import ServerProcess
from tests.test_admin_embedded import fragment_files
from tests.test_self_healing import wait_until

MiB = 1 << 20


def _access_lines(srv: ServerProcess, operation: str) -> list[dict[str, object]]:
    lines = []
    for line in srv.log_text().splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("operation") == operation:
            lines.append(doc)
    return lines


def _errors_counted(srv: ServerProcess, operation: str, error: str) -> float:
    with urllib.request.urlopen(srv.endpoint + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == "tessera_s3_errors_total" and sample.labels == {"operation": operation, "error": error}:
                return sample.value
    return 0.0


def test_a_read_unrecoverable_midway_is_cut_and_logged_in_one_line(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    s3 = srv.client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket="cut")
    data = os.urandom(8 * MiB)  # 8 segments of 1 MiB: 8 chunks of 256 KiB per fragment (EC 4+2)
    s3.put_object(Bucket="cut", Key="big", Body=data)
    files = fragment_files(srv)
    assert len(files) == 6, files
    # Three fragments keep their first two chunks only: segment 0 decodes, so the headers go out;
    # from segment 2 on only 3 of the 4 fragments needed are left.
    keep = HEADER_SIZE + 2 * (256 * 1024 + CRC_SIZE)
    for path in files[:3]:
        os.truncate(path, keep)

    resp = s3.get_object(Bucket="cut", Key="big")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = b""
    with pytest.raises(BotoCoreError):  # the connection is cut short of Content-Length
        while chunk := resp["Body"].read(256 * 1024):
            got += chunk
    assert 1 * MiB <= len(got) < len(data) and data.startswith(got)

    log = srv.log_text()
    assert "Traceback" not in log, log[-4000:]
    assert log.count("cut short") == 1, log[-4000:]
    # The access log is written in batches: wait (bounded) for the GET's line.
    lines = wait_until(lambda: [d for d in _access_lines(srv, "get_object") if d.get("error")], 15, "the access line")
    assert not [d for d in lines if d["status"] == 500], lines
    assert [d["status"] for d in lines if d.get("error") == "ReadCutShort"] == [200], lines  # the status sent
    assert srv.requests_answered("get_object", "500") == 0
    assert srv.requests_answered("get_object", "200") == 1  # the status that went out, counted as such
    assert _errors_counted(srv, "get_object", "ReadCutShort") == 1  # with what became of it
    # The same object asked again fails before the headers: a clean 503, the server still fine.
    head_fail = srv.client(retries={"total_max_attempts": 1})
    with pytest.raises(Exception) as err:
        head_fail.get_object(Bucket="cut", Key="big", Range=f"bytes={4 * MiB}-{5 * MiB - 1}")["Body"].read()
    assert "503" in str(err.value) or "ServiceUnavailable" in str(err.value), err.value


def put_until_refused(s3: Any, bucket: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Inline PUTs (the index is all they touch) until one is refused, which must be a 503 SlowDown:
    (what was stored, the refusal)."""
    stored: dict[str, bytes] = {}
    for i in range(200):
        body = os.urandom(60_000)
        try:
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
            stored[f"k{i}"] = body
        except ClientError as exc:
            refused: dict[str, Any] = exc.response  # type: ignore[assignment]
            assert refused["ResponseMetadata"]["HTTPStatusCode"] == 503, refused
            assert refused["Error"]["Code"] == "SlowDown", refused
            return stored, refused
    raise AssertionError("the index never filled up")


def fill_up(where: Path) -> Path:
    """Fill a filesystem but for a little room; the file that does it."""
    fs = os.statvfs(where)
    filler = where / "filler"
    filler.write_bytes(b"\0" * max(0, fs.f_bavail * fs.f_frsize - 256 * 1024))  # leave a little room
    return filler


@pytest.mark.parametrize("metas", [1, 3], ids=["1-meta", "3-replicas"])
def test_a_full_index_over_the_wire_answers_slowdown(tmp_path: Path, tmpfs_mounts: list[Path], metas: int) -> None:
    cluster = DevCluster(
        tmp_path / "cluster", nodes=6, metas=metas, gateways=1, gateway_args=["--scan-interval", "3600"]
    )
    for i in range(metas):
        mount_tmpfs(cluster.data / f"meta{i + 1}", tmpfs_mounts)
    cluster.start()
    try:
        s3 = dev_client(cluster, retries={"total_max_attempts": 1})  # each SlowDown seen, not retried away
        s3.create_bucket(Bucket="full")
        fillers = [fill_up(where) for where in tmpfs_mounts]
        stored, refused = put_until_refused(s3, "full")
        assert refused["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1", refused
        logs = {name: svc.log.read_text(errors="replace") for name, svc in cluster.services.items()}
        for name, text in logs.items():
            assert "Traceback" not in text, f"{name}: {text[-3000:]}"
        gateway_log = logs["gateway1"]
        assert "InternalError" not in gateway_log, gateway_log[-3000:]
        assert gateway_log.count("index full") == 1, gateway_log[-3000:]  # one line for the one refused PUT
        for filler in fillers:
            filler.unlink()
        for key, body in stored.items():
            assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body, key
        s3.put_object(Bucket="full", Key="after", Body=b"room again")
        assert s3.get_object(Bucket="full", Key="after")["Body"].read() == b"room again"
    finally:
        cluster.stop()
