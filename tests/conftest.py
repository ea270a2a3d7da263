from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess, start_server


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


@pytest.fixture
def s3(server: ServerProcess) -> Any:
    return server.client()
