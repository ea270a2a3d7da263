"""POST object: browser-form uploads made with boto3's generate_presigned_post and sent with requests, against a
real `tessera server`: the signed policy's conditions, ${filename}, success actions, errors, large files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.policy_helpers import ARN, policy, statement
from tests.s3_helpers import MiB, data, expect_error, get_body, unique
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess
from tests.test_users import add_user


@pytest.fixture(scope="module", params=["default", "s3v4"])
def signer(request: pytest.FixtureRequest, server: ServerProcess) -> Any:
    """boto3 with default settings (which signs POST policies with V2 against a custom endpoint), and SigV4."""
    client = server.client() if request.param == "default" else server.client(signature_version="s3v4")
    client.form_signature = "x-amz-signature" if request.param == "s3v4" else "signature"
    return client


def post(form: dict[str, Any], body: bytes, filename: str = "upload.bin", **extra: str) -> requests.Response:
    """Send a form as a browser does: the policy's fields (plus `extra`), then the file."""
    fields = {**form["fields"], **extra}
    return requests.post(form["url"], data=fields, files={"file": (filename, body)}, allow_redirects=False, timeout=60)


def error_of(resp: requests.Response) -> tuple[int, str, str]:
    root = ET.fromstring(resp.content)
    return resp.status_code, root.findtext("Code") or "", root.findtext("Message") or ""


def absent(s3: Any, bucket: str, key: str) -> None:
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key=key)


