"""A real `tessera server` process for tests, with boto3 and aws-cli pointed at it."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

from cli.launch import launch, stop, tessera_command

ACCESS_KEY = "TESSERATESTKEY000001"
SECRET_KEY = "test-secret-key-0123456789abcdefghijklmn"


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    endpoint: str
    drives: list[Path]
    system: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None  # an https server's CA, which every client here is told to trust
    banner: str = ""  # what it printed at start

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
            verify=self.ca_bundle,
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
        tls = ["--ca-bundle", self.ca_bundle] if self.ca_bundle else []
        res = subprocess.run(
            [*cmd, "--endpoint-url", self.endpoint, *tls, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else None

    def stop(self) -> None:
        stop(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def requests_answered(self, operation: str, status: str) -> float:
        """tessera_s3_requests_total{operation, status} in one scrape of /metrics, added up over workers."""
        return sum(self.requests_by_worker(operation, status).values())

    def requests_by_worker(self, operation: str, status: str) -> dict[str, float]:
        """tessera_s3_requests_total{operation, status} in one scrape, by its worker label ("" when none)."""
        with urllib.request.urlopen(self.endpoint + "/metrics", timeout=10, context=self.ssl_context()) as resp:
            text = resp.read().decode()
        found: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for sample in fam.samples:
                labels = dict(sample.labels)
                worker = labels.pop("worker", "")
                if sample.name == "tessera_s3_requests_total" and labels == {"operation": operation, "status": status}:
                    found[worker] = sample.value
        return found


def start_server(
    base: Path, drives: int = 6, ec: str = "4+2", extra: tuple[str, ...] = (), ca_bundle: str | None = None
) -> ServerProcess:
    """extra: more flags (--tls-cert/--tls-key for https, with ca_bundle the CA that signed the certificate)."""
    base.mkdir(parents=True, exist_ok=True)
    paths = [base / f"d{i + 1}" for i in range(drives)]
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY, "PYTHONUNBUFFERED": "1"}
    args = ["server", *map(str, paths), "--listen", "127.0.0.1:0", "--ec", ec, *extra]
    run = launch(args, env, base / "server.log")
    return ServerProcess(
        run.proc, run.endpoint, paths, paths[0] / ".tessera-system", base / "server.log", env, ca_bundle, run.banner
    )


CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}


def run_server(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """For starts that must fail: they exit by themselves, within the timeout."""
    return subprocess.run(
        [*tessera_command(), "server", *args], cwd=cwd, env=env or CLEAN_ENV, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(res: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], res.stderr
    assert "Traceback" not in res.stderr
