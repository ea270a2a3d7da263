from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3_helpers import chunked_client, unique
from tests.server_process import ServerProcess, start_server

# pytest-xdist's workers get COLUMNS=80 (and LINES): the `tessera admin` commands the tests run would then draw
# their tables 80 columns wide and shorten IDs and paths, where a run in one process prints them whole.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

# The contract suites are imported by test modules; rewrite their asserts too, for useful failure messages.
pytest.register_assert_rewrite(
    "tests.drive_contract",
    "tests.index_contract",
    "tests.index_contract_uploads",
    "tests.index_contract_cluster",
    "tests.index_contract_tags",
    "tests.index_contract_lifecycle",
    "tests.index_records",
    "tests.version_contract",
    "tests.versioning_cases",
    "tests.lock_contract",
)
pytest.register_assert_rewrite("tests.aws_chunked_helpers", "tests.sigv4_helpers")  # so are these helpers
pytest.register_assert_rewrite("tests.accounting_contract", "tests.webhook_receiver")  # quotas and notifications

# The storage-node fixtures the test_remote_drive* modules share (node, remote, node_process); the console
# tests' (served, browser); a webhook receiver (receiver).
pytest_plugins = [
    "tests.remote_drive_helpers",
    "tests.console_helpers",
    "tests.store_process",
    "tests.shared_clusters",
    "tests.webhook_receiver",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `tessera server` (EC 4+2 on six drives) shared by one test module."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of a test's own, for tests that damage drives or restart it."""
    srv = start_server(tmp_path / "server")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3(server: ServerProcess) -> Any:
    return server.client()


@pytest.fixture(scope="module")
def s3_once(server: ServerProcess) -> Any:
    """A boto3 client that does not retry: botocore retries BadDigest (and 5xx) several times with backoff."""
    return server.client(retries={"mode": "standard", "max_attempts": 1})


@pytest.fixture(scope="module")
def s3_chunked(server: ServerProcess) -> Any:
    """boto3 sending aws-chunked bodies with trailing checksums, as it does to AWS over https."""
    return chunked_client(server)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A new, empty bucket of a test's own on the module's server."""
    name = unique()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def tmpfs_mounts() -> Iterator[list[Path]]:
    """Mount points the test mounts small tmpfs filesystems on; each is unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the index needs root")
    mounted: list[Path] = []
    yield mounted
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def mount_tmpfs(where: Path, mounted: list[Path]) -> None:
    where.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    mounted.append(where)
