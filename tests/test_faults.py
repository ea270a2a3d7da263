"""Faults an operator meets, on a real `tessera server`: rot that only repair is asked to fix, scrub's
figures, capacity of shared filesystems, a full index filesystem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, start_server
from tests.test_admin_embedded import admin, fill, fragment_files, inspect, read_back

MiB = 1 << 20


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # No background scan or scrub: what gets repaired is what the test's admin command finds.
    s = start_server(tmp_path / "server", extra=("--scan-interval", "3600", "--scrub-interval", "0"))
    yield s
    s.stop()


def test_repair_finds_and_rebuilds_a_corrupt_fragment(srv: ServerProcess) -> None:
    objects = fill(srv, "rot", [2 * MiB, 300_000])
    victim = fragment_files(srv)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x5A
    victim.write_bytes(data)
    states = [f["state"] for key in objects for p in inspect(srv, "rot", key)["parts"] for f in p["fragments"]]
    assert states.count("corrupt") == 1, states
    res = admin(srv, "repair", "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 of 1" in res.stdout, res.stdout
    assert victim.read_bytes() != bytes(data)  # rewritten in place, verified
    for key in objects:
        doc = inspect(srv, "rot", key)
        assert doc["health"] == "healthy", doc
        assert all(f["state"] == "ok" for p in doc["parts"] for f in p["fragments"]), doc
    read_back(srv, "rot", objects)
