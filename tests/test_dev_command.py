"""`tessera dev` as users run it: a fixed gateway port, Ctrl-C even from a background job, and a dead
service reported and reaped."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3

from cli.launch import stop, tessera_command

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _banner(proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    """stdout up to the credentials line, within a bounded time."""
    assert proc.stdout is not None
    text, deadline = b"", time.monotonic() + timeout
    while b"export " not in text:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, f"no banner (exit {proc.poll()}): {text!r}"
        if select.select([proc.stdout], [], [], min(left, 1.0))[0]:
            text += os.read(proc.stdout.fileno(), 65536)
    while not text.endswith(b"\n"):
        text += os.read(proc.stdout.fileno(), 65536)
    return text.decode()


def test_tessera_dev_serves_on_its_port_reports_a_dead_node_and_stops_on_sigint(tmp_path: Path) -> None:
    """Started as `tessera dev ... &` from a script starts it (SIGINT ignored), on a fixed port; a node killed
    with SIGKILL is reported and reaped; SIGINT then stops every service it started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    port = _free_port()
    log = tmp_path / "dev.err"
    args = ["dev", "--nodes", "6", "--data", str(tmp_path / "dev"), "--listen", f"127.0.0.1:{port}"]
    with open(log, "wb") as err:
        # `trap "" INT` then exec: what a non-interactive shell does to a job started with `&`.
        proc = subprocess.Popen(
            ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *tessera_command(), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    pids: list[int] = []
    try:
        banner = _banner(proc)
        assert f"Endpoint:  http://127.0.0.1:{port}" in banner
        pids = [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in banner.splitlines() if "(pid " in line]
        assert len(pids) == 9  # meta1-3 and node1-6 (the gateway is the Endpoint line)
        creds = dict(kv.split("=", 1) for kv in banner.split("export ", 1)[1].split())
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="devcmd")
        data = os.urandom(3 * MiB)
        s3.put_object(Bucket="devcmd", Key="k", Body=data)
        assert s3.get_object(Bucket="devcmd", Key="k")["Body"].read() == data

        node3 = next(int(ln.rsplit("pid ", 1)[1].rstrip(")")) for ln in banner.splitlines() if ln.startswith("node3"))
        os.kill(node3, signal.SIGKILL)
        _wait(lambda: f"node3 (pid {node3}) killed by signal 9" in log.read_text(), 30, "the death to be reported")
        assert not _alive(node3)  # reaped: no zombie left behind

        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
    for pid in pids:  # every service it started is gone with it
        _wait(lambda pid=pid: not _alive(pid), 30, f"pid {pid} to exit")
