"""S3 users and the admin API's user endpoints, against a real `tessera server` (and a two-gateway cluster)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from cli.dev import DevCluster
from tests.s3_helpers import expect_error, unique
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess

ADMIN = "/_tessera/admin/v1/"


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    def s3_error(self) -> str:
        root = ET.fromstring(self.body)
        assert root.tag == "Error", self.body
        return root.findtext("Code") or ""


def admin(
    endpoint: str,
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    creds: tuple[str, str] | None = (ACCESS_KEY, SECRET_KEY),
) -> Answer:
    """One admin API request, SigV4-signed with creds (unsigned when creds is None).

    S3SigV4Auth, not plain SigV4Auth: S3 signs the path as sent, where the generic signer encodes it twice
    (a user name with "@" or "+" would then fail SignatureDoesNotMatch)."""
    url = endpoint + ADMIN + path + ("?" + urlencode(params, quote_via=quote) if params else "")
    headers = {"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()}
    if creds is not None:
        req = AWSRequest(method=method, url=url, data=b"", headers=headers)
        S3SigV4Auth(Credentials(*creds), "s3", "us-east-1").add_auth(req)
        headers = dict(req.prepare().headers)
    http = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(http, timeout=30) as resp:
            return Answer(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), dict(exc.headers))


def add_user(endpoint: str, name: str) -> dict[str, Any]:
    answer = admin(endpoint, "POST", "users", {"name": name})
    assert answer.status == 200, answer.body
    return answer.json()


def user_client(endpoint: str, user: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=user["access_key"],
        aws_secret_access_key=user["secret_key"],
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def key_rejected(s3: Any) -> bool:
    try:
        s3.list_buckets()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "InvalidAccessKeyId"
    return False


def test_user_gets_own_buckets_root_sees_all(server: ServerProcess, s3: Any) -> None:
    root_bucket = unique("root")
    s3.create_bucket(Bucket=root_bucket)
    s3.put_object(Bucket=root_bucket, Key="secret.txt", Body=b"root only")

    user = add_user(server.endpoint, "alice-" + uuid.uuid4().hex[:8])
    assert set(user) == {"name", "access_key", "secret_key", "created", "policy"}
    assert user["access_key"] != ACCESS_KEY and len(user["secret_key"]) >= 20
    assert abs(user["created"] - time.time()) < 60
    alice = user_client(server.endpoint, user)

    mine = unique("alice")
    alice.create_bucket(Bucket=mine)  # works at once: no wait for any refresh
    alice.put_object(Bucket=mine, Key="hello.txt", Body=b"hello from alice")
    assert alice.get_object(Bucket=mine, Key="hello.txt")["Body"].read() == b"hello from alice"
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == [mine]
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=mine)["Contents"]] == ["hello.txt"]

    expect_error(alice.get_object, "AccessDenied", 403, Bucket=root_bucket, Key="secret.txt")
    expect_error(alice.put_object, "AccessDenied", 403, Bucket=root_bucket, Key="x", Body=b"x")
    expect_error(alice.list_objects_v2, "AccessDenied", 403, Bucket=root_bucket)
    expect_error(alice.delete_bucket, "AccessDenied", 403, Bucket=root_bucket)
    expect_error(alice.create_bucket, "BucketAlreadyExists", 409, Bucket=root_bucket)

    # The root sees and may use every bucket, as MinIO's root does.
    listed = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert mine in listed and root_bucket in listed
    assert s3.get_object(Bucket=mine, Key="hello.txt")["Body"].read() == b"hello from alice"
    s3.head_bucket(Bucket=mine)


def test_users_listed_without_secrets(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    made = [add_user(server.endpoint, f"{name}-{tag}") for name in ("zed", "bob", "Mia.x@example.com+1=2_")]
    answer = admin(server.endpoint, "GET", "users")
    assert answer.status == 200
    users = answer.json()["users"]
    assert [u["name"] for u in users] == sorted(u["name"] for u in users)
    ours = {u["name"]: u for u in users if tag in u["name"]}
    assert set(ours) == {u["name"] for u in made}
    for u in made:
        expected = {"name": u["name"], "access_key": u["access_key"], "created": u["created"], "policy": "readwrite"}
        assert ours[u["name"]] == expected
        assert u["secret_key"].encode() not in answer.body
    assert b"secret" not in answer.body


def test_duplicate_and_bad_names(server: ServerProcess) -> None:
    name = "dup-" + uuid.uuid4().hex[:8]
    add_user(server.endpoint, name)
    dup = admin(server.endpoint, "POST", "users", {"name": name})
    assert dup.status == 409 and dup.json()["code"] == "UserExists"
    for bad in ("", "x" * 65, "has space", "slash/name", "semi;colon", "ünï", "root"):
        answer = admin(server.endpoint, "POST", "users", {"name": bad})
        assert answer.status == 400, (bad, answer.body)
        assert answer.json()["code"] == "InvalidArgument" and answer.json()["message"]
    missing = admin(server.endpoint, "POST", "users")
    assert missing.status == 400 and missing.json()["code"] == "InvalidArgument"
    assert admin(server.endpoint, "POST", "users", {"name": "x" * 64}).status == 200


def test_only_root_may_call_the_admin_api(server: ServerProcess) -> None:
    user = add_user(server.endpoint, "mallory-" + uuid.uuid4().hex[:8])
    as_user = admin(server.endpoint, "GET", "users", creds=(user["access_key"], user["secret_key"]))
    assert (as_user.status, as_user.s3_error()) == (403, "AccessDenied")
    as_user = admin(server.endpoint, "POST", "users", {"name": "evil"}, creds=(user["access_key"], user["secret_key"]))
    assert (as_user.status, as_user.s3_error()) == (403, "AccessDenied")
    unsigned = admin(server.endpoint, "GET", "users", creds=None)
    assert (unsigned.status, unsigned.s3_error()) == (403, "AccessDenied")
    forged = admin(server.endpoint, "GET", "users", creds=(ACCESS_KEY, "not-the-secret-key-at-all"))
    assert (forged.status, forged.s3_error()) == (403, "SignatureDoesNotMatch")
    stranger = admin(server.endpoint, "GET", "users", creds=("TSNOSUCHKEY000000000", "whatever-secret-key"))
    assert (stranger.status, stranger.s3_error()) == (403, "InvalidAccessKeyId")
    assert "evil" not in [u["name"] for u in admin(server.endpoint, "GET", "users").json()["users"]]


def test_unknown_endpoint_and_method(server: ServerProcess) -> None:
    answer = admin(server.endpoint, "GET", "no/such/thing")
    assert answer.status == 404 and answer.json()["code"] == "NotFound"
    answer = admin(server.endpoint, "PUT", "users")
    assert answer.status == 405 and answer.json()["code"] == "MethodNotAllowed"
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "POST"}
    answer = admin(server.endpoint, "POST", "users/someone")  # GET is user info (docs/quotas.md), DELETE removes
    assert answer.status == 405 and answer.json()["code"] == "MethodNotAllowed"
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "DELETE"}


def test_removed_user_stops_working(server: ServerProcess, s3: Any) -> None:
    user = add_user(server.endpoint, "gone-" + uuid.uuid4().hex[:8])
    client = user_client(server.endpoint, user)
    bucket = unique("gone")
    client.create_bucket(Bucket=bucket)
    answer = admin(server.endpoint, "DELETE", "users/" + quote(user["name"]))
    assert answer.status == 204 and answer.body == b""
    wait_for(lambda: key_rejected(client), 15, "the removed user's key to be refused")
    assert user["name"] not in [u["name"] for u in admin(server.endpoint, "GET", "users").json()["users"]]
    again = admin(server.endpoint, "DELETE", "users/" + quote(user["name"]))
    assert again.status == 404 and again.json()["code"] == "NoSuchUser"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # their buckets stay, the root's now


def test_user_name_with_special_characters_round_trips(server: ServerProcess) -> None:
    name = "a.b@c+d=e_" + uuid.uuid4().hex[:6]
    user = add_user(server.endpoint, name)
    assert user["name"] == name
    assert admin(server.endpoint, "DELETE", "users/" + quote(name, safe="")).status == 204


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(Path(tmp_path_factory.mktemp("users-cluster")), nodes=3, metas=1, gateways=2, ec="2+1")
    c.start()
    yield c
    c.stop()


def test_user_added_on_one_gateway_works_on_another(two_gateways: DevCluster) -> None:
    c = two_gateways
    root = (c.env["TESSERA_ACCESS_KEY"], c.env["TESSERA_SECRET_KEY"])
    first, second = c.endpoint(1), c.endpoint(2)
    answer = admin(first, "POST", "users", {"name": "carol"}, creds=root)
    assert answer.status == 200, answer.body
    user = answer.json()
    other = user_client(second, user)
    bucket = unique("carol")
    other.create_bucket(Bucket=bucket)  # at once, on a gateway that never saw the user
    other.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert user_client(first, user).get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert admin(first, "DELETE", "users/carol", creds=root).status == 204
    wait_for(lambda: key_rejected(other), 20, "the other gateway to drop the removed user")


@pytest.mark.parametrize("signature", ["s3", "s3v4"])  # presigned SigV2 (boto3's default) and SigV4
def test_presigned_url_of_new_user_works_on_another_gateway(two_gateways: DevCluster, signature: str) -> None:
    c = two_gateways
    root = (c.env["TESSERA_ACCESS_KEY"], c.env["TESSERA_SECRET_KEY"])
    answer = admin(c.endpoint(1), "POST", "users", {"name": "dave-" + signature}, creds=root)
    assert answer.status == 200, answer.body
    user = answer.json()
    bucket = unique("dave")
    on_first = user_client(c.endpoint(1), user)
    on_first.create_bucket(Bucket=bucket)
    on_first.put_object(Bucket=bucket, Key="k", Body=b"presigned")
    # The URL's first use on gateway 2 is the first time gateway 2 hears of this user.
    signer = boto3.client(
        "s3",
        endpoint_url=c.endpoint(2),
        aws_access_key_id=user["access_key"],
        aws_secret_access_key=user["secret_key"],
        region_name="us-east-1",
        config=Config(signature_version=signature),
    )
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert ("AWSAccessKeyId=" in url) == (signature == "s3")
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"presigned"


def index_user_reads(c: DevCluster) -> float:
    """How many times the metadata service has listed the users (what a gateway's user reload costs)."""
    with urllib.request.urlopen(c.services["meta1"].endpoint + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tessera_meta_requests_total" and sample.labels == {
                "operation": "list_users",
                "outcome": "ok",
            }:
                return sample.value
    return 0.0


def test_junk_access_keys_do_not_flood_the_index(two_gateways: DevCluster) -> None:
    """Last in this module: it spends gateway 2's budget of reloads for unknown keys."""
    c = two_gateways
    before, started = index_user_reads(c), time.monotonic()

    def junk(_: int) -> tuple[int, str]:
        answer = admin(c.endpoint(2), "GET", "users", creds=("TSJUNK" + uuid.uuid4().hex[:14].upper(), "x" * 40))
        return answer.status, answer.s3_error()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(junk, range(200)))
    elapsed = time.monotonic() - started
    reads = index_user_reads(c) - before
    assert answers == [(403, "InvalidAccessKeyId")] * 200
    # A burst of 3 and then one a second, plus each gateway's periodic refresh (every 5 s).
    assert reads <= 3 + elapsed + 2 * (elapsed / 5 + 1), (reads, elapsed)

    root = (c.env["TESSERA_ACCESS_KEY"], c.env["TESSERA_SECRET_KEY"])
    answer = admin(c.endpoint(2), "POST", "users", {"name": "erin"}, creds=root)
    assert answer.status == 200, answer.body
    user_client(c.endpoint(2), answer.json()).list_buckets()  # the gateway that added it knows it at once
