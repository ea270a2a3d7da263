"""Faults answered honestly, through real processes: a read that becomes unrecoverable after its headers
went out is cut and logged in one line (no traceback, no 500)."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError
from prometheus_client.parser import text_string_to_metric_families

from storage_node.fragment_format import CRC_SIZE, HEADER_SIZE
from tests.server_process import ServerProcess, start_server
from tests.test_admin_embedded import fragment_files

MiB = 1 << 20


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # No background scan or scrub: nothing but the read touches the damaged fragments.
    s = start_server(tmp_path / "server", extra=("--scan-interval", "3600", "--scrub-interval", "0"))
    yield s
    s.stop()


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


def test_a_read_unrecoverable_midway_is_cut_and_logged_in_one_line(srv: ServerProcess) -> None:
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
    assert not [d for d in _access_lines(srv, "get_object") if d["status"] == 500]
    assert srv.requests_answered("get_object", "500") == 0
    assert srv.requests_answered("get_object", "200") == 1  # the status that went out, counted as such
    assert _errors_counted(srv, "get_object", "ReadCutShort") == 1  # with what became of it
    # The same object asked again fails before the headers: a clean 503, the server still fine.
    head_fail = srv.client(retries={"total_max_attempts": 1})
    with pytest.raises(Exception) as err:
        head_fail.get_object(Bucket="cut", Key="big", Range=f"bytes={4 * MiB}-{5 * MiB - 1}")["Body"].read()
    assert "503" in str(err.value) or "ServiceUnavailable" in str(err.value), err.value