def test_boto3_form_upload_with_filename_and_metadata(s3: Any, signer: Any, bucket: str) -> None:
    form = signer.generate_presigned_post(
        bucket,
        "photos/${filename}",
        Fields={"Content-Type": "image/png", "x-amz-meta-album": "summer"},
        Conditions=[{"Content-Type": "image/png"}, {"x-amz-meta-album": "summer"}],
    )
    assert signer.form_signature in form["fields"]
    body = data(3000, seed=1)
    resp = post(form, body, filename="beach.png")
    assert resp.status_code == 204, resp.text
    assert resp.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert resp.headers["Location"].endswith(f"/{bucket}/photos/beach.png")
    head = s3.head_object(Bucket=bucket, Key="photos/beach.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"album": "summer"}
    assert get_body(s3, bucket, "photos/beach.png") == body


def test_success_action_status_and_redirect(s3: Any, bucket: str) -> None:
    created = s3.generate_presigned_post(
        bucket, "a.txt", Fields={"success_action_status": "201"}, Conditions=[{"success_action_status": "201"}]
    )
    resp = post(created, b"hello")
    assert resp.status_code == 201, resp.text
    root = ET.fromstring(resp.content)
    assert (root.tag, root.findtext("Bucket"), root.findtext("Key")) == ("PostResponse", bucket, "a.txt")
    assert root.findtext("ETag") == f'"{hashlib.md5(b"hello").hexdigest()}"'
    assert root.findtext("Location", "").endswith(f"/{bucket}/a.txt")

    ok = s3.generate_presigned_post(
        bucket, "b.txt", Fields={"success_action_status": "200"}, Conditions=[{"success_action_status": "200"}]
    )
    resp = post(ok, b"b")
    assert (resp.status_code, resp.content) == (200, b"")

    target = "https://app.example.com/done?from=form"
    redirect = s3.generate_presigned_post(
        bucket,
        "c.txt",
        Fields={"success_action_redirect": target},
        Conditions=[["starts-with", "$success_action_redirect", "https://app.example.com/"]],
    )
    resp = post(redirect, b"c")
    assert resp.status_code == 303, resp.text
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://app.example.com/done"
    assert parse_qs(location.query) == {
        "from": ["form"],
        "bucket": [bucket],
        "key": ["c.txt"],
        "etag": [f'"{hashlib.md5(b"c").hexdigest()}"'],
    }
    assert get_body(s3, bucket, "c.txt") == b"c"


@pytest.mark.parametrize(
    ("conditions", "extra", "body", "expected"),
    [
        ([["starts-with", "$key", "user/alice/"]], {}, b"x", (403, "AccessDenied", "Policy Condition failed")),
        (
            [["eq", "$Content-Type", "image/png"]],
            {"Content-Type": "text/html"},
            b"x",
            (403, "AccessDenied", "Policy Condition failed"),
        ),
        ([], {"x-amz-meta-sneaky": "1"}, b"x", (403, "AccessDenied", "Extra input fields: x-amz-meta-sneaky")),
        (
            [["content-length-range", 10, 100]],
            {},
            b"x" * 101,
            (400, "EntityTooLarge", "exceeds the maximum allowed size"),
        ),
        ([["content-length-range", 10, 100]], {}, b"x" * 9, (400, "EntityTooSmall", "smaller than the minimum")),
    ],
    ids=["starts-with", "eq", "extra-field", "too-large", "too-small"],
)
def test_failed_conditions_store_nothing(
    s3: Any, bucket: str, conditions: list[Any], extra: dict[str, str], body: bytes, expected: tuple[int, str, str]
) -> None:
    form = s3.generate_presigned_post(bucket, "k", Conditions=conditions)
    status, code, message = error_of(post(form, body, **extra))
    assert (status, code) == expected[:2], message
    assert expected[2] in message
    absent(s3, bucket, "k")


def test_conditions_met_are_accepted(s3: Any, signer: Any, bucket: str) -> None:
    form = signer.generate_presigned_post(
        bucket,
        "user/alice/${filename}",
        Fields={"Content-Type": "text/plain"},
        Conditions=[["content-length-range", 1, 10], ["starts-with", "$Content-Type", "text/"], {"bucket": bucket}],
    )
    resp = post(form, b"0123456789", filename="notes.txt")
    assert resp.status_code == 204, resp.text
    assert get_body(s3, bucket, "user/alice/notes.txt") == b"0123456789"


def test_expired_policy_and_forged_signature(s3: Any, signer: Any, bucket: str) -> None:
    expired = signer.generate_presigned_post(bucket, "k", ExpiresIn=-60)
    status, code, message = error_of(post(expired, b"x"))
    assert (status, code, message) == (403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    form = signer.generate_presigned_post(bucket, "k")
    name = signer.form_signature
    sig = form["fields"][name]
    forged = {**form, "fields": {**form["fields"], name: ("0" if sig[0] != "0" else "1") + sig[1:]}}
    assert error_of(post(forged, b"x"))[:2] == (403, "SignatureDoesNotMatch")
    # A policy changed after signing: the signature no longer covers it.
    policy = base64.b64decode(form["fields"]["policy"]).replace(b'"k"', b'"other"')
    changed = {**form, "fields": {**form["fields"], "policy": base64.b64encode(policy).decode(), "key": "other"}}
    assert error_of(post(changed, b"x"))[:2] == (403, "SignatureDoesNotMatch")
    absent(s3, bucket, "k")
    absent(s3, bucket, "other")


def test_broken_forms(server: ServerProcess, s3: Any, bucket: str) -> None:
    form = s3.generate_presigned_post(bucket, "k")
    url = form["url"]
    no_key = {k: v for k, v in form["fields"].items() if k != "key"}
    resp = requests.post(url, data=no_key, files={"file": ("f", b"x")}, timeout=30)
    assert error_of(resp)[:2] == (400, "InvalidArgument")
    resp = requests.post(url, files={name: (None, value) for name, value in form["fields"].items()}, timeout=30)
    assert error_of(resp)[:3] == (400, "InvalidArgument", "POST requires exactly one file upload per request.")
    garbage = b"--XYZ\r\nContent-Disposition: form-data; name=key\r\n\r\nk\r\n--XY"
    resp = requests.post(url, data=garbage, headers={"Content-Type": "multipart/form-data; boundary=XYZ"}, timeout=30)
    assert error_of(resp)[:2] == (400, "MalformedPOSTRequest")
    resp = requests.post(url, data=b"x", headers={"Content-Type": "multipart/form-data"}, timeout=30)
    assert error_of(resp)[:2] == (400, "MalformedPOSTRequest")
    bad_policy = {**form["fields"], "policy": "not base64!"}
    resp = requests.post(url, data=bad_policy, files={"file": ("f", b"x")}, timeout=30)
    assert error_of(resp)[:2] in ((400, "InvalidPolicyDocument"), (403, "SignatureDoesNotMatch"))
    absent(s3, bucket, "k")


def test_anonymous_forms_need_a_public_write_policy(s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_post(bucket, "k")["url"]

    def anonymous_post(key: str, body: bytes) -> requests.Response:
        return requests.post(url, data={"key": key}, files={"file": ("f", body)}, allow_redirects=False, timeout=30)

    assert error_of(anonymous_post("public/k", b"x"))[:2] == (403, "AccessDenied")  # no policy: private
    absent(s3, bucket, "public/k")
    public_write = statement("Allow", "*", "s3:PutObject", f"{ARN}{bucket}/public/*")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(public_write))
    resp = anonymous_post("public/${filename}", b"from anyone")
    assert resp.status_code == 204, resp.text
    assert get_body(s3, bucket, "public/f") == b"from anyone"
    assert error_of(anonymous_post("private/k", b"x"))[:2] == (403, "AccessDenied")  # outside what it allows
    absent(s3, bucket, "private/k")
    s3.delete_bucket_policy(Bucket=bucket)
    assert error_of(anonymous_post("public/again", b"x"))[:2] == (403, "AccessDenied")
    absent(s3, bucket, "public/again")


def test_fields_after_the_file_are_ignored(s3: Any, bucket: str) -> None:
    form = s3.generate_presigned_post(bucket, "late")
    boundary = "----tesseraform"
    parts = [(name, value.encode()) for name, value in form["fields"].items()]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in parts
    )
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode()
    body += b"payload\r\n"
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="x-amz-meta-late"\r\n\r\nyes\r\n'.encode()
    body += f"--{boundary}--\r\n".encode()
    resp = requests.post(
        form["url"], data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=30
    )
    assert resp.status_code == 204, resp.text
    assert s3.head_object(Bucket=bucket, Key="late")["Metadata"] == {}
    assert get_body(s3, bucket, "late") == b"payload"


def test_checksum_fields_are_verified(s3: Any, bucket: str) -> None:
    body = b"checked bytes"
    good = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    form = s3.generate_presigned_post(
        bucket, "sum", Fields={"x-amz-checksum-crc32": good}, Conditions=[{"x-amz-checksum-crc32": good}]
    )
    resp = post(form, body)
    assert resp.status_code == 204, resp.text
    assert resp.headers["x-amz-checksum-crc32"] == good
    assert s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")["ChecksumCRC32"] == good
    resp = post(form, body + b"!")
    assert error_of(resp)[:2] == (400, "BadDigest")
    assert get_body(s3, bucket, "sum") == body


def test_another_users_bucket_is_refused(server: ServerProcess, s3: Any, bucket: str) -> None:
    user = add_user(server.endpoint, unique("formuser"))
    theirs = server.client(user["access_key"], user["secret_key"])
    form = theirs.generate_presigned_post(bucket, "intruder")
    assert error_of(post(form, b"x"))[:2] == (403, "AccessDenied")
    absent(s3, bucket, "intruder")


def test_large_file_streams_through_many_segments(s3: Any, bucket: str) -> None:
    body = data(20 * MiB + 12345, seed=7)
    form = s3.generate_presigned_post(bucket, "big/${filename}", Conditions=[["content-length-range", 0, 64 * MiB]])
    resp = post(form, body, filename="video.bin")
    assert resp.status_code == 204, resp.text
    assert resp.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert get_body(s3, bucket, "big/video.bin") == body


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_form_file_is_streamed_not_buffered(server: ServerProcess, s3: Any, bucket: str) -> None:
    """A 96 MiB file sent chunked, made on the fly: the server's peak RSS grows far less than the file."""
    size, block = 96 * MiB, data(MiB, seed=3)
    form = s3.generate_presigned_post(bucket, "stream")
    boundary = "----tesserastream"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in form["fields"].items()
    )
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s"\r\n\r\n'.encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(size // MiB):
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    before = _peak_rss(server.pid)
    resp = requests.post(
        form["url"], data=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=120
    )
    assert resp.status_code == 204, resp.text
    grown = _peak_rss(server.pid) - before
    assert grown < 48 * MiB, f"peak RSS grew by {grown // MiB} MiB for a {size // MiB} MiB form upload"
    expected = hashlib.md5()
    for _ in range(size // MiB):
        expected.update(block)
    assert resp.headers["ETag"] == f'"{expected.hexdigest()}"'
    assert s3.head_object(Bucket=bucket, Key="stream")["ContentLength"] == size


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"x-amz-meta-note": "a\r\nSet-Cookie: x=1"}, (400, "InvalidArgument")),
        ({"x-amz-meta-two words": "v"}, (400, "InvalidArgument")),
        ({"Content-Disposition": "inline\r\nX: y"}, (400, "InvalidArgument")),
        ({"acl": "public-read"}, (501, "NotImplemented")),
        ({"acl": "everyone-gets-it"}, (400, "InvalidArgument")),
        ({"x-amz-server-side-encryption": "AES256"}, (501, "NotImplemented")),
    ],
    ids=["meta-crlf", "meta-name", "disposition-crlf", "acl-not-built", "acl-unknown", "sse"],
)
def test_fields_an_object_cannot_keep(s3: Any, bucket: str, fields: dict[str, str], expected: tuple[int, str]) -> None:
    form = s3.generate_presigned_post(bucket, "k", Fields=fields, Conditions=[{n: v} for n, v in fields.items()])
    status, code, message = error_of(post(form, b"x"))
    assert (status, code) == expected, message
    absent(s3, bucket, "k")


