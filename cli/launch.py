"""Start `tessera` service processes, learn their endpoint, wait until ready, stop them by PID."""

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
from collections.abc import Mapping, Sequence
from pathlib import Path

START_TIMEOUT = 30.0


def tessera_command() -> list[str]:
    exe = shutil.which("tessera")
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


def launch(args: Sequence[str], env: Mapping[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Run `tessera ARGS` (listening on port 0 is fine) and return it with its printed endpoint, once ready."""
    with open(log, "ab") as log_file:
        proc = subprocess.Popen([*tessera_command(), *args], stdout=subprocess.PIPE, stderr=log_file, env=dict(env))
    try:
        endpoint = _read_endpoint(proc, log)
        wait_ready(endpoint, proc, log)
    except BaseException:
        stop(proc)
        raise
    return proc, endpoint


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


def _read_endpoint(proc: subprocess.Popen[bytes], log: Path) -> str:
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
            for line in out.decode(errors="replace").splitlines():
                if line.startswith("Endpoint:") and out.endswith(b"\n"):
                    return line.split(None, 1)[1].strip()
    raise RuntimeError(f"tessera printed no endpoint within {START_TIMEOUT}s:\n{log.read_text(errors='replace')}")


def wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(endpoint + "/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"tessera exited:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"{endpoint} never became ready")
