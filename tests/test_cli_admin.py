"""`tessera admin` before the admin API's server side exists: the signer against the gateway's own verifier and
botocore, the CLI's failure paths, and the rendering of documents shaped as in docs/admin-api.md.

Tests against a real gateway come with the server side.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner
from rich.console import Console

from cli.admin.render import job_failed, job_summary, new_user_lines, render_inspect, render_status, render_users
from cli.launch import tessera_command
from cli.main import main
from gateway.admin.client import BASE_PATH, AdminError, error_from_response
from gateway.s3 import sigv4
from gateway.s3.errors import S3Error
from gateway.s3.signer import Signer, encode_path, encode_query, encode_segment
from tests.s3_helpers import botocore_clock

ACCESS_KEY = "TESSERAROOT0001"
SECRET_KEY = "root/secret+key=with~odd/chars"
HOST = "127.0.0.1:9000"
REPO = Path(__file__).resolve().parent.parent

# (method, encoded path, decoded query pairs): admin calls, and S3 paths as awkward as the bench signs.
REQUESTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("GET", BASE_PATH + "status", []),
    ("GET", BASE_PATH + "inspect", [("bucket", "photos"), ("key", "dir/ü [x]&eq=+%41 ~")]),
    ("POST", BASE_PATH + "repair", []),
    ("POST", BASE_PATH + f"nodes/{encode_segment('node/1 a')}/drain", []),
    ("GET", BASE_PATH + "jobs/3f2a9c", []),
    ("POST", BASE_PATH + "users", [("name", "ops@example.com+x=y")]),
    ("DELETE", BASE_PATH + f"users/{encode_segment('ops@example.com+x=y')}", []),
    ("GET", "/bucket/" + encode_path("punct~*'()!$,;:@[]{}^`|\\\"<>"), [("list-type", "2"), ("prefix", "a b")]),
    ("PUT", "/bucket/" + encode_path("double//slash/./dot/../x"), [("partNumber", "1"), ("uploadId", "u+/=")]),
]


def _lookup(access_key: str) -> str | None:
    return SECRET_KEY if access_key == ACCESS_KEY else None


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3"])
@pytest.mark.parametrize(("method", "path", "query"), REQUESTS)
def test_signer_is_accepted_by_the_gateway_verifier(region: str, method: str, path: str, query: list) -> None:
    headers = Signer(ACCESS_KEY, SECRET_KEY, region, HOST).headers(method, path, query)
    ctx = sigv4.verify(method, path, query, headers, _lookup)
    assert (ctx.access_key, ctx.region, ctx.payload_hash) == (ACCESS_KEY, region, sigv4.UNSIGNED_PAYLOAD)
    # And what we send parses back to what we signed.
    assert sigv4.parse_query(encode_query(query)) == query


def test_signer_with_a_wrong_secret_or_another_path_is_refused() -> None:
    method, path, query = REQUESTS[1]
    headers = Signer(ACCESS_KEY, "not the secret", "us-east-1", HOST).headers(method, path, query)
    with pytest.raises(S3Error) as err:
        sigv4.verify(method, path, query, headers, _lookup)
    assert err.value.code == "SignatureDoesNotMatch"
    headers = Signer(ACCESS_KEY, SECRET_KEY, "us-east-1", HOST).headers(method, path, query)
    with pytest.raises(S3Error):
        sigv4.verify(method, BASE_PATH + "status", query, headers, _lookup)


class _UnsignedPayloadAuth(S3SigV4Auth):
    def payload(self, request: AWSRequest) -> str:
        return sigv4.UNSIGNED_PAYLOAD


@pytest.mark.parametrize(("method", "path", "query"), REQUESTS)
def test_signer_matches_botocore(method: str, path: str, query: list) -> None:
    ours = Signer(ACCESS_KEY, SECRET_KEY, "eu-west-3", HOST).headers(method, path, query)
    qs = encode_query(query)
    request = AWSRequest(method=method, url=f"http://{HOST}{path}" + (f"?{qs}" if qs else ""))
    when = datetime.strptime(ours["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    with botocore_clock(when):
        _UnsignedPayloadAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "eu-west-3").add_auth(request)
    assert request.headers["Authorization"] == ours["Authorization"]
    assert request.headers["X-Amz-Date"] == ours["x-amz-date"]


def test_signer_adds_extra_headers_unsigned() -> None:
    headers = Signer(ACCESS_KEY, SECRET_KEY, "us-east-1", HOST).headers("PUT", "/b/k", [], {"Content-Length": "3"})
    assert headers["Content-Length"] == "3" and "content-length" not in headers["Authorization"]
    sigv4.verify("PUT", "/b/k", [], headers, _lookup)


# -- errors from the gateway ---------------------------------------------------------------------------


def test_errors_parse_from_json_and_s3_xml() -> None:
    err = error_from_response(404, b'{"code": "NoSuchNode", "message": "no node n9"}')
    assert (err.status, err.code, err.message) == (404, "NoSuchNode", "no node n9")
    assert str(err) == "NoSuchNode: no node n9 (HTTP 404)"
    xml = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message>'
    err = error_from_response(403, xml + b"<RequestId>1</RequestId></Error>")
    assert (err.status, err.code, err.message) == (403, "AccessDenied", "Access Denied")
    namespaced = b'<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Code>SlowDown</Code></Error>'
    assert error_from_response(503, namespaced).code == "SlowDown"
    err = error_from_response(502, b"<html>Bad Gateway</html>")
    assert (err.code, err.message) == ("HTTP502", "<html>Bad Gateway</html>")
    assert error_from_response(500, b"").code == "HTTP500"


def test_an_endpoint_that_is_not_http_is_refused() -> None:
    from gateway.admin.client import AdminClient

    with pytest.raises(AdminError, match="not an http"):
        AdminClient("ftp://x", ACCESS_KEY, SECRET_KEY)
    assert AdminClient("127.0.0.1:9000", ACCESS_KEY, SECRET_KEY).endpoint == "http://127.0.0.1:9000"


# -- the CLI's failure paths ---------------------------------------------------------------------------

CREDS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_ENDPOINT_URL": None}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and nobody else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_status_without_credentials() -> None:
    env = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}
    result = CliRunner().invoke(main, ["admin", "status"], env=env)
    assert result.exit_code == 1
    assert "AWS_ACCESS_KEY_ID" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_unreachable_gateway_is_one_line_and_exit_1(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    for args in (["admin", "--endpoint", url, "status"], ["admin", "--endpoint-url", url, "user", "list"]):
        result = CliRunner().invoke(main, args, env=CREDS)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip() == f"tessera admin: error: cannot reach the gateway at {url}: Connection refused"
    # AWS_ENDPOINT_URL is used when --endpoint is not given, and --endpoint wins over it.
    result = CliRunner().invoke(main, ["admin", "repair", "--wait"], env={**CREDS, "AWS_ENDPOINT_URL": url})
    assert result.exit_code == 1 and f"cannot reach the gateway at {url}" in result.stderr
    result = CliRunner().invoke(
        main, ["admin", "--endpoint", url, "scrub"], env={**CREDS, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    )
    assert result.exit_code == 1 and f"cannot reach the gateway at {url}" in result.stderr


def test_unreachable_gateway_from_a_real_process(closed_port: int) -> None:
    """No traceback, nothing on stdout, exit 1: as an operator's shell sees it."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    url = f"http://127.0.0.1:{closed_port}"
    proc = subprocess.run(
        [*tessera_command(), "admin", "--endpoint", url, "node", "drain", "n1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"tessera admin: error: cannot reach the gateway at {url}: Connection refused"


def test_usage_errors_exit_2() -> None:
    result = CliRunner().invoke(main, ["admin", "inspect", "just-a-bucket"], env=CREDS)
    assert result.exit_code == 2 and "BUCKET/KEY" in result.stderr
    assert CliRunner().invoke(main, ["admin", "node", "drain"], env=CREDS).exit_code == 2


# -- rendering -------------------------------------------------------------------------------------------

NOW = 1795000000.0


def _job(**changes: Any) -> dict[str, Any]:
    job = {
        "id": "3f2a0c11d4e5",
        "kind": "repair",
        "target": "",
        "phase": "repairing",
        "total": 120,
        "completed": 45,
        "unit": "parts",
        "bytes": 47185920,
        "failed": 0,
        "started": NOW - 30,
        "finished": None,
        "message": "rebuilding parts below full redundancy",
    }
    return {**job, **changes}


STATUS = {
    "ec": "4+2",
    "node_grace": 600.0,
    "gc_grace": 3600.0,
    "nodes": [
        {
            "id": "node-a",
            "address": "http://127.0.0.1:7101",
            "zone": "rack-1",
            "state": "active",
            "live": True,
            "last_seen": NOW - 1,
            "capacity": 4 << 40,
            "free": 1536 << 30,
            "drives": [{"id": "d1", "capacity": 2 << 40, "free": 768 << 30}] * 2,
        },
        {
            "id": "node-b",
            "address": "http://127.0.0.1:7102",
            "zone": "[red]rack-2",  # markup in a server string must print as is
            "state": "draining",
            "live": False,
            "last_seen": NOW - 700,
            "capacity": 0,
            "free": 0,
            "drives": [],
        },
    ],
    "metadata": [
        {"address": "http://127.0.0.1:7001", "ok": True, "error": ""},
        {"address": "http://127.0.0.1:7002", "ok": False, "error": "connection refused"},
    ],
    "repair": {
        "backlog": 7,
        "running": True,
        "repaired_parts": 12,
        "repaired_bytes": 3 << 20,
        "failed": 1,
        "bytes_per_s": 2 << 20,
    },
    "gc": {"removed_fragments": 5, "freed_bytes": 10 << 20, "last_run": NOW - 90},
    "jobs": [_job(), _job(id="9e8d7c6b5a40", kind="drain", target="node-b", phase="moving")],
}

INSPECT = {
    "bucket": "photos",
    "key": "2024/cat [1].jpg",
    "version_id": "v-0001",
    "size": (4 << 20) + 100,
    "etag": '"9b2cf535f27731c974343645a3985328-2"',
    "last_modified": NOW,
    "health": "degraded",
    "parts": [
        {
            "number": 1,
            "data_id": "d1",
            "size": 4 << 20,
            "ec": "4+2",
            "segment_size": 1 << 20,
            "segments": 4,
            "inline": False,
            "healthy": 5,
            "fragments": [
                {
                    "index": i,
                    "drive": f"drive-{i}",
                    "node": f"node-{i}",
                    "zone": "rack-1",
                    "state": ["ok", "ok", "corrupt", "ok", "ok", "ok"][i],
                    "size": (1 << 20) + 64,
                }
                for i in range(6)
            ],
        },
        {
            "number": 2,
            "data_id": "d2",
            "size": 100,
            "ec": "4+2",
            "segment_size": 1 << 20,
            "segments": 1,
            "inline": True,
            "healthy": 0,
            "fragments": [],
        },
    ],
}


def _render(fn: Any, doc: dict[str, Any], **kwargs: Any) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    fn(console, doc, **kwargs)
    return console.export_text()


def test_status_rendering() -> None:
    text = _render(render_status, STATUS, now=NOW)
    assert "EC 4+2" in text and "node grace 10m" in text and "gc grace 1h" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│ node-")}
    assert set(rows) == {"node-a", "node-b"}
    for cell in ("http://127.0.0.1:7101", "rack-1", "active", "yes", "4.0 TiB", "1.5 TiB"):
        assert cell in rows["node-a"]
    for cell in ("[red]rack-2", "draining", "no (seen 11m40s ago)", "0 B"):
        assert cell in rows["node-b"]
    assert "2 node(s), 1 live; capacity 4.0 TiB, free 1.5 TiB" in text
    assert "http://127.0.0.1:7002" in text and "connection refused" in text
    assert "backlog 7 part(s), running; repaired 12 part(s) (3.0 MiB), 2.0 MiB/s, 1 failed" in text
    assert "removed 5 fragment(s), freed 10.0 MiB, last run 1m30s ago" in text
    assert "3f2a0c11d4e5" in text and "45 parts / 120 parts" in text and "node-b" in text and "moving" in text


def test_status_rendering_of_an_empty_cluster() -> None:
    doc = {**STATUS, "nodes": [], "metadata": [{"address": "local", "ok": True, "error": ""}], "jobs": []}
    text = _render(render_status, doc, now=NOW)
    assert "0 node(s), 0 live" in text and "local" in text and "Jobs" not in text


def test_inspect_rendering() -> None:
    text = _render(render_inspect, INSPECT)
    assert "photos/2024/cat [1].jpg" in text and "v-0001" in text
    assert "4.0 MiB (4194404 bytes)" in text and "9b2cf535f27731c974343645a3985328-2" in text
    assert "2026-11-18 11:06:40 UTC" in text
    part1 = next(line for line in text.splitlines() if line.startswith("│ 1 "))
    for cell in ("4+2", "4 x 1.0 MiB", "5/6", "degraded"):
        assert cell in part1
    part2 = next(line for line in text.splitlines() if line.startswith("│ 2 "))
    assert "inline" in part2 and "healthy" in part2
    assert "Part 1 fragments" in text and "Part 2 fragments" not in text
    fragment2 = next(line for line in text.splitlines() if line.startswith("│ 2 ") and "node-2" in line)
    assert "drive-2" in fragment2 and "corrupt" in fragment2 and "rack-1" in fragment2


def test_fragment_states_are_coloured_on_a_terminal() -> None:
    console = Console(record=True, width=200, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    render_inspect(console, INSPECT)
    styled = console.export_text(styles=True)
    assert "\x1b[" in styled and "corrupt" in styled
    plain = Console(record=True, width=200, file=io.StringIO())
    render_inspect(plain, INSPECT)
    assert "\x1b[" not in plain.file.getvalue()  # type: ignore[attr-defined]


def test_users_rendering_and_new_user_lines() -> None:
    doc = {"users": [{"name": "alice", "access_key": "AKALICE", "created": NOW}]}
    text = _render(render_users, doc)
    assert "alice" in text and "AKALICE" in text
    lines = new_user_lines({"name": "alice", "access_key": "AK1", "secret_key": "S/1+", "created": NOW})
    assert "AK1" in lines[1] and "S/1+" in lines[2]
    assert lines[-1] == "export AWS_ACCESS_KEY_ID=AK1  AWS_SECRET_ACCESS_KEY=S/1+"


def test_job_summary_and_failure() -> None:
    done = _job(phase="done", completed=120, finished=NOW, message="repaired 120 parts")
    assert job_summary(done) == "repair done: repaired 120 parts (120 parts of 120 parts, 45.0 MiB rebuilt, 0 failed)"
    assert not job_failed(done)
    assert job_failed(_job(phase="done", failed=2, finished=NOW))
    assert job_failed(_job(phase="failed", finished=NOW))
    scrub = _job(kind="scrub", unit="bytes", total=3 << 30, completed=3 << 30, phase="done", finished=NOW, message="")
    assert job_summary(scrub) == "scrub done: done (3.0 GiB of 3.0 GiB, 45.0 MiB verified, 0 failed)"
    drain = _job(kind="drain", target="node-b", phase="done", finished=NOW, message="node-b retired")
    assert "45.0 MiB moved" in job_summary(drain) and "node-b retired" in job_summary(drain)


def test_time_passes_for_the_ago_column() -> None:
    """The default `now` is the wall clock: a just-started job reads as a few seconds ago."""
    text = _render(render_status, {**STATUS, "jobs": [_job(started=time.time() - 3)]})
    assert "3s ago" in text or "4s ago" in text


def test_status_shows_drive_paths_and_counts_a_shared_filesystem_once() -> None:
    drives = [{"id": f"d{i}", "path": f"/srv/disk{i}", "capacity": 1 << 40, "free": 1 << 39} for i in range(3)]
    node = {**STATUS["nodes"][0], "drives": drives, "capacity": 1 << 40, "free": 1 << 39}  # one filesystem
    text = _render(render_status, {**STATUS, "nodes": [node], "capacity": 1 << 40, "free": 1 << 39}, now=NOW)
    assert all(f"/srv/disk{i}" in text for i in range(3)), text
    assert "1 node(s), 1 live; capacity 1.0 TiB, free 512.0 GiB" in text
