"""Bucket CORS against a real `tessera server` (and a cluster): Put/Get/DeleteBucketCors through boto3, preflight
OPTIONS answered as a browser expects, and the CORS headers of actual requests, errors included."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cli.dev import DevCluster
from tests.policy_helpers import ARN, policy, statement, user_arn
from tests.s3_helpers import dev_client, expect_error, signed_request, unique
from tests.server_process import ServerProcess
from tests.test_users import add_user

APP = "https://app.example.com"
RULES = [
    {
        "ID": "app",
        "AllowedOrigins": [APP, "https://*.example.org"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["content-type", "x-amz-*"],
        "ExposeHeaders": ["ETag", "x-amz-request-id"],
        "MaxAgeSeconds": 600,
    },
    {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD", "GET"]},
]


def preflight(url: str, origin: str | None, method: str | None, headers: str | None = None) -> requests.Response:
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(url, headers=h, timeout=30)


def code_of(resp: requests.Response) -> tuple[int, str]:
    return resp.status_code, ET.fromstring(resp.content).findtext("Code") or ""


@pytest.fixture
def cors_bucket(s3: Any, bucket: str) -> str:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    return bucket


def test_put_get_delete_bucket_cors(s3: Any, bucket: str) -> None:
    expect_error(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES
    replaced = [{"AllowedOrigins": ["http://localhost:3000"], "AllowedMethods": ["POST"]}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": replaced})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == replaced
    s3.delete_bucket_cors(Bucket=bucket)
    expect_error(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)
    expect_error(s3.get_bucket_cors, "NoSuchBucket", 404, Bucket=unique())


@pytest.mark.parametrize(
    ("rule", "code", "message"),
    [
        ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}, "InvalidRequest", "Unsupported method is PATCH"),
        (
            {"AllowedOrigins": ["https://*.*.com"], "AllowedMethods": ["GET"]},
            "InvalidRequest",
            "more than one wildcard",
        ),
        (
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-*"]},
            "InvalidRequest",
            "more than one wildcard",
        ),
    ],
    ids=["method", "origin-wildcards", "header-wildcards"],
)
def test_invalid_rules_are_refused(s3: Any, cors_bucket: str, rule: dict[str, Any], code: str, message: str) -> None:
    err = expect_error(s3.put_bucket_cors, code, 400, Bucket=cors_bucket, CORSConfiguration={"CORSRules": [rule]})
    assert message in err["Error"]["Message"]
    assert s3.get_bucket_cors(Bucket=cors_bucket)["CORSRules"] == RULES  # unchanged


@pytest.mark.parametrize(
    "body",
    [
        b"<CORSConfiguration/>",
        b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
        b"<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration>"
        + b"<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>" * 101
        + b"</CORSConfiguration>",
        b"<CORSConfiguration><CORSRule>",
    ],
    ids=["no-rules", "no-origin", "max-age", "101-rules", "not-xml"],
)
def test_malformed_configurations(server: ServerProcess, s3: Any, cors_bucket: str, body: bytes) -> None:
    resp = signed_request(server, "PUT", f"/{cors_bucket}?cors", body)
    assert (resp.status, resp.error()["Code"]) == (400, "MalformedXML")
    assert s3.get_bucket_cors(Bucket=cors_bucket)["CORSRules"] == RULES


def test_only_the_owner_configures_cors(server: ServerProcess, cors_bucket: str) -> None:
    user = add_user(server.endpoint, unique("corsuser"))
    other = server.client(user["access_key"], user["secret_key"])
    expect_error(other.get_bucket_cors, "AccessDenied", 403, Bucket=cors_bucket)
    expect_error(other.delete_bucket_cors, "AccessDenied", 403, Bucket=cors_bucket)
    expect_error(other.put_bucket_cors, "AccessDenied", 403, Bucket=cors_bucket, CORSConfiguration={"CORSRules": RULES})


def test_a_bucket_policy_grants_reading_cors(server: ServerProcess, s3: Any, cors_bucket: str) -> None:
    name = unique("corsreader")
    user = add_user(server.endpoint, name)
    reader = server.client(user["access_key"], user["secret_key"])
    grant = statement("Allow", {"AWS": user_arn(name)}, "s3:GetBucketCORS", f"{ARN}{cors_bucket}")
    s3.put_bucket_policy(Bucket=cors_bucket, Policy=policy(grant))
    assert reader.get_bucket_cors(Bucket=cors_bucket)["CORSRules"] == RULES
    expect_error(reader.delete_bucket_cors, "AccessDenied", 403, Bucket=cors_bucket)  # s3:PutBucketCORS
    expect_error(reader.put_bucket_cors, "AccessDenied", 403, Bucket=cors_bucket, CORSConfiguration={"CORSRules": []})
    assert s3.get_bucket_cors(Bucket=cors_bucket)["CORSRules"] == RULES


def test_preflight_answered_as_a_browser_expects(server: ServerProcess, cors_bucket: str) -> None:
    url = f"{server.endpoint}/{cors_bucket}/photos/cat.png"
    resp = preflight(url, APP, "PUT", "Content-Type, X-Amz-Meta-Album")
    assert resp.status_code == 200, resp.text
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == APP
    assert h["Access-Control-Allow-Methods"] == "GET, PUT"
    assert h["Access-Control-Allow-Headers"] == "content-type, x-amz-meta-album"
    assert h["Access-Control-Max-Age"] == "600"
    assert h["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in h["Vary"]
    sub = preflight(f"{server.endpoint}/{cors_bucket}", "https://cdn.example.org", "GET")
    assert (sub.status_code, sub.headers["Access-Control-Allow-Origin"]) == (200, "https://cdn.example.org")
    anyone = preflight(url, "http://elsewhere.test", "HEAD")
    assert anyone.status_code == 200
    assert anyone.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in anyone.headers


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("http://elsewhere.test", "PUT", None),  # origin allowed only to GET and HEAD
        (APP, "DELETE", None),
        (APP, "PUT", "Authorization, X-Custom"),
        ("https://example.org", "GET", "content-type"),  # "*.example.org" wants a subdomain; "*" allows no header
    ],
    ids=["origin", "method", "header", "wildcard-origin"],
)
def test_preflight_refused(server: ServerProcess, cors_bucket: str, origin: str, method: str, headers: str) -> None:
    resp = preflight(f"{server.endpoint}/{cors_bucket}/k", origin, method, headers)
    assert code_of(resp) == (403, "AccessForbidden")
    assert "CORSResponse: This CORS request is not allowed" in resp.text
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_preflight_without_rules_or_origin(server: ServerProcess, s3: Any, cors_bucket: str) -> None:
    plain = unique()
    s3.create_bucket(Bucket=plain)
    resp = preflight(f"{server.endpoint}/{plain}/k", APP, "GET")
    assert code_of(resp) == (403, "AccessForbidden")
    assert "CORS is not enabled for this bucket" in resp.text
    assert code_of(preflight(f"{server.endpoint}/{cors_bucket}/k", None, "GET")) == (400, "BadRequest")
    assert code_of(preflight(f"{server.endpoint}/{cors_bucket}/k", APP, None)) == (400, "BadRequest")
    assert code_of(preflight(f"{server.endpoint}/{cors_bucket}/k", APP, "PATCH")) == (400, "BadRequest")
    assert code_of(preflight(f"{server.endpoint}/{unique()}/k", APP, "GET")) == (404, "NoSuchBucket")


def test_actual_requests_carry_cors_headers_errors_included(server: ServerProcess, s3: Any, cors_bucket: str) -> None:
    s3.put_object(Bucket=cors_bucket, Key="k", Body=b"hello")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "k"})
    got = requests.get(url, headers={"Origin": APP}, timeout=30)
    assert (got.status_code, got.content) == (200, b"hello")
    assert got.headers["Access-Control-Allow-Origin"] == APP
    assert got.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert "Origin" in got.headers["Vary"]
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "nope"})
    err = requests.get(missing, headers={"Origin": APP}, timeout=30)
    assert code_of(err) == (404, "NoSuchKey")
    assert err.headers["Access-Control-Allow-Origin"] == APP
    anonymous = requests.get(
        f"{server.endpoint}/{cors_bucket}/k", headers={"Origin": "http://elsewhere.test"}, timeout=30
    )
    assert code_of(anonymous) == (403, "AccessDenied")
    assert anonymous.headers["Access-Control-Allow-Origin"] == "*"
    # A method no rule allows gets the answer without any CORS header.
    delete = s3.generate_presigned_url("delete_object", Params={"Bucket": cors_bucket, "Key": "k"})
    refused_method = requests.delete(delete, headers={"Origin": APP}, timeout=30)
    assert refused_method.status_code == 204 and "Access-Control-Allow-Origin" not in refused_method.headers
    plain = requests.get(url, timeout=30)
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_form_upload_from_an_allowed_origin(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_bucket_cors(
        Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedOrigins": [APP], "AllowedMethods": ["POST"]}]}
    )
    assert preflight(f"{server.endpoint}/{bucket}", APP, "POST").status_code == 200
    form = s3.generate_presigned_post(bucket, "from-browser")
    resp = requests.post(
        form["url"], data=form["fields"], files={"file": ("f", b"x")}, headers={"Origin": APP}, timeout=30
    )
    assert resp.status_code == 204, resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    # An origin no rule allows gets the answer without any CORS header.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "from-browser"})
    stranger = requests.get(url, headers={"Origin": "https://evil.example.net"}, timeout=30)
    assert (stranger.status_code, stranger.content) == (200, b"x")
    assert "Access-Control-Allow-Origin" not in stranger.headers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """Two gateways on three metadata replicas: the rules travel through RemoteIndex and ReplicatedIndex."""
    c = DevCluster(Path(tmp_path_factory.mktemp("cors-cluster")), nodes=3, metas=3, gateways=2, ec="2+1")
    try:
        c.start()  # stopped even when it fails half way
        yield c
    finally:
        c.stop()


def test_cluster_honours_cors_set_through_another_gateway(cluster: DevCluster) -> None:
    one, two = dev_client(cluster, 1), dev_client(cluster, 2)
    name = unique("cors")
    one.create_bucket(Bucket=name)
    one.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": RULES[:1]})
    resp = preflight(f"{cluster.endpoint(2)}/{name}/k", APP, "PUT", "content-type")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert two.get_bucket_cors(Bucket=name)["CORSRules"] == RULES[:1]
    two.delete_bucket_cors(Bucket=name)
    assert code_of(preflight(f"{cluster.endpoint(1)}/{name}/k", APP, "PUT")) == (403, "AccessForbidden")
