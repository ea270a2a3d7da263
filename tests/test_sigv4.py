"""gateway.s3.sigv4 accepts what botocore signs and what the AWS documentation's examples sign: odd keys,
queries, headers, regions, dates and payload modes, the path and query as aiohttp gives them, and a
signed body's hash. A change to any signed part is caught.

Refusals of header auth are in test_sigv4_refusals.py, presigned URLs in test_sigv4_presigned.py,
hostile input and fuzzing in test_sigv4_hostile.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict
from yarl import URL

from gateway.s3 import canonical, payload, sigv4
from gateway.s3.errors import S3Error
from tests.sigv4_helpers import (
    ACCESS_KEY,
    ENDPOINT,
    SECRET_KEY,
    as_received,
    check,
    lookup,
    object_path,
    signed_request,
)

# -- header auth --------------------------------------------------------------------------------------


def test_simple_get() -> None:
    ctx = check(signed_request())
    assert ctx.access_key == ACCESS_KEY
    assert ctx.region == "us-east-1"
    assert ctx.scope == f"{ctx.date}/us-east-1/s3/aws4_request"
    assert ctx.amz_date.startswith(ctx.date) and ctx.amz_date.endswith("Z")
    assert ctx.payload_hash == payload.EMPTY_SHA256
    assert ctx.content_sha256 == payload.EMPTY_SHA256
    assert not ctx.presigned and not ctx.streaming
    assert len(ctx.seed_signature) == 64
    assert ctx.signing_key == canonical.derive_signing_key(SECRET_KEY, ctx.date, "us-east-1")
    assert "host" in ctx.signed_headers


def test_plain_dict_headers_are_accepted() -> None:
    method, path, query, headers = signed_request()
    sigv4.verify(method, path, query, {k: v for k, v in headers.items()}, lookup)


@pytest.mark.parametrize(
    "key",
    [
        "plain.txt",
        "with space/and more spaces  .txt",
        "unicode/ünïcødé/日本語/🎉.bin",
        "plus+sign+key",
        "percent%20literal%",
        "equals=sign&amp",
        "tilde~key~",
        "special!*'()[]{}$,;:@ #?.txt",
        "dir//double//slash/",
        "./dot/../segments/.",
        "trailing/",
        "a" * 1000,
    ],
)
def test_keys_with_odd_characters(key: str) -> None:
    ctx = check(signed_request("PUT", object_path(key), body=b"x"))
    assert ctx.content_sha256 == hashlib.sha256(b"x").hexdigest()


def test_key_tamper_is_detected() -> None:
    method, path, query, headers = signed_request("GET", object_path("a+b"))
    with pytest.raises(S3Error) as exc:
        sigv4.verify(method, path.replace("%2B", "%20"), query, headers, lookup)
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    "query",
    [
        "uploads",
        "list-type=2&prefix=a%20b%2Bc%2F%C3%BC&delimiter=%2F&encoding-type=url",
        "partNumber=3&uploadId=abc%2Fdef%3D%3D",
        "delete",
        "prefix=~tilde&max-keys=10&continuation-token=AbC%2B%2F%3D",
        "b=2&a=1&a=0",  # repeated key: sorted by value too
        "versionId=null&x-id=GetObject",
    ],
)
def test_query_strings(query: str) -> None:
    check(signed_request("GET", "/bucket", query=query))


def test_query_tamper_is_detected() -> None:
    method, path, query, headers = signed_request("GET", "/bucket", query="prefix=a&max-keys=10")
    with pytest.raises(S3Error) as exc:
        sigv4.verify(method, path, [("prefix", "b"), ("max-keys", "10")], headers, lookup)
    assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error):
        sigv4.verify(method, path, [*query, ("acl", "")], headers, lookup)


def test_header_values_are_trimmed_and_joined() -> None:
    signed = signed_request("PUT", "/bucket/k", headers={"x-amz-meta-note": "  two   spaces\tand tab  "}, body=b"")
    check(signed)
    method, path, query, headers = signed_request("PUT", "/bucket/k", headers={"Content-Type": "text/plain"})
    multi = CIMultiDict(headers)
    multi.add("x-amz-meta-m", "one")  # not signed: refused as such
    with pytest.raises(S3Error) as exc:
        sigv4.verify(method, path, query, multi, lookup)
    assert exc.value.code == "AccessDenied"
    assert exc.value.fields["HeadersNotSigned"] == "x-amz-meta-m"


def test_repeated_header_values() -> None:
    request = AWSRequest(method="PUT", url=ENDPOINT + "/bucket/k", data=b"")
    request.headers["x-amz-meta-m"] = "first"
    request.headers["x-amz-meta-m"] = "second"  # HTTPHeaders appends: a repeated header
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    method, path, query, headers = as_received(request)
    assert headers.getall("x-amz-meta-m") == ["first", "second"]
    sigv4.verify(method, path, query, headers, lookup)


def test_any_region_is_accepted_and_recorded() -> None:
    assert check(signed_request(region="eu-central-1")).region == "eu-central-1"
    assert check(signed_request(region="tessera")).region == "tessera"


def test_date_header_instead_of_x_amz_date() -> None:
    request = AWSRequest(method="GET", url=ENDPOINT + "/bucket/k", headers={"Date": "placeholder"})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    signed = as_received(request)
    assert "x-amz-date" not in signed[3]
    ctx = check(signed)
    signed_at = datetime.strptime(ctx.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(signed_at - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "mode",
    [
        payload.STREAMING_PAYLOAD,
        payload.STREAMING_PAYLOAD_TRAILER,
        payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER,
        payload.UNSIGNED_PAYLOAD,
    ],
)
def test_payload_modes(mode: str) -> None:
    class Signer(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return mode

    ctx = check(signed_request("PUT", "/bucket/k", body=b"whatever", signer=Signer))
    assert ctx.payload_hash == mode
    assert ctx.content_sha256 is None
    assert ctx.streaming == mode.startswith("STREAMING-")


def test_client_encoding_variants_of_the_path() -> None:
    # Clients that sign the path exactly as they send it, with their own (valid) percent-encoding choices.
    for path in ("/bucket/%7Etilde", "/bucket/lower%c3%bc", "/bucket/bang!key", "/bucket/a%2Fb"):
        check(signed_request("GET", path))


def test_signing_key_is_per_day_and_region() -> None:
    k1 = canonical.derive_signing_key("s", "20240101", "us-east-1")
    assert k1 != canonical.derive_signing_key("s", "20240102", "us-east-1")
    assert k1 != canonical.derive_signing_key("s", "20240101", "eu-west-1")
    assert len(k1) == 32


# -- the path and query as aiohttp gives them ----------------------------------------------------------


def test_inputs_as_aiohttp_gives_them() -> None:
    """How the gateway should feed verify() from aiohttp: rel_url.raw_path and raw_query_string, decoded once.
    (`request.query_string` is already partly decoded by yarl: parsing it again corrupts '%25' and '%2B'.)"""
    query = "list-type=2&prefix=100%25%20sure%2Bplus%26amp%3D%2541&delimiter=%2F"
    method, _, _, headers = signed_request("GET", object_path("k%+ ü"), query=query)
    url = URL(f"{ENDPOINT}{object_path('k%+ ü')}?{query}", encoded=True)
    pairs = sigv4.parse_query(url.raw_query_string)
    assert ("prefix", "100% sure+plus&amp=%41") in pairs
    sigv4.verify(method, url.raw_path, pairs, headers, lookup)
    with pytest.raises(S3Error):
        sigv4.verify(method, url.raw_path, parse_qsl(url.query_string, keep_blank_values=True), headers, lookup)


def test_undecodable_query_bytes_round_trip() -> None:
    # botocore signs a query it finds in the URL as it is; %FF is not UTF-8 and must survive decoding.
    method, path, _, headers = signed_request("GET", "/bucket", query="prefix=%FF%FE&marker=a%20b")
    assert sigv4.parse_query("prefix=%FF%FE&marker=a%20b") == [("prefix", "\udcff\udcfe"), ("marker", "a b")]
    sigv4.verify(method, path, sigv4.parse_query("prefix=%FF%FE&marker=a%20b"), headers, lookup)


# -- the AWS documentation's examples ("Signature Calculations for the Authorization Header") -----------

AWS_NOW = datetime(2013, 5, 24, 0, 5, tzinfo=UTC)


def test_aws_example_get_object() -> None:
    headers = CIMultiDict(
        {
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": payload.EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        }
    )
    ctx = sigv4.verify("GET", "/test.txt", [], headers, lookup, now=AWS_NOW)
    assert ctx.access_key == "AKIAIOSFODNN7EXAMPLE"


def test_aws_example_presigned() -> None:
    query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"),
        ("X-Amz-Date", "20130524T000000Z"),
        ("X-Amz-Expires", "86400"),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Signature", "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
    ]
    headers = CIMultiDict(Host="examplebucket.s3.amazonaws.com")
    ctx = sigv4.verify("GET", "/test.txt", query, headers, lookup, now=AWS_NOW)
    assert ctx.presigned
    with pytest.raises(S3Error, match="Request has expired"):
        sigv4.verify("GET", "/test.txt", query, headers, lookup, now=AWS_NOW + timedelta(days=1, seconds=1))


def test_aws_example_streaming_seed() -> None:
    headers = CIMultiDict(
        {
            "Host": "s3.amazonaws.com",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "Content-Length": "66824",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        }
    )
    ctx = sigv4.verify("PUT", "/examplebucket/chunkObject.txt", [], headers, lookup, now=AWS_NOW)
    assert ctx.seed_signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    assert ctx.payload_hash == payload.STREAMING_PAYLOAD


# -- payload hash -------------------------------------------------------------------------------------


def test_payload_hash_verifier() -> None:
    body = b"some body" * 1000
    ok = payload.PayloadHashVerifier(hashlib.sha256(body).hexdigest().upper())
    for i in range(0, len(body), 1000):
        ok.update(body[i : i + 1000])
    ok.verify()

    bad = payload.PayloadHashVerifier(hashlib.sha256(body).hexdigest())
    bad.update(body[:-1])
    with pytest.raises(S3Error) as exc:
        bad.verify()
    assert (exc.value.code, exc.value.status) == ("XAmzContentSHA256Mismatch", 400)
    assert exc.value.fields["S3ComputedContentSHA256"] == hashlib.sha256(body[:-1]).hexdigest()


def test_signed_body_end_to_end() -> None:
    body = b"\x00\x01payload" * 999
    ctx = check(signed_request("PUT", "/bucket/k", body=body))
    assert ctx.content_sha256 is not None
    verifier = payload.PayloadHashVerifier(ctx.content_sha256)
    verifier.update(body)
    verifier.verify()
