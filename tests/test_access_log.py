"""The S3 endpoint's access log: one JSON line per request by default; TESSERA_ACCESS_LOG=errors|off."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from cli.launch import launch, stop
from tests.server_process import ACCESS_KEY, SECRET_KEY


def _lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for text in log.read_text().splitlines():
        if text.startswith("{"):
            out.append(json.loads(text))  # every line that looks like one is whole JSON
    return out


def _wait_for(log: Path, cond: Any, what: str, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not cond(lines := _lines(log)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {lines[-5:]}"
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("mode", ["", "errors", "off"])
def test_access_lines(tmp_path: Path, mode: str) -> None:
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    env.pop("TESSERA_ACCESS_LOG", None)
    if mode:
        env["TESSERA_ACCESS_LOG"] = mode
    log = tmp_path / "server.log"
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    run = launch(["server", *drives, "--listen", "127.0.0.1:0"], env, log)
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=run.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="logged")
        s3.put_object(Bucket="logged", Key="a key/with ünïcode", Body=b"x" * 100)
        with pytest.raises(ClientError):
            s3.get_object(Bucket="logged", Key="missing")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "logged", "Key": "a key/with ünïcode"})
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == b"x" * 100
        if mode == "off":
            stop(run.proc)  # a stopping server writes what it holds: after this, every line is in the log
            assert _lines(log) == []
            return
        if mode == "errors":
            lines = _wait_for(log, lambda ls: any(ln["status"] == 404 for ln in ls), "the 404's line")
            assert all(ln["status"] >= 400 for ln in lines)
            return
        lines = _wait_for(log, lambda ls: len(ls) >= 4, "four lines")
    finally:
        stop(run.proc)
    ops = [(ln["operation"], ln["status"]) for ln in lines]
    assert ("create_bucket", 200) in ops and ("put_object", 200) in ops and ops.count(("get_object", 200)) == 1
    missing = next(ln for ln in lines if ln["status"] == 404)
    assert missing["error"] == "NoSuchKey" and missing["rid"] and missing["peer"] == "127.0.0.1"
    put = next(ln for ln in lines if ln["operation"] == "put_object")
    assert put["bytes_in"] >= 100 and put["duration_ms"] >= 0 and put["time"] > 1.7e9
    assert "ünïcode" in put["path"] or "%C3%BC" in put["path"]
    got = next(ln for ln in lines if ln["operation"] == "get_object" and ln["status"] == 200)
    assert "?" not in got["path"] and "X-Amz-Signature" not in json.dumps(got)  # never the presigned query
