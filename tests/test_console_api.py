"""The console's HTTP API against a real `tessera server`: sign-in and its cookie, CSRF, session expiry and
sign-out, root-only pages refused to a user, hostile input, and files only from the package."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import ssl
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from cli.tls import make_local_pki
from tests.console_helpers import ConsoleClient, public_read, start_console_server, wait_for
from tests.s3_helpers import unique
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess

MiB = 1 << 20


@pytest.fixture
def root(served: tuple[ServerProcess, str]) -> ConsoleClient:
    c = ConsoleClient(served[1])
    assert c.sign_in().status == 200
    return c


def _user(root: ConsoleClient, served: tuple[ServerProcess, str]) -> ConsoleClient:
    made = root.call("POST", "/api/users", {"name": unique()})
    assert made.status == 201, made.body
    doc = made.json()
    c = ConsoleClient(served[1])
    assert c.sign_in(doc["access_key"], doc["secret_key"]).status == 200
    return c


def test_sign_in_sets_a_strict_httponly_cookie_and_the_page_a_strict_csp(served: tuple[ServerProcess, str]) -> None:
    c = ConsoleClient(served[1])
    r = c.sign_in()
    assert r.status == 200 and r.json()["root"] is True
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert SECRET_KEY.encode() not in r.body  # the secret goes no further than the sign-in request
    page = c.call("GET", "/")
    assert page.status == 200 and b'type="module"' in page.body
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert b"<script>" not in page.body and b" style=" not in page.body  # nothing inline for the CSP to refuse


def test_bad_sign_in_is_refused_alike_for_a_wrong_secret_and_an_unknown_key(served: tuple[ServerProcess, str]) -> None:
    wrong = ConsoleClient(served[1]).sign_in(ACCESS_KEY, "not-the-secret")
    unknown = ConsoleClient(served[1]).sign_in("NOSUCHKEY0000000000", "whatever")
    assert wrong.status == unknown.status == 403
    assert wrong.json() == unknown.json() and wrong.json()["error"] == "SignInRefused"
    assert "Set-Cookie" not in wrong.headers
    empty = ConsoleClient(served[1]).call("POST", "/api/session", {"access_key": "", "secret_key": ""})
    assert empty.status == 400
    assert (
        ConsoleClient(served[1]).call("POST", "/api/session", b"{not json", {"Content-Type": "application/json"}).status
        == 400
    )


def test_failed_sign_ins_are_rate_limited_and_good_ones_are_not(tmp_path: Path) -> None:
    srv, url = start_console_server(tmp_path / "srv")
    try:
        answers = [ConsoleClient(url).sign_in("AKIDWRONG0000000000", "x").status for _ in range(5)]
        assert answers == [403] * 5
        # Then refused before the secret is looked at (a very slow machine may have earned one more try).
        answers = [ConsoleClient(url).sign_in("AKIDWRONG0000000000", "x").status for _ in range(3)]
        assert 429 in answers and set(answers) <= {403, 429}
        assert ConsoleClient(url).sign_in().status == 429  # even the right secret waits: the guesser may have it
    finally:
        srv.stop()


def test_changes_need_the_csrf_token_and_the_own_origin(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    srv = served[0]
    name = unique()
    no_token = root.call("POST", "/api/buckets", {"name": name}, {"X-CSRF-Token": ""})
    latin = root.call("POST", "/api/buckets", {"name": name}, {"X-CSRF-Token": "\xe9\xff"})  # not ASCII
    assert latin.status == 403
    wrong = root.call("POST", "/api/buckets", {"name": name}, {"X-CSRF-Token": "x" * 32})
    foreign = root.call("POST", "/api/buckets", {"name": name}, {"Origin": "http://evil.example"})
    assert no_token.status == wrong.status == foreign.status == 403
    assert no_token.json()["error"] == "InvalidCSRFToken"
    names = [b["Name"] for b in srv.client().list_buckets()["Buckets"]]
    assert name not in names  # nothing changed
    ok = root.call("POST", "/api/buckets", {"name": name}, {"Origin": served[1]})
    assert ok.status == 201
    assert name in [b["Name"] for b in srv.client().list_buckets()["Buckets"]]
    # Sign-in itself only from a JSON body (a cross-site form cannot send one) and the own origin.
    form = ConsoleClient(served[1]).call(
        "POST", "/api/session", b"access_key=a&secret_key=b", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status == 403


def test_without_a_session_every_api_route_answers_401(served: tuple[ServerProcess, str]) -> None:
    anon = ConsoleClient(served[1])
    for method, path in [("GET", "/api/buckets"), ("GET", "/api/cluster"), ("DELETE", "/api/buckets/x")]:
        r = anon.call(method, path)
        assert r.status == 401 and r.json()["error"] == "SignInRequired", path
    forged = ConsoleClient(served[1])
    forged.jar.set_cookie(_cookie("tessera_console", "forged-session-id", served[1]))
    assert forged.call("GET", "/api/buckets").status == 401


def _cookie(name: str, value: str, base: str) -> Any:
    host = urlsplit(base).hostname
    return http.cookiejar.Cookie(
        0, name, value, None, False, host, False, False, "/", True, False, None, False, None, None, {}
    )


def test_a_session_expires_and_sign_out_ends_it(tmp_path: Path) -> None:
    srv, url = start_console_server(tmp_path / "srv", ("--console-session", "2"))
    try:
        c = ConsoleClient(url)
        assert c.sign_in().status == 200
        assert c.call("GET", "/api/buckets").status == 200
        wait_for(lambda: c.call("GET", "/api/buckets").status == 401, 10, "the session to expire")
        c2 = ConsoleClient(url)
        assert c2.sign_in().status == 200
        assert c2.call("DELETE", "/api/session").status == 200
        assert c2.call("GET", "/api/buckets").status == 401
    finally:
        srv.stop()


def test_a_user_sees_only_their_buckets_and_no_root_pages(
    root: ConsoleClient, served: tuple[ServerProcess, str]
) -> None:
    root_bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": root_bucket}).status == 201
    user = _user(root, served)
    mine = unique()
    assert user.call("POST", "/api/buckets", {"name": mine}).status == 201
    names = [b["name"] for b in user.call("GET", "/api/buckets").json()["buckets"]]
    assert names == [mine]
    assert root_bucket in [b["name"] for b in root.call("GET", "/api/buckets").json()["buckets"]]
    for path in ("/api/cluster", "/api/users", "/api/metrics", f"/api/inspect?bucket={mine}&key=k"):
        r = user.call("GET", path)
        assert r.status == 403 and r.json()["error"] == "AccessDenied", path
    assert user.call("POST", "/api/cluster/repair").status == 403
    assert user.call("GET", f"/api/buckets/{root_bucket}/objects").status == 403


def test_removing_a_user_ends_their_sessions(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    made = root.call("POST", "/api/users", {"name": unique()}).json()
    user = ConsoleClient(served[1])
    assert user.sign_in(made["access_key"], made["secret_key"]).status == 200
    assert user.call("GET", "/api/buckets").status == 200
    assert root.call("DELETE", f"/api/users/{made['name']}").status == 200
    assert user.call("GET", "/api/buckets").status == 401


def test_upload_in_parts_download_and_share_stream_the_bytes(
    root: ConsoleClient, served: tuple[ServerProcess, str]
) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    data = os.urandom(12 * MiB + 5)
    key = "dir/sub dir/ünïcode+file.bin"
    q = f"key={_q(key)}"
    upload = root.call("POST", f"/api/buckets/{bucket}/uploads?{q}").json()["upload_id"]
    parts = []
    for n, start in enumerate(range(0, len(data), 8 * MiB), 1):
        r = root.call("PUT", f"/api/buckets/{bucket}/uploads/{upload}?{q}&part={n}", data[start : start + 8 * MiB])
        assert r.status == 200, r.body
        parts.append({"part": n, "etag": r.json()["etag"]})
    done = root.call("POST", f"/api/buckets/{bucket}/uploads/{upload}?{q}", {"parts": parts})
    assert done.status == 201 and done.json()["etag"].endswith("-2")
    got = root.call("GET", f"/api/buckets/{bucket}/download?{q}")
    assert got.status == 200 and hashlib.sha256(got.body).digest() == hashlib.sha256(data).digest()
    assert "attachment" in got.headers["Content-Disposition"]
    listing = root.call("GET", f"/api/buckets/{bucket}/objects?prefix=dir/").json()
    assert listing["folders"] == ["dir/sub dir/"] and listing["objects"] == []
    link = root.call("POST", f"/api/buckets/{bucket}/share?{q}&expires=300").json()["url"]
    assert link.startswith(served[0].endpoint + "/")
    with urllib.request.urlopen(link, timeout=30) as resp:
        assert resp.read() == data
    details = root.call("GET", f"/api/buckets/{bucket}/object?{q}").json()
    assert details["size"] == len(data) and details["key"] == key
    fragments = root.call("GET", f"/api/inspect?bucket={bucket}&{q}").json()
    assert fragments["health"] == "healthy" and len(fragments["parts"][0]["fragments"]) == 6


def _q(text: str) -> str:
    return quote(text, safe="")


def test_json_with_lone_surrogates_is_refused(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    hostile = b'{"name": "b-\\ud800"}'
    for path in ("/api/buckets", f"/api/buckets/{bucket}/tags", "/api/session"):
        method = "PUT" if path.endswith("tags") else "POST"
        r = root.call(method, path, hostile, {"Content-Type": "application/json", "Origin": served[1]})
        assert r.status == 400 and r.json()["error"] in ("MalformedJSON", "InvalidArgument"), (path, r.body)


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("PUT", "/api/buckets/{b}/uploads/x?key=k&part=abc", 400),
        ("PUT", "/api/buckets/{b}/uploads/x?key=k&part=10001", 400),
        ("PUT", "/api/buckets/{b}/uploads/x?key=k&part=%EF%BC%91", 400),  # a full-width digit
        ("POST", "/api/buckets/{b}/share?key=k&expires=99999999999", 400),
        ("POST", "/api/buckets/{b}/share?key=k&expires=-1", 400),
        ("GET", "/api/buckets/{b}/download", 400),
        ("GET", "/api/buckets/{b}/download?key=nothing-here", 404),
        ("POST", "/api/buckets/{b}/uploads/x?key=k", 400),
        ("GET", "/static/../sessions.py", 404),
        ("GET", "/static/%2e%2e/app.py", 404),
        ("GET", "/static/js/nothing.js", 404),
    ],
)
def test_hostile_input_gets_a_clear_error(root: ConsoleClient, method: str, path: str, status: int) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    body = b"{}" if method != "GET" else None
    r = root.call(method, path.format(b=bucket), body, {"Content-Type": "application/json"} if body else None)
    assert r.status == status, r.body
    assert r.json().get("error") and b"Traceback" not in r.body


def test_workers_serve_one_console_whose_charts_count_every_worker(tmp_path: Path) -> None:
    srv, url = start_console_server(tmp_path / "srv", ("--workers", "2"))
    try:
        assert srv.banner.count("Console:") == 1
        c = ConsoleClient(url)
        assert c.sign_in().status == 200
        for _ in range(10):  # new connections, spread over both workers by the kernel
            s3 = srv.client()
            for _ in range(4):
                s3.list_buckets()
        by_worker = srv.requests_by_worker("list_buckets", "200")
        assert sum(by_worker.values()) == 40

        def counted() -> float:
            """Requests in the charts: each point is a rate over the ~5 s before it."""
            doc = c.call("GET", "/api/metrics").json()
            return sum(p["rps"] * doc["interval"] for p in doc["points"])

        # Every request of both workers shows in the charts (the console's own too), not only the primary's.
        try:
            wait_for(lambda: counted() >= 39, 30, "the requests in the charts")  # 39: the spans are not exactly 5 s
        except AssertionError:
            raise AssertionError(f"by worker {by_worker}; charts: {c.call('GET', '/api/metrics').body!r}") from None
    finally:
        srv.stop()


def test_an_aborted_upload_leaves_nothing_behind(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    upload = root.call("POST", f"/api/buckets/{bucket}/uploads?key=cancelled").json()["upload_id"]
    assert (
        root.call("PUT", f"/api/buckets/{bucket}/uploads/{upload}?key=cancelled&part=1", os.urandom(MiB)).status == 200
    )
    assert root.call("DELETE", f"/api/buckets/{bucket}/uploads/{upload}?key=cancelled").status == 200
    assert served[0].client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert root.call("GET", f"/api/buckets/{bucket}/objects").json()["objects"] == []


def test_over_https_the_cookie_is_secure_and_the_console_reaches_its_own_https_listener(tmp_path: Path) -> None:
    ca, cert, key = make_local_pki(tmp_path / "tls")
    srv, url = start_console_server(tmp_path / "srv", ("--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        assert url.startswith("https://")
        c = ConsoleClient(url, context=ssl.create_default_context(cafile=str(ca)))
        r = c.sign_in()
        assert r.status == 200 and "Secure" in r.headers["Set-Cookie"]
        assert c.call("POST", "/api/buckets", {"name": "tls-bucket"}).status == 201
        assert c.call("PUT", "/api/buckets/tls-bucket/object?key=k", b"over tls").status == 201
        assert c.call("GET", "/api/buckets/tls-bucket/download?key=k").body == b"over tls"
        link = c.call("POST", "/api/buckets/tls-bucket/share?key=k").json()["url"]
        assert link.startswith(srv.endpoint + "/")
    finally:
        srv.stop()


def test_object_details_show_metadata_and_checksums(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    served[0].client().put_object(
        Bucket=bucket, Key="k", Body=b"checked", Metadata={"owner": "ada"}, ChecksumAlgorithm="SHA256"
    )
    doc = root.call("GET", f"/api/buckets/{bucket}/object?key=k").json()
    assert doc["metadata"] == {"owner": "ada"}
    assert doc["checksums"]["sha256"]  # HEAD with x-amz-checksum-mode, signed like any x-amz-* header


def test_tags_of_a_bucket_and_an_object_are_read_and_replaced(
    root: ConsoleClient, served: tuple[ServerProcess, str]
) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    assert root.call("PUT", f"/api/buckets/{bucket}/object?key=k", b"x").status == 201
    assert root.call("GET", f"/api/buckets/{bucket}/tags").json() == {"tags": {}}
    assert root.call("PUT", f"/api/buckets/{bucket}/tags", {"tags": {"team": "ops"}}).status == 200
    assert root.call("PUT", f"/api/buckets/{bucket}/tags?key=k", {"tags": {"a": "1", "b": ""}}).status == 200
    s3 = served[0].client()
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "ops"}]
    assert root.call("GET", f"/api/buckets/{bucket}/tags?key=k").json() == {"tags": {"a": "1", "b": ""}}
    bad = root.call("PUT", f"/api/buckets/{bucket}/tags?key=k", {"tags": {f"t{i}": "" for i in range(11)}})
    assert bad.status == 400 and bad.json()["error"] == "BadRequest", bad.body  # S3: at most 10 on an object
    assert root.call("PUT", f"/api/buckets/{bucket}/tags", {"tags": {}}).status == 200
    assert root.call("GET", f"/api/buckets/{bucket}/tags").json() == {"tags": {}}


def test_versioning_and_an_objects_versions(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    state = root.call("GET", f"/api/buckets/{bucket}/versioning")
    assert state.json() == {"status": ""}  # never enabled
    assert root.call("PUT", f"/api/buckets/{bucket}/versioning", {"status": "Enabled"}).status == 200
    for body in (b"one", b"two"):
        assert root.call("PUT", f"/api/buckets/{bucket}/object?key=k", body).status == 201
    versions = root.call("GET", f"/api/buckets/{bucket}/versions?key=k").json()["versions"]
    assert [v["latest"] for v in versions] == [True, False]
    old = versions[1]["version_id"]
    assert root.call("GET", f"/api/buckets/{bucket}/download?key=k&version={old}").body == b"one"
    assert root.call("DELETE", f"/api/buckets/{bucket}/object?key=k&version={old}").status == 200
    assert len(root.call("GET", f"/api/buckets/{bucket}/versions?key=k").json()["versions"]) == 1


def test_user_and_bucket_policies(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    srv = served[0]
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    assert root.call("PUT", f"/api/buckets/{bucket}/object?key=public", b"for all").status == 201
    made = root.call("POST", "/api/users", {"name": unique()}).json()
    malformed = root.call("PUT", f"/api/buckets/{bucket}/policy", {"document": "{not json"})
    assert malformed.status == 400 and malformed.json()["error"] == "MalformedPolicy"
    assert root.call("GET", f"/api/users/{made['name']}/policy").json()["policy"] == "readwrite"  # the default
    assert root.call("GET", f"/api/buckets/{bucket}/policy").json() == {"document": ""}
    assert root.call("PUT", f"/api/users/{made['name']}/policy", {"policy": "readonly"}).json()["policy"] == "readonly"
    user = ConsoleClient(served[1])
    assert user.sign_in(made["access_key"], made["secret_key"]).status == 200
    assert user.call("POST", "/api/buckets", {"name": unique()}).status == 403  # read-only now
    public = public_read(bucket)
    assert root.call("PUT", f"/api/buckets/{bucket}/policy", {"document": json.dumps(public)}).status == 200
    assert json.loads(root.call("GET", f"/api/buckets/{bucket}/policy").json()["document"]) == public
    with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/public", timeout=30) as resp:  # anonymous
        assert resp.read() == b"for all"
    assert root.call("PUT", f"/api/buckets/{bucket}/policy", {"document": ""}).status == 200
    assert root.call("GET", f"/api/buckets/{bucket}/policy").json() == {"document": ""}


def test_many_objects_are_deleted_in_one_request(root: ConsoleClient, served: tuple[ServerProcess, str]) -> None:
    bucket = unique()
    assert root.call("POST", "/api/buckets", {"name": bucket}).status == 201
    for key in ("a", "b", "dir/c"):
        assert root.call("PUT", f"/api/buckets/{bucket}/object?key={key}", b"x").status == 201
    r = root.call("POST", f"/api/buckets/{bucket}/delete", {"keys": ["a", "dir/c"]})
    assert r.status == 200 and sorted(r.json()["deleted"]) == ["a", "dir/c"] and r.json()["errors"] == []
    assert [o["Key"] for o in served[0].client().list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]
    assert root.call("POST", f"/api/buckets/{bucket}/delete", {"keys": []}).status == 400
    assert root.call("POST", f"/api/buckets/{bucket}/delete", {"keys": ["k"] * 1001}).status == 400


def test_a_bucket_made_with_object_lock_and_a_version_it_keeps(
    root: ConsoleClient, served: tuple[ServerProcess, str]
) -> None:
    plain, locked = unique(), unique()
    assert root.call("POST", "/api/buckets", {"name": plain}).status == 201
    assert root.call("POST", "/api/buckets", {"name": locked, "object_lock": True}).status == 201
    assert root.call("GET", f"/api/buckets/{plain}/object-lock").json() == {"enabled": False}
    assert root.call("GET", f"/api/buckets/{locked}/object-lock").json() == {
        "enabled": True,
        "mode": "",
        "days": 0,
        "years": 0,
    }
    assert root.call("GET", f"/api/buckets/{locked}/versioning").json() == {"status": "Enabled"}
    until = "2099-01-01T00:00:00Z"
    served[0].client().put_object(
        Bucket=locked,
        Key="kept",
        Body=b"k",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
        ChecksumAlgorithm="SHA256",
    )
    lock = root.call("GET", f"/api/buckets/{locked}/object?key=kept").json()["lock"]
    assert lock["mode"] == "GOVERNANCE" and lock["retain-until-date"].startswith("2099-01-01")
    assert lock["legal-hold"] == "ON"
    version = root.call("GET", f"/api/buckets/{locked}/versions?key=kept").json()["versions"][0]["version_id"]
    refused = root.call("DELETE", f"/api/buckets/{locked}/object?key=kept&version={version}")
    assert refused.status == 403 and refused.json()["error"] == "AccessDenied"  # kept: the lock holds
    assert root.call("PUT", f"/api/buckets/{locked}/legal-hold?key=kept", {"status": "OFF"}).json() == {"status": "OFF"}
    assert root.call("GET", f"/api/buckets/{locked}/object?key=kept").json()["lock"]["legal-hold"] == "OFF"
    assert root.call("PUT", f"/api/buckets/{locked}/legal-hold?key=kept", {"status": "maybe"}).status == 400
