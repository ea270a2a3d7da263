"""`tessera server` as a user meets it: its messages, exit codes and credentials."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cli.launch import launch, stop
from tests.server_process import CLEAN_ENV, assert_one_line_error, run_server


def test_too_few_drives_for_the_scheme(tmp_path: Path) -> None:
    drives = [str(tmp_path / f"d{i}") for i in range(5)]
    assert_one_line_error(run_server([*drives, "--listen", "127.0.0.1:0"], tmp_path), "needs 6 drives")


@pytest.mark.parametrize("ec", ["4", "4+0", "0+2", "a+b", "30+3"])
def test_bad_ec(tmp_path: Path, ec: str) -> None:
    assert_one_line_error(run_server(["--ec", ec, "--listen", "127.0.0.1:0"], tmp_path), "--ec")


def test_unwritable_drive(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    drives = [str(tmp_path / f"d{i}") for i in range(5)] + [str(tmp_path / "file" / "d6")]
    res = run_server([*drives, "--listen", "127.0.0.1:0"], tmp_path)
    assert_one_line_error(res, "d6")


def test_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = run_server(["--listen", f"127.0.0.1:{port}"], tmp_path)
    assert_one_line_error(res, f"127.0.0.1:{port}")


def test_bad_listen(tmp_path: Path) -> None:
    assert_one_line_error(run_server(["--listen", "nowhere"], tmp_path), "--listen")


def test_generated_credentials_are_kept_and_reprinted(tmp_path: Path) -> None:
    """Default layout under ./tessera-data; credentials generated once, the same at the next start."""
    banners = []
    for _ in range(2):
        run = launch(["server", "--listen", "127.0.0.1:0"], CLEAN_ENV, tmp_path / "log", cwd=tmp_path)
        stop(run.proc)
        banners.append([ln for ln in run.banner.splitlines() if ln.startswith("export AWS_ACCESS_KEY_ID=")])
    assert banners[0] and banners[0] == banners[1]
    assert all((tmp_path / "tessera-data" / f"drive{i}" / "fragments").is_dir() for i in range(1, 7))
    creds = tmp_path / "tessera-data" / "drive1" / ".tessera-system" / "credentials.json"  # and beside each copy
    assert creds.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_environment_credentials_win(tmp_path: Path) -> None:
    env = CLEAN_ENV | {"TESSERA_ACCESS_KEY": "ENVKEY", "TESSERA_SECRET_KEY": "env-secret-123"}
    run = launch(["server", "--listen", "127.0.0.1:0"], env, tmp_path / "log", cwd=tmp_path)
    stop(run.proc)
    assert "AWS_ACCESS_KEY_ID=ENVKEY  AWS_SECRET_ACCESS_KEY=env-secret-123" in run.banner
    assert run.proc.returncode == 0  # SIGTERM is a clean stop
    assert not list((tmp_path / "tessera-data").glob("**/credentials.json"))
