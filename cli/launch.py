"""Start `tessera` service processes, learn their endpoint, wait until ready, stop them by PID."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 30.0


def tessera_command() -> list[str]:
    exe = shutil.which("tessera")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    endpoint: str
    banner: str  # what it printed up to its endpoint line


def launch(
    args: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None, banner_end: str = "export "
) -> Launched:
    """Run `tessera ARGS` (listening on port 0 is fine); return it once ready, with its printed endpoint.

    The banner is complete at its line starting with `banner_end` (the credentials, for an S3 endpoint).
    """
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(
            [*tessera_command(), *args], stdout=subprocess.PIPE, stderr=log_file, env=dict(env), cwd=cwd
        )
    try:
        banner = _read_banner(proc, log, banner_end)
        endpoint = next(ln for ln in banner.splitlines() if ln.startswith("Endpoint:")).split(None, 1)[1].strip()
        wait_ready(endpoint, proc, log)
    except BaseException:
        stop(proc)
        raise
    return Launched(proc, endpoint, banner)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it lingers; by PID, never by name."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    if proc.stdout:
        proc.stdout.close()


def _read_banner(proc: subprocess.Popen[bytes], log: Path, banner_end: str) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT
    out = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            data = os.read(fd, 4096)
            if not data:
                raise RuntimeError(f"tessera exited {proc.wait()}:\n{log.read_text(errors='replace')}")
            out += data
            text = out.decode(errors="replace")
            if text.endswith("\n") and any(ln.startswith(banner_end) for ln in text.splitlines()):
                return text
    raise RuntimeError(f"tessera printed no endpoint within {START_TIMEOUT}s:\n{log.read_text(errors='replace')}")


def wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    # The probe asks the process just started whether it is ready, not who it is: its certificate
    # (often self-signed) is not checked.
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(endpoint + "/health/ready", timeout=2, context=unverified) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"tessera exited:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"{endpoint} never became ready")
