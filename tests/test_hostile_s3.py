"""Bad and hostile S3 requests against a real `tessera server`: other users' uploads, numbers that are not
plain decimals, half-valid DeleteObjects, odd location constraints and header values, keys XML cannot carry.

Each must get S3's error (never a 500, a cut connection or a traceback in the log) and change nothing.
"""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.hostile_corpus import (
    COMPLETE_PART_NUMBERS,
    CONTENT_LENGTHS,
    COPY_SOURCE_RANGES,
    DELETE_TAILS,
    FOREIGN_CONSTRAINTS,
    FULLWIDTH_ONE,
    HEADER_NUMBERS,
    LONG,
    NS,
    ODD_KEYS,
    OVERRIDE_PARAMS,
    QUERY_NUMBER_TARGETS,
    QUERY_NUMBER_VALUES,
    SUPERSCRIPT_TWO,
    UTF8_ONLY_HEADERS,
    assert_error,
    complete_body,
    delete_body,
    location_body,
    short,
    signed_utf8,
)
from tests.s3_helpers import (
    RawResponse,
    expect_error,
    md5_b64,
    send,
    sign,
    signed_request,
    unique,
)
from tests.server_process import ServerProcess
from tests.test_users import add_user, user_client


@pytest.fixture(autouse=True)
def no_traceback(server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[None]:
    """What a test's requests made the server log holds no traceback."""
    seen = len(server.log_text())
    yield
    assert "Traceback" not in server.log_text()[seen:]


def etree(resp: RawResponse) -> ET.Element:
    assert resp.status == 200, (resp.status, resp.body)
    return ET.fromstring(resp.body)  # raises if the document does not parse


# -- 2: an upload is its initiator's ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice_and_bob(server: ServerProcess) -> tuple[Any, Any]:
    tag = uuid.uuid4().hex[:8]
    return (
        user_client(server.endpoint, add_user(server.endpoint, "alice-" + tag)),
        user_client(server.endpoint, add_user(server.endpoint, "bob-" + tag)),
    )


def test_another_user_cannot_touch_an_upload(alice_and_bob: tuple[Any, Any]) -> None:
    alice, bob = alice_and_bob
    bucket = unique("alice")
    alice.create_bucket(Bucket=bucket)
    upload = alice.create_multipart_upload(Bucket=bucket, Key="doc")["UploadId"]
    mine = alice.upload_part(Bucket=bucket, Key="doc", UploadId=upload, PartNumber=1, Body=b"alice's bytes")
    ids = {"Bucket": bucket, "Key": "doc", "UploadId": upload}

    expect_error(bob.upload_part, "AccessDenied", 403, PartNumber=1, Body=b"bob's bytes", **ids)
    expect_error(bob.list_parts, "AccessDenied", 403, **ids)
    parts = {"Parts": [{"PartNumber": 1, "ETag": mine["ETag"]}]}
    expect_error(bob.complete_multipart_upload, "AccessDenied", 403, MultipartUpload=parts, **ids)
    expect_error(bob.abort_multipart_upload, "AccessDenied", 403, **ids)

    listed = alice.list_parts(**ids)["Parts"]  # nothing changed
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, mine["ETag"])]
    alice.complete_multipart_upload(MultipartUpload=parts, **ids)
    assert alice.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"alice's bytes"


