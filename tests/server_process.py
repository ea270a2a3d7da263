"""Starts a real `tessera server` process for tests, and stops it by its PID."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ACCESS_KEY = "TESSERATESTKEY000001"
SECRET_KEY = "test-secret-key-0123456789abcdefghijklmn"
START_TIMEOUT = 30.0


def tessera_command() -> list[str]:
    exe = shutil.which("tessera")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    endpoint: str
    drives: list[Path]
    system: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(**config) if config else None,
        )

    def aws(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the real aws-cli against this server."""
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        aws = shutil.which("aws")
        cmd = [aws] if aws else [sys.executable, "-m", "awscli"]
        res = subprocess.run(
            [*cmd, "--endpoint-url", self.endpoint, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if self.proc.stdout:
            self.proc.stdout.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(base: Path, drives: int = 6, ec: str = "4+2", extra: tuple[str, ...] = ()) -> ServerProcess:
    base.mkdir(parents=True, exist_ok=True)
    paths = [base / f"d{i + 1}" for i in range(drives)]
    log = base / "server.log"
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY, "PYTHONUNBUFFERED": "1"}
    cmd = [*tessera_command(), "server", *map(str, paths), "--listen", "127.0.0.1:0", "--ec", ec, *extra]
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    server = ServerProcess(proc, "", paths, paths[0] / ".tessera-system", log, env)
    try:
        server.endpoint = _read_endpoint(proc, log)
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _read_endpoint(proc: subprocess.Popen[str], log: Path) -> str:

    deadline = time.monotonic() + START_TIMEOUT
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tessera server exited {proc.wait()}:\n{log.read_text(errors='replace')}")
        if line.startswith("Endpoint:"):
            return line.split(None, 1)[1].strip()
    raise RuntimeError(f"tessera server printed no endpoint in {START_TIMEOUT}s:\n{log.read_text(errors='replace')}")


def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.endpoint + "/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if server.proc.poll() is not None:
            raise RuntimeError(f"tessera server exited:\n{server.log_text()}")
        time.sleep(0.05)
    raise RuntimeError("tessera server never became ready")
