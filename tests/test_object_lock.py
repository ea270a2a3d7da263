"""Object lock against a real `tessera server` (the embedded server, LocalIndex): the cases of
tests/object_lock_cases.py, and what only raw requests or the embedded server show (the integrity header lock
requests need, hostile headers and bodies, GC keeping a locked version's fragments)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.object_lock_cases import (  # noqa: F401  (collected here)
    ahead,
    locked_bucket,
    test_governance_bypass,
    test_legal_hold_on_and_off,
    test_lock_configuration,
    test_lock_requests_to_a_bucket_without_lock,
    test_multipart_and_copy_carry_the_lock,
    test_retention_and_legal_hold_per_version,
    test_retention_ends,
    test_veeam_like_flow,
    version_ids,
)
from tests.s3_helpers import MiB, data, expect_error, md5_b64, signed_request, unique
from tests.server_process import ServerProcess, start_server
from tests.test_admin_embedded import fragment_files, wait_for
from tests.test_users import add_user, user_client
from tests.test_versioning import status

INTEGRITY = "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters"
LOCK_CONFIG = b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"


def _config(mode: str, period: str) -> bytes:
    rule = f"<Rule><DefaultRetention><Mode>{mode}</Mode>{period}</DefaultRetention></Rule>"
    return LOCK_CONFIG.replace(b"</ObjectLockConfiguration>", rule.encode() + b"</ObjectLockConfiguration>")


def _iso(seconds: float) -> str:
    return ahead(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lock_requests_need_content_md5_or_a_checksum(server: ServerProcess, s3: Any) -> None:
    name = locked_bucket(s3)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    retention = f"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>{_iso(600)}</RetainUntilDate></Retention>"
    hold = b"<LegalHold><Status>ON</Status></LegalHold>"
    for target, body in (
        (f"/{name}?object-lock", LOCK_CONFIG),
        (f"/{name}/k?retention", retention.encode()),
        (f"/{name}/k?legal-hold", hold),
    ):
        bare = signed_request(server, "PUT", target, body)
        assert (bare.status, bare.error()["Code"], bare.error()["Message"]) == (400, "InvalidRequest", INTEGRITY)
        ok = signed_request(server, "PUT", target, body, {"Content-MD5": md5_b64(body)})
        assert ok.status == 200, ok.body
    lock_headers = {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": _iso(600)}
    bare = signed_request(server, "PUT", f"/{name}/p", b"data", lock_headers)
    assert (bare.status, bare.error()["Message"]) == (400, INTEGRITY)
    assert version_ids(s3, name) == [s3.head_object(Bucket=name, Key="k")["VersionId"]]  # nothing stored
    ok = signed_request(server, "PUT", f"/{name}/p", b"data", {**lock_headers, "Content-MD5": md5_b64(b"data")})
    assert ok.status == 200 and s3.head_object(Bucket=name, Key="p")["ObjectLockMode"] == "GOVERNANCE"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"x-amz-object-lock-mode": "GOVERNANCE"}, "InvalidArgument"),
        ({"x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}, "InvalidArgument"),
        (
            {"x-amz-object-lock-mode": "FOREVER", "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"},
            "InvalidArgument",
        ),
        (
            {"x-amz-object-lock-mode": "COMPLIANCE", "x-amz-object-lock-retain-until-date": "tomorrow"},
            "InvalidArgument",
        ),
        (
            {"x-amz-object-lock-mode": "COMPLIANCE", "x-amz-object-lock-retain-until-date": "9" * 5000},
            "InvalidArgument",
        ),
        (
            {"x-amz-object-lock-mode": "COMPLIANCE", "x-amz-object-lock-retain-until-date": "2099-13-01T00:00:00Z"},
            "InvalidArgument",
        ),
        ({"x-amz-object-lock-legal-hold": "on"}, "InvalidArgument"),
        ({"x-amz-object-lock-legal-hold": "YES"}, "InvalidArgument"),
    ],
)
def test_hostile_lock_headers(server: ServerProcess, s3: Any, headers: dict[str, str], code: str) -> None:
    name = locked_bucket(s3)
    resp = signed_request(server, "PUT", f"/{name}/k", b"x", {**headers, "Content-MD5": md5_b64(b"x")})
    assert (resp.status, resp.error()["Code"]) == (400, code)
    assert version_ids(s3, name) == []


@pytest.mark.parametrize(
    ("target", "body", "code"),
    [
        ("?object-lock", b"<ObjectLockConfiguration/>", "MalformedXML"),
        (
            "?object-lock",
            b"<ObjectLockConfiguration><ObjectLockEnabled>On</ObjectLockEnabled></ObjectLockConfiguration>",
            "MalformedXML",
        ),
        (
            "?object-lock",
            _config("GOVERNANCE", "<Days>x</Days>"),
            "MalformedXML",
        ),
        (
            "?object-lock",
            _config("GOVERNANCE", "<Days>-1</Days>"),
            "InvalidArgument",
        ),
        (
            "?object-lock",
            _config("GOVERNANCE", "<Days>99999999999999999999999</Days>"),
            "MalformedXML",
        ),
        ("?object-lock", b"not xml", "MalformedXML"),
        ("/k?retention", b"<Retention><Mode>GOVERNANCE</Mode></Retention>", "MalformedXML"),
        (
            "/k?retention",
            b"<Retention><Mode>KEEP</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>",
            "MalformedXML",
        ),
        (
            "/k?retention",
            b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>soon</RetainUntilDate></Retention>",
            "InvalidArgument",
        ),
        ("/k?legal-hold", b"<LegalHold><Status>MAYBE</Status></LegalHold>", "MalformedXML"),
        ("/k?legal-hold", b"<Hold/>", "MalformedXML"),
    ],
)
def test_hostile_lock_bodies(server: ServerProcess, s3: Any, target: str, body: bytes, code: str) -> None:
    name = locked_bucket(s3)
    vid = s3.put_object(Bucket=name, Key="k", Body=b"x")["VersionId"]
    resp = signed_request(server, "PUT", f"/{name}{target}", body, {"Content-MD5": md5_b64(body)})
    assert (resp.status, resp.error()["Code"]) == (400, code), resp.body
    assert s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled"}
    head = s3.head_object(Bucket=name, Key="k")
    assert "ObjectLockMode" not in head and "ObjectLockLegalHoldStatus" not in head and head["VersionId"] == vid


def test_lock_subresources_answer_only_their_methods(server: ServerProcess, s3: Any) -> None:
    name = locked_bucket(s3)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    for target in (f"/{name}?object-lock", f"/{name}/k?retention", f"/{name}/k?legal-hold"):
        resp = signed_request(server, "DELETE", target)
        assert resp.status == 405, (target, resp.body)
    assert s3.head_bucket(Bucket=name) and s3.head_object(Bucket=name, Key="k")
    bad = signed_request(server, "PUT", "/", b"", {"x-amz-bucket-object-lock-enabled": "maybe"})
    assert bad.status in (400, 405)
    created = signed_request(server, "PUT", "/lock-odd-flag", b"", {"x-amz-bucket-object-lock-enabled": "maybe"})
    assert (created.status, created.error()["Code"]) == (400, "InvalidArgument")
    expect_error(s3.head_bucket, "404", 404, Bucket="lock-odd-flag")


@pytest.fixture
def gc_srv(tmp_path: Path) -> Iterator[ServerProcess]:
    # A scan (with GC of what it finds unreferenced for 1 s) every second.
    s = start_server(tmp_path / "server", extra=("--gc-grace", "1", "--scan-interval", "1", "--scrub-interval", "0"))
    yield s
    s.stop()


def test_gc_keeps_a_locked_version(gc_srv: ServerProcess) -> None:
    srv, s3 = gc_srv, gc_srv.client()
    name = locked_bucket(s3, "COMPLIANCE", 1)
    bodies = [data(MiB + i, seed=i) for i in range(2)]
    ids = [s3.put_object(Bucket=name, Key="k", Body=b)["VersionId"] for b in bodies]
    s3.delete_object(Bucket=name, Key="k")  # a delete marker: both versions noncurrent
    assert len(fragment_files(srv)) == 12
    since = time.time() + 1.5  # past the grace of every fragment written so far
    wait_for("two scans with GC past the grace", lambda: status(srv)["gc"]["last_run"] > since + 1)
    assert len(fragment_files(srv)) == 12
    for vid, body in zip(ids, bodies, strict=True):
        got = s3.get_object(Bucket=name, Key="k", VersionId=vid)["Body"].read()
        assert hashlib.md5(got).digest() == hashlib.md5(body).digest()
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=name, Key="k", VersionId=ids[0])


def test_aws_cli_object_lock(server: ServerProcess, s3: Any, tmp_path: Path) -> None:
    """The aws-cli commands a backup operator types: a lock-enabled bucket, a default retention, an upload
    (`aws s3 cp`, which sends its own checksums), a refused delete of the locked version, a legal hold."""
    name = unique("cli")
    server.aws("s3api", "create-bucket", "--bucket", name, "--object-lock-enabled-for-bucket")
    rule = '{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"COMPLIANCE","Days":1}}}'
    server.aws("s3api", "put-object-lock-configuration", "--bucket", name, "--object-lock-configuration", rule)
    src = tmp_path / "backup.bin"
    src.write_bytes(data(2 * MiB))
    server.aws("s3", "cp", str(src), f"s3://{name}/backup.bin")
    head = json.loads(server.aws("s3api", "head-object", "--bucket", name, "--key", "backup.bin").stdout)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    vid = head["VersionId"]
    refused = server.aws(
        "s3api", "delete-object", "--bucket", name, "--key", "backup.bin", "--version-id", vid, check=False
    )
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    hold = ("--legal-hold", "Status=ON")
    server.aws("s3api", "put-object-legal-hold", "--bucket", name, "--key", "backup.bin", *hold)
    got = json.loads(server.aws("s3api", "get-object-legal-hold", "--bucket", name, "--key", "backup.bin").stdout)
    assert got["LegalHold"]["Status"] == "ON"


def test_a_users_own_lock_binds_them_and_the_root(server: ServerProcess, s3: Any) -> None:
    """A bucket's owner may bypass GOVERNANCE retention (as the root may); COMPLIANCE and legal holds bind the
    owner and the root alike; other users cannot reach the bucket at all."""
    owner = user_client(server.endpoint, add_user(server.endpoint, unique("owner")))
    stranger = user_client(server.endpoint, add_user(server.endpoint, unique("other")))
    name = locked_bucket(owner, "GOVERNANCE", 1)
    gov = owner.put_object(Bucket=name, Key="k", Body=b"governed")["VersionId"]
    comp = owner.put_object(
        Bucket=name, Key="k", Body=b"kept", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=ahead(3600)
    )["VersionId"]
    for client in (owner, s3):
        expect_error(
            client.delete_object,
            "AccessDenied",
            403,
            Bucket=name,
            Key="k",
            VersionId=comp,
            BypassGovernanceRetention=True,
        )
    expect_error(
        stranger.delete_object, "AccessDenied", 403, Bucket=name, Key="k", VersionId=gov, BypassGovernanceRetention=True
    )
    expect_error(owner.delete_object, "AccessDenied", 403, Bucket=name, Key="k", VersionId=gov)
    owner.delete_object(Bucket=name, Key="k", VersionId=gov, BypassGovernanceRetention=True)
    assert version_ids(s3, name) == [comp]