def test_a_presigned_part_url_works_for_whoever_holds_it(server: ServerProcess, alice_and_bob: tuple[Any, Any]) -> None:
    alice, _ = alice_and_bob
    bucket = unique("alice")
    alice.create_bucket(Bucket=bucket)
    upload = alice.create_multipart_upload(Bucket=bucket, Key="shared")["UploadId"]
    url = alice.generate_presigned_url(
        "upload_part", Params={"Bucket": bucket, "Key": "shared", "UploadId": upload, "PartNumber": 1}
    )
    parts = urlsplit(url)
    resp = send(server, "PUT", f"{parts.path}?{parts.query}", {}, b"from a browser")  # no credentials of its own
    assert resp.status == 200, resp.body
    etag = resp.headers["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    alice.complete_multipart_upload(Bucket=bucket, Key="shared", UploadId=upload, MultipartUpload=parts)
    assert alice.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"from a browser"


def test_the_bucket_owner_cannot_take_over_the_roots_upload(s3: Any, alice_and_bob: tuple[Any, Any]) -> None:
    alice, _ = alice_and_bob
    bucket = unique("alice")
    alice.create_bucket(Bucket=bucket)
    ids = {"Bucket": bucket, "Key": "by-root"}
    upload = s3.create_multipart_upload(**ids)["UploadId"]  # the root may use every bucket
    etag = s3.upload_part(UploadId=upload, PartNumber=1, Body=b"root", **ids)["ETag"]
    expect_error(alice.upload_part, "AccessDenied", 403, UploadId=upload, PartNumber=1, Body=b"x", **ids)
    expect_error(alice.abort_multipart_upload, "AccessDenied", 403, UploadId=upload, **ids)
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    s3.complete_multipart_upload(UploadId=upload, MultipartUpload=parts, **ids)
    assert s3.get_object(**ids)["Body"].read() == b"root"


# -- 5: DeleteObjects is validated whole before anything goes --------------------------------------------------


def post_delete(server: ServerProcess, bucket: str, body: bytes) -> RawResponse:
    return signed_request(server, "POST", f"/{bucket}?delete", body, {"Content-MD5": md5_b64(body)})


@pytest.mark.parametrize("tail", [t for t, _ in DELETE_TAILS], ids=[i for _, i in DELETE_TAILS])
def test_a_malformed_delete_objects_deletes_nothing(server: ServerProcess, s3: Any, bucket: str, tail: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"still here")
    assert_error(post_delete(server, bucket, delete_body(tail)), "MalformedXML", 400)
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"still here"


# -- 8: numbers are ASCII decimals of bounded length ------------------------------------------------------------


@pytest.fixture
def upload(s3: Any, bucket: str) -> dict[str, str]:
    """An upload with one small part (a valid last part): what Complete and ListParts need."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part one")["ETag"]
    s3.put_object(Bucket=bucket, Key="obj", Body=bytes(range(256)) * 40)
    return {"bucket": bucket, "id": upload_id, "etag": etag}


@pytest.mark.parametrize("value", QUERY_NUMBER_VALUES, ids=short)
@pytest.mark.parametrize("method,target", QUERY_NUMBER_TARGETS)
def test_query_numbers(server: ServerProcess, upload: dict[str, str], method: str, target: str, value: str) -> None:
    path = target.format(bucket=upload["bucket"], id=upload["id"], v=quote(value, safe=""))
    err = assert_error(
        signed_request(server, method, path, b"a part" if method == "PUT" else b""), "InvalidArgument", 400
    )
    assert err["ArgumentName"] in target


@pytest.mark.parametrize("value", COMPLETE_PART_NUMBERS, ids=short)
def test_complete_part_number(server: ServerProcess, s3: Any, upload: dict[str, str], value: str) -> None:
    body = complete_body(value, upload["etag"])
    resp = signed_request(server, "POST", f"/{upload['bucket']}/mp?uploadId={upload['id']}", body)
    assert_error(resp, "MalformedXML", 400)
    assert len(s3.list_parts(Bucket=upload["bucket"], Key="mp", UploadId=upload["id"])["Parts"]) == 1


@pytest.mark.parametrize("value", ["0", "10001", "99999999999"])
def test_complete_part_number_out_of_range(server: ServerProcess, upload: dict[str, str], value: str) -> None:
    body = complete_body(value, upload["etag"])
    resp = signed_request(server, "POST", f"/{upload['bucket']}/mp?uploadId={upload['id']}", body)
    assert_error(resp, "InvalidPart", 400)


@pytest.mark.parametrize("value", HEADER_NUMBERS, ids=short)
def test_complete_declared_size(server: ServerProcess, s3: Any, upload: dict[str, str], value: str) -> None:
    body = complete_body("1", upload["etag"])
    headers = {"x-amz-mp-object-size": value}
    target = f"/{upload['bucket']}/mp?uploadId={upload['id']}"
    resp = signed_utf8(server, "POST", target, headers, body=body)
    assert_error(resp, "InvalidRequest", 400)
    expect_error(s3.head_object, "404", 404, Bucket=upload["bucket"], Key="mp")


@pytest.mark.parametrize("value", HEADER_NUMBERS, ids=short)
def test_decoded_content_length(server: ServerProcess, s3: Any, bucket: str, value: str) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": value}
    trailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    resp = signed_utf8(server, "PUT", f"/{bucket}/chunked", headers, body=body, payload_hash=trailer)
    assert_error(resp, "InvalidArgument", 400)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="chunked")


@pytest.mark.parametrize("value", HEADER_NUMBERS, ids=short)
def test_presigned_v2_expires(server: ServerProcess, bucket: str, value: str) -> None:
    resp = send(server, "GET", f"/{bucket}/x?AWSAccessKeyId=AKIDEXAMPLE&Signature=c2ln&Expires={quote(value)}", {})
    assert_error(resp, "AccessDenied", 403)


@pytest.mark.parametrize("value", CONTENT_LENGTHS, ids=short)
def test_content_length_not_a_number(server: ServerProcess, s3: Any, bucket: str, value: str) -> None:
    """Refused by aiohttp's HTTP parser before any of our code runs: a plain 400, as S3's front ends answer
    broken HTTP."""
    head = f"PUT /{bucket}/cl HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nhello".encode()
    host, port = urlsplit(server.endpoint).hostname, urlsplit(server.endpoint).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head)
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"400", status_line
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="cl")


SIZE = 10240  # of "obj"


@pytest.mark.parametrize(
    "header,status,first,last",
    [
        ("bytes=-" + LONG, 206, 0, SIZE - 1),  # a suffix longer than the object: all of it
        ("bytes=0-" + LONG, 206, 0, SIZE - 1),
        ("bytes=" + LONG + "-", 416, 0, 0),
        ("bytes=" + LONG[:4000] + "-" + LONG[:4000], 416, 0, 0),  # both within aiohttp's 8 KiB header line
        (f"bytes={FULLWIDTH_ONE}-{FULLWIDTH_ONE}0", 200, 0, SIZE - 1),  # not a byte range: ignored, as RFC 9110
        (f"bytes={SUPERSCRIPT_TWO}-", 200, 0, SIZE - 1),
    ],
    ids=short,
)
def test_absurd_ranges(
    server: ServerProcess, upload: dict[str, str], header: str, status: int, first: int, last: int
) -> None:
    resp = signed_utf8(server, "GET", f"/{upload['bucket']}/obj", {"Range": header})
    if status == 416:
        assert_error(resp, "InvalidRange", 416)
        return
    assert resp.status == status, resp.status
    assert resp.body == (bytes(range(256)) * 40)[first : last + 1]


@pytest.mark.parametrize("value", COPY_SOURCE_RANGES, ids=short)
def test_copy_source_range(server: ServerProcess, s3: Any, upload: dict[str, str], value: str) -> None:
    target = f"/{upload['bucket']}/mp?uploadId={upload['id']}&partNumber=2"
    headers = {"x-amz-copy-source": f"/{upload['bucket']}/obj", "x-amz-copy-source-range": value}
    assert_error(signed_utf8(server, "PUT", target, headers), "InvalidArgument", 400)
    assert len(s3.list_parts(Bucket=upload["bucket"], Key="mp", UploadId=upload["id"])["Parts"]) == 1


# -- 9: a location constraint is this server's region; no header carries a line break ---------------------------


def create_with(server: ServerProcess, bucket: str, constraint: str) -> RawResponse:
    return signed_request(server, "PUT", f"/{bucket}", location_body(constraint))


@pytest.mark.parametrize("constraint,code", FOREIGN_CONSTRAINTS)
def test_foreign_location_constraint(server: ServerProcess, s3: Any, constraint: str, code: str) -> None:
    bucket = unique("loc")
    assert_error(create_with(server, bucket, constraint), code, 400)
    head = signed_request(server, "HEAD", f"/{bucket}")  # answered at all, and the bucket is not there
    assert head.status == 404


@pytest.mark.parametrize("constraint", ["", "us-east-1"])
def test_own_location_constraint(server: ServerProcess, s3: Any, constraint: str) -> None:
    bucket = unique("loc")
    assert create_with(server, bucket, constraint).status == 200
    head = signed_request(server, "HEAD", f"/{bucket}")
    assert head.status == 200 and head.headers["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    expect_error(
        s3.create_bucket,
        "IllegalLocationConstraintException",
        400,
        Bucket=unique("loc"),
        CreateBucketConfiguration={"LocationConstraint": "ap-south-1"},
    )


@pytest.mark.parametrize("param", OVERRIDE_PARAMS)
def test_response_override_with_a_line_break(server: ServerProcess, s3: Any, bucket: str, param: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    value = quote("text/plain\r\nX-Injected: 1", safe="")
    resp = signed_request(server, "GET", f"/{bucket}/k?{param}={value}")
    assert_error(resp, "InvalidArgument", 400)
    assert "X-Injected" not in resp.headers


@pytest.mark.parametrize("header", UTF8_ONLY_HEADERS)
def test_a_header_value_that_is_not_utf8_is_refused(server: ServerProcess, s3: Any, bucket: str, header: str) -> None:
    """It would be kept with the object and sent back with every GET: neither the index nor aiohttp can."""
    signed = sign(server, "PUT", f"/{bucket}/k", {"Content-Length": "1"}, hashlib.sha256(b"x").hexdigest())
    raw: Any = {**{name: value.encode() for name, value in signed.headers.items()}, header: b"caf\xff"}
    assert_error(send(server, "PUT", f"/{bucket}/k", raw, b"x"), "InvalidArgument", 400)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="k")


# -- 10: any UTF-8 key, and every listing parses ------------------------------------------------------------------


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


@pytest.fixture(scope="module")
def odd_bucket(s3: Any) -> str:
    bucket = unique("odd")
    s3.create_bucket(Bucket=bucket)
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    return bucket


def test_any_utf8_key_round_trips(s3: Any, odd_bucket: str) -> None:
    for key in ODD_KEYS:
        assert s3.get_object(Bucket=odd_bucket, Key=key)["Body"].read() == key.encode()
        assert s3.head_object(Bucket=odd_bucket, Key=key)["ContentLength"] == len(key.encode())
    assert [o["Key"] for o in s3.list_objects(Bucket=odd_bucket)["Contents"]] == utf8_sorted(ODD_KEYS)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=odd_bucket)["Contents"]] == utf8_sorted(ODD_KEYS)


def listed(doc: ET.Element, path: str) -> list[str]:
    """The texts at `path`, url-decoded when the document says it is url-encoded."""
    texts = [el.text or "" for el in doc.findall("/".join(NS + tag for tag in path.split("/")))]
    return [unquote(t) for t in texts] if doc.findtext(NS + "EncodingType") == "url" else texts


@pytest.mark.parametrize("query", ["", "?list-type=2", "?delimiter=k", "?list-type=2&delimiter=k"])
def test_listing_without_encoding_type_parses(server: ServerProcess, odd_bucket: str, query: str) -> None:
    doc = etree(signed_request(server, "GET", f"/{odd_bucket}{query}"))
    assert doc.findtext(NS + "EncodingType") == "url"  # a page XML 1.0 cannot carry is url-encoded, and says so
    got = listed(doc, "Contents/Key") + listed(doc, "CommonPrefixes/Prefix")
    if "delimiter" in query:
        assert sorted(got) == sorted(k[: k.index("k") + 1] for k in ODD_KEYS)
    else:
        assert got == utf8_sorted(ODD_KEYS)


def test_upload_and_part_listings_parse(server: ServerProcess, s3: Any, odd_bucket: str) -> None:
    doc = etree(signed_request(server, "GET", f"/{odd_bucket}?uploads"))
    assert listed(doc, "Upload/Key") == utf8_sorted(ODD_KEYS)
    for upload in doc.findall(f"{NS}Upload"):
        key, upload_id = unquote(upload.findtext(NS + "Key") or ""), upload.findtext(NS + "UploadId") or ""
        parts = etree(signed_request(server, "GET", f"/{odd_bucket}/{quote(key)}?uploadId={upload_id}"))
        assert listed(parts, "Key") == [key]


def test_a_page_xml_can_carry_is_sent_as_it_is(server: ServerProcess, odd_bucket: str) -> None:
    doc = etree(signed_request(server, "GET", f"/{odd_bucket}?list-type=2&prefix=cr"))
    assert doc.find(NS + "EncodingType") is None
    assert [el.text for el in doc.iter(NS + "Key")] == ["cr\rkey", "crlf\r\nkey"]  # CR sent as &#13;


def test_error_about_an_odd_key_parses(server: ServerProcess, odd_bucket: str) -> None:
    missing = quote("gone\x01key")
    err = assert_error(signed_request(server, "GET", f"/{odd_bucket}/{missing}"), "NoSuchKey", 404)
    assert err["Key"].startswith("gone") and err["Key"].endswith("key")


def test_aws_cli_with_odd_keys(server: ServerProcess, tmp_path: Any) -> None:
    bucket = unique("cli")
    server.aws("s3", "mb", f"s3://{bucket}")
    src = tmp_path / "body"
    src.write_bytes(b"from the cli")
    keys = ["cli\nline", "cli\x01ctl", "cli\rret"]
    for key in keys:
        server.aws("s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(src))
    out = json.loads(server.aws("s3api", "list-objects-v2", "--bucket", bucket, "--output", "json").stdout)
    assert [o["Key"] for o in out["Contents"]] == utf8_sorted(keys)
    out = json.loads(server.aws("s3api", "list-objects", "--bucket", bucket, "--output", "json").stdout)
    assert [o["Key"] for o in out["Contents"]] == utf8_sorted(keys)
    got = tmp_path / "got"
    server.aws("s3api", "get-object", "--bucket", bucket, "--key", "cli\nline", str(got))
    assert got.read_bytes() == b"from the cli"
