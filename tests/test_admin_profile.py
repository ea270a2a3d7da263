"""`tessera admin` finds credentials and its endpoint as aws-cli does (--profile, AWS_PROFILE, ~/.aws files),
takes `s3://BUCKET/KEY`, and shows the version the gateway runs (also in its Server header)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = start_server(tmp_path_factory.mktemp("server"), extra=("--scan-interval", "3600", "--scrub-interval", "0"))
    yield s
    s.stop()


@pytest.fixture
def aws_files(tmp_path: Path, srv: ServerProcess) -> dict[str, str]:
    """An environment with no key variables and aws-cli's two files: profile ops (the root keys),
    profile far (the root keys and the endpoint), profile wrong (keys the gateway does not know)."""
    creds, config = tmp_path / "credentials", tmp_path / "config"
    creds.write_text(
        f"[ops]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"[wrong]\naws_access_key_id = AKNOBODY0000000000\naws_secret_access_key = nobody-knows-this-one\n"
    )
    config.write_text(
        f"[profile far]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"endpoint_url = {srv.endpoint}\nregion = us-east-1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(config), "COLUMNS": "200"}


def admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "admin", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_profile_flag_and_variable(srv: ServerProcess, aws_files: dict[str, str]) -> None:
    r = admin(aws_files, "--endpoint", srv.endpoint, "--profile", "ops", "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == version("tessera")
    r = admin({**aws_files, "AWS_PROFILE": "ops"}, "--endpoint", srv.endpoint, "status")
    assert r.returncode == 0, r.stderr
    assert f"Tessera {version('tessera')}" in r.stdout


def test_profile_endpoint_and_precedence(srv: ServerProcess, aws_files: dict[str, str]) -> None:
    # The endpoint from the profile's endpoint_url; no --endpoint, no AWS_ENDPOINT_URL.
    r = admin(aws_files, "--profile", "far", "status", "--json")
    assert r.returncode == 0, r.stderr
    # An explicit --profile wins over the key variables, as in aws-cli...
    wrong_env = {**aws_files, "AWS_ACCESS_KEY_ID": "AKNOBODY0000000000", "AWS_SECRET_ACCESS_KEY": "x" * 20}
    r = admin(wrong_env, "--endpoint", srv.endpoint, "--profile", "ops", "status", "--json")
    assert r.returncode == 0, r.stderr
    # ...while AWS_PROFILE does not.
    r = admin({**wrong_env, "AWS_PROFILE": "ops"}, "--endpoint", srv.endpoint, "status", "--json")
    assert r.returncode == 1 and "InvalidAccessKeyId" in r.stderr


def test_unknown_profile_and_no_credentials_are_one_line(srv: ServerProcess, aws_files: dict[str, str]) -> None:
    r = admin(aws_files, "--endpoint", srv.endpoint, "--profile", "nope", "status")
    assert r.returncode == 1 and "no profile 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = admin(aws_files, "--endpoint", srv.endpoint, "status")  # no variables, no default profile
    assert r.returncode == 1 and "no credentials" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_inspect_takes_an_s3_url_and_the_server_header_names_the_version(
    srv: ServerProcess, aws_files: dict[str, str]
) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="profiled")
    put = s3.put_object(Bucket="profiled", Key="dir/k", Body=b"hello")
    assert put["ResponseMetadata"]["HTTPHeaders"]["server"] == f"Tessera/{version('tessera')}"
    r = admin(aws_files, "--profile", "far", "inspect", "s3://profiled/dir/k", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["size"] == 5
