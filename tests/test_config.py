"""Settings from --config FILE (TOML) and TESSERA_<FLAG>: a flag wins over the environment, which wins over
the file; `tessera config check` and a service refuse a bad file with one line and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import boto3
import pytest

from cli.launch import launch, stop, tessera_command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    return {**env, "TESSERA_ACCESS_KEY": "CONFIGTESTKEY0001", "TESSERA_SECRET_KEY": "config-test-secret-01234", **extra}


def _tessera(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tessera_command(), *args], capture_output=True, text=True, env=env or _env(), timeout=60, check=False
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_check_accepts_a_file_for_several_roles(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "t.toml",
        'listen = "127.0.0.1:9100"\n[server]\ndrives = ["a", "b", "c"]\nec = "2+1"\ngc-grace = 60\n'
        '[node]\ndata = ["x", "y"]\nzone = "z1"\nmeta = "127.0.0.1:7000"\n',
    )
    r = _tessera("config", "check", str(f))
    assert r.returncode == 0, r.stderr
    assert "server: 4 setting(s)" in r.stdout and "node: 4 setting(s)" in r.stdout


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[server]\nbogus = 1\n", "'bogus' in [server] is no flag of `tessera server`"),
        ('[server]\ngc-grace = "soon"\n', "gc-grace = 'soon'"),
        ("[server]\nworkers = 0\n", "workers = 0"),
        ('[servr]\nec = "4+2"\n', "unknown table [servr]"),
        ("listen = \n", "not valid TOML"),
        ("nothing-anywhere = 1\n", "'nothing-anywhere' in the top level is no flag"),
    ],
)
def test_a_bad_file_is_refused_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    f = _write(tmp_path / "bad.toml", text)
    for args in (["config", "check", str(f)], ["server", str(tmp_path / "d1"), "--config", str(f)]):
        r = _tessera(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert says in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d1").exists()  # nothing was started or created


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    ports = [_free_port() for _ in range(3)]
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    f = _write(
        tmp_path / "t.toml", f'[server]\nlisten = "127.0.0.1:{ports[0]}"\ndrives = {drives!r}\n'.replace("'", '"')
    )
    cases = [
        ([], _env(), ports[0]),  # the file alone
        ([], _env(TESSERA_LISTEN=f"127.0.0.1:{ports[1]}"), ports[1]),  # the environment over the file
        (["--listen", f"127.0.0.1:{ports[2]}"], _env(TESSERA_LISTEN=f"127.0.0.1:{ports[1]}"), ports[2]),  # the flag
    ]
    for extra, env, port in cases:
        run = launch(["server", "--config", str(f), *extra], env, tmp_path / "server.log")
        try:
            assert run.endpoint == f"http://127.0.0.1:{port}"
            s3 = boto3.client(
                "s3",
                endpoint_url=run.endpoint,
                aws_access_key_id=env["TESSERA_ACCESS_KEY"],
                aws_secret_access_key=env["TESSERA_SECRET_KEY"],
                region_name="us-east-1",
            )
            s3.put_object(Bucket=s3.create_bucket(Bucket=f"b{port}") and f"b{port}", Key="k", Body=b"x")
        finally:
            stop(run.proc)
    # The drives came from the file every time: all three buckets' data is on them.
    assert all(Path(d).is_dir() and any(Path(d).iterdir()) for d in drives)


def test_environment_sets_the_drives_and_the_scheme(tmp_path: Path) -> None:
    drives = " ".join(str(tmp_path / f"e{i}") for i in range(5))
    env = _env(TESSERA_DRIVES=drives, TESSERA_EC="3+2", TESSERA_LISTEN="127.0.0.1:0")
    run = launch(["server"], env, tmp_path / "server.log")
    try:
        assert "EC 3+2 over 5 drives" in run.banner
    finally:
        stop(run.proc)