def test_owner_only_acls_are_accepted(s3: Any, bucket: str) -> None:
    for acl in ("private", "bucket-owner-full-control"):
        form = s3.generate_presigned_post(bucket, acl, Fields={"acl": acl}, Conditions=[{"acl": acl}])
        assert post(form, b"x").status_code == 204
        assert get_body(s3, bucket, acl) == b"x"


def _multipart(fields: dict[str, str], file: bytes, boundary: str = "----tesseraform") -> tuple[bytes, str]:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode()
    return body + file + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_virtual_hosted_form_and_expect_continue(server: ServerProcess, s3: Any, bucket: str) -> None:
    port = urlsplit(server.endpoint).port
    form = s3.generate_presigned_post(bucket, "vhost")
    body, kind = _multipart(form["fields"], b"by host")
    resp = requests.post(
        f"{server.endpoint}/",
        data=body,
        headers={"Host": f"{bucket}.localhost:{port}", "Content-Type": kind},
        timeout=30,
    )
    assert resp.status_code == 204, resp.text
    assert resp.headers["Location"] == f"http://{bucket}.localhost:{port}/vhost"
    assert get_body(s3, bucket, "vhost") == b"by host"

    # A client that waits for 100 Continue before sending the form gets it, then the answer.
    form = s3.generate_presigned_post(bucket, "continued")
    body, kind = _multipart(form["fields"], b"after continue")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert get_body(s3, bucket, "continued") == b"after continue"


