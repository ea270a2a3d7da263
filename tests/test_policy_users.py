"""User policies: the built-in readonly and readwrite, custom documents, through the admin CLI and API; and
one cluster, where a bucket policy set through one gateway applies at once on the other."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from cli.dev import DevCluster
from cli.main import main
from gateway.admin.client import AdminError
from tests.policy_helpers import ARN, admin_call, anonymous, client, make_user, policy, public_read, statement
from tests.s3_helpers import dev_client, expect_error, unique
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server


def cli(server: ServerProcess, *args: str) -> Any:
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_ENDPOINT_URL": server.endpoint}
    return CliRunner().invoke(main, ["admin", *args], env=env)


def _state(s3: Any) -> dict[str, Any]:
    """Everything a write could change, as the root sees it."""
    out: dict[str, Any] = {}
    for b in s3.list_buckets()["Buckets"]:
        name = b["Name"]
        objects = s3.list_objects_v2(Bucket=name).get("Contents", [])
        acl = s3.get_bucket_acl(Bucket=name)["Grants"]
        try:
            pol = s3.get_bucket_policy(Bucket=name)["Policy"]
        except ClientError:
            pol = None
        uploads = s3.list_multipart_uploads(Bucket=name).get("Uploads", [])
        tags = [s3.get_object_tagging(Bucket=name, Key=o["Key"])["TagSet"] for o in objects]
        out[name] = ([(o["Key"], o["ETag"]) for o in objects], acl, pol, len(uploads), tags)
    return out


def test_readonly_user_is_refused_every_write_and_nothing_changes(server: ServerProcess, s3: Any) -> None:
    bucket = unique("ro")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    result = cli(server, "user", "add", "reader-" + bucket[-6:], "--policy", "readonly", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["policy"] == "readonly"
    ro = client(server.endpoint, doc["access_key"], doc["secret_key"])
    before = _state(s3)
    assert ro.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"  # reads every bucket
    assert ro.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    ro.head_bucket(Bucket=bucket)
    src = {"Bucket": bucket, "Key": "k"}
    writes = [
        lambda: ro.put_object(Bucket=bucket, Key="new", Body=b"x"),
        lambda: ro.put_object(Bucket=bucket, Key="k", Body=b"overwrite"),
        lambda: ro.delete_object(Bucket=bucket, Key="k"),
        lambda: ro.copy_object(Bucket=bucket, Key="copy", CopySource=src),
        lambda: ro.create_multipart_upload(Bucket=bucket, Key="m"),
        lambda: ro.create_bucket(Bucket=unique("ro-new")),
        lambda: ro.delete_bucket(Bucket=bucket),
        lambda: ro.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket)),
        lambda: ro.delete_bucket_policy(Bucket=bucket),
        lambda: ro.put_bucket_acl(Bucket=bucket, ACL="private"),
        lambda: ro.put_object_acl(Bucket=bucket, Key="k", ACL="private"),
        lambda: ro.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True}),
        lambda: ro.delete_bucket_ownership_controls(Bucket=bucket),
        lambda: ro.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
        lambda: ro.delete_object_tagging(Bucket=bucket, Key="k"),
        lambda: ro.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
    ]
    for write in writes:
        expect_error(write, "AccessDenied", 403)
    deleted = ro.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert [e["Code"] for e in deleted["Errors"]] == ["AccessDenied"] and not deleted.get("Deleted")
    assert _state(s3) == before


def test_default_user_has_their_own_buckets_only(server: ServerProcess, s3: Any, bucket: str) -> None:
    user = make_user(server.endpoint, "plain-" + unique("u")[-6:])
    assert admin_call(server.endpoint, lambda c: c.show_policy(user.name))["policy"] == "readwrite"
    mine = unique("mine")
    user.s3.create_bucket(Bucket=mine)
    user.s3.put_object(Bucket=mine, Key="k", Body=b"v")
    user.s3.put_bucket_policy(Bucket=mine, Policy=public_read(mine))  # the owner configures their bucket
    expect_error(lambda: user.s3.list_objects_v2(Bucket=bucket), "AccessDenied", 403)
    expect_error(lambda: user.s3.put_object(Bucket=bucket, Key="k", Body=b"x"), "AccessDenied", 403)
    assert [b["Name"] for b in user.s3.list_buckets()["Buckets"]] == [mine]


def test_policy_set_and_show_through_the_cli(server: ServerProcess, s3: Any, bucket: str, tmp_path: Path) -> None:
    name = "custom-" + unique("u")[-6:]
    result = cli(server, "user", "add", name, "--json")
    user = json.loads(result.output)
    u3 = client(server.endpoint, user["access_key"], user["secret_key"])
    s3.put_object(Bucket=bucket, Key="in/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="out/b", Body=b"b")
    expect_error(lambda: u3.get_object(Bucket=bucket, Key="in/a"), "AccessDenied", 403)
    doc = tmp_path / "policy.json"
    doc.write_text(
        policy(
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{ARN}{bucket}/in/*"},
            {"Effect": "Deny", "Action": "s3:CreateBucket", "Resource": "*"},
        )
    )
    result = cli(server, "policy", "set", name, str(doc))
    assert result.exit_code == 0, result.output
    assert "custom" in result.output
    assert u3.get_object(Bucket=bucket, Key="in/a")["Body"].read() == b"a"  # at once
    u3.put_object(Bucket=bucket, Key="in/c", Body=b"c")
    expect_error(lambda: u3.get_object(Bucket=bucket, Key="out/b"), "AccessDenied", 403)
    expect_error(lambda: u3.create_bucket(Bucket=unique("denied")), "AccessDenied", 403)
    shown = cli(server, "policy", "show", name, "--json")
    assert json.loads(json.loads(shown.output)["document"]) == json.loads(doc.read_text())
    assert cli(server, "policy", "set", name, "readwrite").exit_code == 0
    expect_error(lambda: u3.get_object(Bucket=bucket, Key="in/a"), "AccessDenied", 403)  # removed at once
    listing = cli(server, "user", "list", "--json")
    assert {u["name"]: u["policy"] for u in json.loads(listing.output)["users"]}[name] == "readwrite"


def test_bad_user_policies_are_refused(server: ServerProcess, tmp_path: Path) -> None:
    name = "bad-" + unique("u")[-6:]
    bad = tmp_path / "bad.json"
    bad.write_text(policy(statement("Allow", "*", "s3:GetObject", "*")))  # a user policy names no Principal
    result = cli(server, "user", "add", name, "--policy", str(bad))
    assert result.exit_code == 1 and "MalformedPolicy" in result.stderr and "Principal" in result.stderr
    assert cli(server, "user", "add", name, "--policy", str(tmp_path / "missing.json")).exit_code == 1
    with pytest.raises(AdminError) as exc:
        admin_call(server.endpoint, lambda c: c.add_user(name, "superuser"))
    assert exc.value.code == "InvalidArgument"
    with pytest.raises(AdminError) as exc:
        admin_call(server.endpoint, lambda c: c.set_policy("nobody-" + name, "readonly"))
    assert exc.value.code == "NoSuchUser"
    assert name not in cli(server, "user", "list", "--json").output  # nothing created


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(Path(tmp_path_factory.mktemp("policy-cluster")), nodes=3, metas=1, gateways=2, ec="2+1")
    c.start()
    yield c
    c.stop()


def test_a_policy_set_through_one_gateway_applies_at_once_on_the_other(cluster: DevCluster) -> None:
    first, second = dev_client(cluster, 1), dev_client(cluster, 2)
    bucket = unique("shared")
    first.create_bucket(Bucket=bucket)
    first.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert anonymous(cluster.endpoint(2), "GET", f"/{bucket}/k")[0] == 403
    first.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert anonymous(cluster.endpoint(2), "GET", f"/{bucket}/k") == (200, b"v")
    second.delete_bucket_policy(Bucket=bucket)
    assert anonymous(cluster.endpoint(1), "GET", f"/{bucket}/k")[0] == 403


def test_a_policy_change_reaches_every_worker_at_once(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "workers", extra=("--workers", "2"))
    try:
        user = make_user(srv.endpoint, "w-" + unique("u")[-6:])
        bucket = unique("w")
        user.s3.create_bucket(Bucket=bucket)
        user.s3.put_object(Bucket=bucket, Key="k", Body=b"v")
        admin_call(srv.endpoint, lambda c: c.set_policy(user.name, "readonly"))
        for i in range(8):  # a new client each time: new connections, which either worker may take
            fresh = client(srv.endpoint, user.access_key, user.secret_key)
            expect_error(fresh.put_object, "AccessDenied", 403, Bucket=bucket, Key=f"n{i}", Body=b"x")
            assert fresh.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    finally:
        srv.stop()


def test_anonymous_put_with_expect_continue(server: ServerProcess, s3: Any) -> None:
    """The body of an anonymous request is asked for (100 Continue) only once the request is allowed."""
    bucket = unique("drop")
    s3.create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter", ACL="public-read-write")
    host, port = server.endpoint.removeprefix("http://").rsplit(":", 1)

    def put(path: str) -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            sock.sendall(head.encode())
            first = sock.recv(4096)
            if first.startswith(b"HTTP/1.1 100"):
                sock.sendall(b"body")
                first += sock.recv(4096)
            return first

    allowed = put(f"/{bucket}/k")
    assert allowed.startswith(b"HTTP/1.1 100 Continue") and b"HTTP/1.1 200" in allowed
    refused = put(f"/{unique('none')}-x/k")
    assert refused.startswith(b"HTTP/1.1 404")  # no such bucket: no 100 Continue, no body read
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert put(f"/{bucket}/k").startswith(b"HTTP/1.1 403")


def test_home_directories_by_policy_variable(server: ServerProcess, s3: Any) -> None:
    homes = unique("homes")
    s3.create_bucket(Bucket=homes)
    doc = policy(
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{ARN}{homes}/${{aws:username}}/*"}
    )
    users = [make_user(server.endpoint, f"{n}-{homes[-6:]}", document=doc.encode()) for n in ("ann", "ben")]
    ann, ben = users
    ann.s3.put_object(Bucket=homes, Key=f"{ann.name}/notes", Body=b"ann's")
    expect_error(ann.s3.put_object, "AccessDenied", 403, Bucket=homes, Key=f"{ben.name}/notes", Body=b"x")
    expect_error(ben.s3.get_object, "AccessDenied", 403, Bucket=homes, Key=f"{ann.name}/notes")
    assert admin_call(server.endpoint, lambda c: c.show_policy(ann.name))["policy"] == "custom"
