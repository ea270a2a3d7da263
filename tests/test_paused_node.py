"""A storage node paused (SIGSTOP) for ~20 s while PUTs run: each PUT answers within a few seconds.

A real cluster on loopback (`tessera dev`'s DevCluster: 1 metadata service, 6 nodes, 1 gateway, EC 4+2),
so every object has a fragment on the paused node. The write acknowledges once k+1 fragments are
durable and gives the paused node a bounded grace (gateway/objects/feeds.py); its fragments are
recorded as missed and, once it is back, rebuilt by repair. Every object then reads back byte for byte,
also from the paused node's own fragments.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from cli.dev import DevCluster
from cli.launch import tessera_command
from tests.s3_helpers import dev_client
from tests.test_self_healing import admin_call, admin_env, all_full, wait_until

KiB, MiB = 1 << 10, 1 << 20
PAUSE = 20.0  # seconds the node stays stopped
PUT_BOUND = 6.0  # seconds any PUT may take while the node is paused: the 2 s grace, and a loaded machine
SIZES = [300 * KiB, 5 * MiB + 123]  # one segment, and several segments (the 1 MiB default)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path / "cluster", nodes=6, metas=1, gateways=1)
    c.start()
    yield c
    c.stop()


def _node_live(c: DevCluster, name: str) -> bool:
    address = c.services[name].hostport
    nodes = admin_call(c, lambda a: a.status())["nodes"]
    return any(n["live"] and address in n["address"] for n in nodes)


def repair_to_full_redundancy(cluster: DevCluster, bucket: str, keys: Iterable[str]) -> None:
    """`tessera admin repair --wait`, then every object at full redundancy (inspect verifies each fragment)."""
    run = subprocess.run(
        [*tessera_command(), "admin", "--endpoint", cluster.endpoint(), "repair", "--wait"],
        env=admin_env(cluster),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0 and "repair done" in run.stdout, run
    problems: list[str] = []

    def full() -> bool:
        nonlocal problems
        problems = all_full(cluster, bucket, keys)
        return not problems

    try:
        wait_until(full, 90, "full redundancy", every=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {problems[:6]}") from None


def test_puts_finish_within_seconds_while_a_node_is_paused(cluster: DevCluster) -> None:
    s3 = dev_client(cluster, retries={"max_attempts": 1})  # each PUT must succeed at its first try
    s3.create_bucket(Bucket="paused")
    objects: dict[str, bytes] = {}
    took: list[tuple[str, float]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key, data = f"obj-{i}", os.urandom(SIZES[i % len(SIZES)])
            started = time.monotonic()
            try:
                s3.put_object(Bucket="paused", Key=key, Body=data)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)
                return
            took.append((key, time.monotonic() - started))
            objects[key] = data
            i += 1

    s3.put_object(Bucket="paused", Key="warm-up", Body=os.urandom(SIZES[0]))
    victim = cluster.services["node3"]
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(took) >= 2, 60, "the writer to run")
        os.kill(victim.pid, signal.SIGSTOP)  # alive to the kernel: its sockets take bytes, nobody reads them
        paused_at = len(took)
        try:
            time.sleep(PAUSE)  # the pause itself is the fault being tested
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        during = len(took) - paused_at
        wait_until(lambda: len(took) >= paused_at + during + 2, 60, "PUTs after the pause")
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert not errors, errors
    slow = [(k, round(t, 1)) for k, t in took if t > PUT_BOUND]
    assert not slow, f"PUTs slower than {PUT_BOUND} s while the node was paused: {slow}"
    assert during >= 4, f"only {during} PUTs went through in the {PAUSE} s pause"
    gateway_log = cluster.services["gateway1"].log.read_text(errors="replace")
    assert "left behind by a write" in gateway_log, "no write met the paused node: the test proved nothing"
    assert "Traceback" not in gateway_log

    # Back: repair rebuilds what the paused node missed, and what it holds is whole (inspect verifies).
    wait_until(lambda: _node_live(cluster, "node3"), 30, "node3 to be live again")
    repair_to_full_redundancy(cluster, "paused", objects)
    tmp = Path(victim.args[victim.args.index("--data") + 1]) / "tmp"
    wait_until(lambda: not any(tmp.iterdir()), 30, "the paused node to drop its cut uploads")

    # Two other nodes gone: every read needs the paused node's fragments, which must be whole and right.
    for name in ("node1", "node5"):
        cluster.kill(name)
    reader = dev_client(cluster)
    for key, data in objects.items():
        got = reader.get_object(Bucket="paused", Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key