def _signed_v2(policy: dict[str, Any]) -> dict[str, str]:
    """Form fields for `policy`, signed by hand with V2 (HMAC-SHA1 over the base64 policy)."""
    encoded = base64.b64encode(json.dumps(policy).encode()).decode()
    mac = hmac.new(SECRET_KEY.encode(), encoded.encode(), hashlib.sha1).digest()
    return {"key": "k", "AWSAccessKeyId": ACCESS_KEY, "policy": encoded, "signature": base64.b64encode(mac).decode()}


@pytest.mark.parametrize(
    "policy",
    [
        {"conditions": [{"key": "k"}]},
        {"expiration": "tomorrow", "conditions": [{"key": "k"}]},
        {"expiration": "2099-01-01T00:00:00Z"},
        {"expiration": "2099-01-01T00:00:00Z", "conditions": [["matches", "$key", "k"]]},
        {"expiration": "2099-01-01T00:00:00Z", "conditions": [["eq", "key", "k"]]},
        {"expiration": "2099-01-01T00:00:00Z", "conditions": [["content-length-range", "a", 5], {"key": "k"}]},
        {"expiration": "2099-01-01T00:00:00Z", "conditions": [{"key": 7}]},
    ],
    ids=["no-expiration", "bad-expiration", "no-conditions", "unknown-op", "no-dollar", "bad-range", "not-a-string"],
)
def test_invalid_policy_documents(server: ServerProcess, s3: Any, bucket: str, policy: dict[str, Any]) -> None:
    resp = requests.post(
        f"{server.endpoint}/{bucket}", data=_signed_v2(policy), files={"file": ("f", b"x")}, timeout=30
    )
    status, code, message = error_of(resp)
    assert (status, code) == (400, "InvalidPolicyDocument"), message
    assert message.startswith("Invalid Policy: ")
    absent(s3, bucket, "k")
    good = _signed_v2({"expiration": "2099-01-01T00:00:00Z", "conditions": [{"key": "k"}]})
    resp = requests.post(f"{server.endpoint}/{bucket}", data=good, files={"file": ("f", b"x")}, timeout=30)
    assert resp.status_code == 204, resp.text


def test_oversized_forms_and_odd_file_names(server: ServerProcess, s3: Any, bucket: str) -> None:
    form = s3.generate_presigned_post(bucket, "${filename}")
    url = form["url"]
    big = {**form["fields"], "x-ignore-padding": "p" * (70 << 10)}
    resp = requests.post(url, data=big, files={"file": ("f", b"x")}, timeout=30)
    assert error_of(resp)[:2] == (400, "MaxPostPreDataLengthExceeded")
    many = [(f"x-ignore-{i}", "") for i in range(2000)]
    resp = requests.post(url, data=[*form["fields"].items(), *many], files={"file": ("f", b"x")}, timeout=30)
    assert error_of(resp)[:2] == (400, "MaxPostPreDataLengthExceeded")
    body, kind = _multipart(form["fields"], b"x")
    odd = body.replace(b'filename="f"', b'filename="\xff\xfe.bin"')
    resp = requests.post(url, data=odd, headers={"Content-Type": kind}, timeout=30)
    assert error_of(resp)[:2] == (400, "InvalidArgument")  # a key must be UTF-8
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
