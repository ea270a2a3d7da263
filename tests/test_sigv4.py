"""gateway.s3.sigv4 against requests signed by botocore itself, and against the AWS documentation's examples."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.s3 import canonical, payload, sigv4
from gateway.s3.errors import S3Error

ACCESS_KEY = "TESSERAACCESSKEY0001"
SECRET_KEY = "tessera/secret+key=with~odd/chars0123"
ENDPOINT = "http://127.0.0.1:9000"
SECRETS = {ACCESS_KEY: SECRET_KEY, "AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}

Signed = tuple[str, str, list[tuple[str, str]], CIMultiDictProxy[str]]


def lookup(access_key: str) -> str | None:
    return SECRETS.get(access_key)


def as_received(request: AWSRequest) -> Signed:
    """What the gateway would see for a request botocore signed: method, raw path, decoded query, headers."""
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():  # all values of repeated headers, unlike prepared.headers
        headers.add(name, value.decode() if isinstance(value, bytes) else value)
    if "host" not in headers:
        headers["Host"] = parts.netloc  # added by the HTTP client, and signed by botocore
    query = parse_qsl(parts.query, keep_blank_values=True)
    return prepared.method, parts.path, query, CIMultiDictProxy(headers)


def signed_request(
    method: str = "GET",
    path: str = "/bucket/key",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    region: str = "us-east-1",
    service: str = "s3",
    signer: type[SigV4Auth] = S3SigV4Auth,
) -> Signed:
    url = ENDPOINT + path + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    signer(Credentials(access_key, secret), service, region).add_auth(request)
    return as_received(request)


def presigned_request(
    method: str = "GET",
    path: str = "/bucket/key",
    query: str = "",
    headers: dict[str, str] | None = None,
    *,
    expires: int = 3600,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    region: str = "us-east-1",
) -> Signed:
    url = ENDPOINT + path + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url, headers=headers or {})
    S3SigV4QueryAuth(Credentials(access_key, secret), "s3", region, expires=expires).add_auth(request)
    return as_received(request)


def check(signed: Signed, now: datetime | None = None) -> payload.AuthContext:
    method, path, query, headers = signed
    return sigv4.verify(method, path, query, headers, lookup, now=now)


def error_of(signed: Signed, now: datetime | None = None) -> S3Error:
    with pytest.raises(S3Error) as exc:
        check(signed, now)
    return exc.value


def with_header(signed: Signed, name: str, value: str | None) -> Signed:
    method, path, query, headers = signed
    copy = CIMultiDict(headers)
    if value is None:
        copy.popall(name, None)
    else:
        copy[name] = value
    return method, path, query, CIMultiDictProxy(copy)


def object_path(key: str, bucket: str = "bucket") -> str:
    """The path botocore's S3 serializer sends for a key."""
    return f"/{bucket}/" + percent_encode(key, safe="/~")


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


def test_unknown_access_key() -> None:
    err = error_of(signed_request(access_key="NOSUCHKEY"))
    assert (err.code, err.status) == ("InvalidAccessKeyId", 403)
    assert err.fields["AWSAccessKeyId"] == "NOSUCHKEY"


def test_wrong_secret() -> None:
    err = error_of(signed_request(secret="not-the-secret"))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert err.fields["AWSAccessKeyId"] == ACCESS_KEY
    assert err.fields["CanonicalRequest"].startswith("GET\n/bucket/key\n")


def test_tampered_signature() -> None:
    signed = signed_request()
    auth = signed[3]["Authorization"]
    last = auth[-1]
    tampered = auth[:-1] + ("0" if last != "0" else "1")
    assert error_of(with_header(signed, "Authorization", tampered)).code == "SignatureDoesNotMatch"
    upper = auth[: auth.index("Signature=") + 10] + auth[auth.index("Signature=") + 10 :].upper()
    if upper != auth:
        assert error_of(with_header(signed, "Authorization", upper)).code == "SignatureDoesNotMatch"


def test_tampered_signed_header() -> None:
    signed = signed_request("PUT", "/bucket/k", headers={"x-amz-meta-a": "1"}, body=b"body")
    assert error_of(with_header(signed, "x-amz-meta-a", "2")).code == "SignatureDoesNotMatch"
    assert error_of(with_header(signed, "host", "evil.example:9000")).code == "SignatureDoesNotMatch"
    assert error_of(with_header(signed, "x-amz-content-sha256", payload.EMPTY_SHA256)).code == "SignatureDoesNotMatch"


def test_method_is_signed() -> None:
    _, path, query, headers = signed_request("GET")
    with pytest.raises(S3Error) as exc:
        sigv4.verify("DELETE", path, query, headers, lookup)
    assert exc.value.code == "SignatureDoesNotMatch"


def test_clock_skew() -> None:
    signed = signed_request()
    now = datetime.now(UTC)
    check(signed, now + timedelta(minutes=14))
    check(signed, now - timedelta(minutes=14))
    for delta in (timedelta(minutes=16), -timedelta(minutes=16), timedelta(days=3)):
        err = error_of(signed, now + delta)
        assert (err.code, err.status) == ("RequestTimeTooSkewed", 403)
        assert err.fields["MaxAllowedSkewMilliseconds"] == "900000"
        assert err.fields["RequestTime"] == signed[3]["x-amz-date"]


def test_naive_now_is_utc() -> None:
    check(signed_request(), datetime.now(UTC).replace(tzinfo=None))


def test_missing_auth() -> None:
    err = error_of(("GET", "/bucket/key", [], CIMultiDictProxy(CIMultiDict(Host="h"))))
    assert (err.code, err.status) == ("AccessDenied", 403)


def test_both_header_and_query_auth() -> None:
    method, path, query, _ = presigned_request()
    _, _, _, headers = signed_request()
    with pytest.raises(S3Error) as exc:
        sigv4.verify(method, path, query, headers, lookup)
    assert exc.value.code == "InvalidArgument"


def v4_header(
    credential: str = "K/20240101/us-east-1/s3/aws4_request", signed: str = "host", signature: str | None = "ab"
) -> str:
    value = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}"
    return value if signature is None else f"{value}, Signature={signature}"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("AWS TESSERAACCESSKEY0001:c2lnbmF0dXJl", "InvalidRequest"),  # SigV2
        ("AWS4-ECDSA-P256-SHA256 Credential=x", "InvalidRequest"),  # SigV4a
        ("Bearer token", "InvalidArgument"),
        ("AWS4-HMAC-SHA256", "AuthorizationHeaderMalformed"),
        (v4_header(signature=None), "AuthorizationHeaderMalformed"),
        (v4_header(signature=""), "AuthorizationHeaderMalformed"),
        (v4_header(credential="K/20240101/us-east-1/s3"), "AuthorizationHeaderMalformed"),
        (v4_header(credential="K/2024011/us-east-1/s3/aws4_request"), "AuthorizationHeaderMalformed"),
        (v4_header(credential="K/20240101//s3/aws4_request"), "AuthorizationHeaderMalformed"),
        (v4_header(credential="K/20240101/us-east-1/ec2/aws4_request"), "AuthorizationHeaderMalformed"),
        (v4_header(credential="K/20240101/us-east-1/s3/aws5_request"), "AuthorizationHeaderMalformed"),
        (v4_header(signed="Host"), "AuthorizationHeaderMalformed"),
        (v4_header(signed="host;;x-amz-date"), "AuthorizationHeaderMalformed"),
    ],
)
def test_malformed_authorization(authorization: str, code: str) -> None:
    err = error_of(with_header(signed_request(), "Authorization", authorization))
    assert err.code == code
    assert err.status == 400


def test_wrong_service_message() -> None:
    err = error_of(signed_request(service="ec2"))
    assert err.code == "AuthorizationHeaderMalformed"
    assert 'incorrect service "ec2"' in err.message


def test_credential_date_must_match_request_date() -> None:
    signed = signed_request()
    auth = signed[3]["Authorization"]
    date = signed[3]["x-amz-date"][:8]
    other = (datetime.strptime(date, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    err = error_of(with_header(signed, "Authorization", auth.replace(f"/{date}/", f"/{other}/")))
    assert err.code == "AuthorizationHeaderMalformed"
    assert "Invalid credential date" in err.message


def test_missing_or_bad_date() -> None:
    signed = signed_request()
    for value in (None, "yesterday", "20240101T000000", "2024-01-01T00:00:00Z"):
        err = error_of(with_header(signed, "x-amz-date", value))
        assert err.code == "AccessDenied"
        assert "Date or x-amz-date" in err.message


def test_content_sha256_required_and_validated() -> None:
    # Generic SigV4 (not S3's) does not add x-amz-content-sha256.
    err = error_of(signed_request(signer=SigV4Auth))
    assert (err.code, err.message) == (
        "InvalidRequest",
        "Missing required header for this request: x-amz-content-sha256",
    )

    class Bogus(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return "not-a-hash"

    err = error_of(signed_request("PUT", body=b"x", signer=Bogus))
    assert err.code == "InvalidArgument"
    assert err.fields["ArgumentName"] == "x-amz-content-sha256"


def test_unsigned_amz_header_is_refused() -> None:
    signed = with_header(signed_request(), "x-amz-acl", "public-read")
    err = error_of(signed)
    assert (err.code, err.fields["HeadersNotSigned"]) == ("AccessDenied", "x-amz-acl")
    # Unsigned ordinary headers are fine (proxies and HTTP clients add those).
    check(with_header(signed_request(), "User-Agent", "something/else"))


def test_client_encoding_variants_of_the_path() -> None:
    # Clients that sign the path exactly as they send it, with their own (valid) percent-encoding choices.
    for path in ("/bucket/%7Etilde", "/bucket/lower%c3%bc", "/bucket/bang!key", "/bucket/a%2Fb"):
        check(signed_request("GET", path))


def test_signing_key_is_per_day_and_region() -> None:
    k1 = canonical.derive_signing_key("s", "20240101", "us-east-1")
    assert k1 != canonical.derive_signing_key("s", "20240102", "us-east-1")
    assert k1 != canonical.derive_signing_key("s", "20240101", "eu-west-1")
    assert len(k1) == 32


# -- presigned URLs -----------------------------------------------------------------------------------


def test_presigned_get() -> None:
    ctx = check(presigned_request("GET", object_path("dir/ünï code+%=~.txt")))
    assert ctx.presigned
    assert ctx.payload_hash == payload.UNSIGNED_PAYLOAD
    assert ctx.content_sha256 is None


def test_presigned_put_with_signed_header() -> None:
    signed = presigned_request("PUT", "/bucket/k", headers={"x-amz-meta-owner": "me", "Content-Type": "text/plain"})
    check(signed)
    assert error_of(with_header(signed, "x-amz-meta-owner", "you")).code == "SignatureDoesNotMatch"


def test_presigned_with_operation_query() -> None:
    check(presigned_request("PUT", "/bucket/k", query="partNumber=2&uploadId=a%2Bb%3D"))


def test_presigned_expiry() -> None:
    signed = presigned_request(expires=60)
    now = datetime.now(UTC)
    check(signed, now + timedelta(seconds=30))
    err = error_of(signed, now + timedelta(seconds=120))
    assert (err.code, err.message, err.status) == ("AccessDenied", "Request has expired", 403)
    assert err.fields["X-Amz-Expires"] == "60"
    # Long-lived URLs ignore the 15-minute skew rule: within their expiry they are good.
    check(presigned_request(expires=604800), now + timedelta(days=6))


def test_presigned_not_valid_yet() -> None:
    err = error_of(presigned_request(), datetime.now(UTC) - timedelta(hours=1))
    assert (err.code, err.message) == ("AccessDenied", "Request is not valid yet")


@pytest.mark.parametrize("expires", [0, 604801, 10**9])
def test_presigned_expires_out_of_range(expires: int) -> None:
    err = error_of(presigned_request(expires=expires))
    assert (err.code, err.status) == ("AuthorizationQueryParametersError", 400)


def replace_param(signed: Signed, name: str, value: str | None) -> Signed:
    method, path, query, headers = signed
    new = [(k, value if k == name else v) for k, v in query if not (k == name and value is None)]
    return method, path, new, headers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA512"),
        ("X-Amz-Credential", None),
        ("X-Amz-Credential", "K/20240101/us-east-1/ec2/aws4_request"),
        ("X-Amz-Date", None),
        ("X-Amz-Date", "2024-01-01"),
        ("X-Amz-Expires", "soon"),
        ("X-Amz-Expires", "--5"),
        ("X-Amz-SignedHeaders", None),
        ("X-Amz-Signature", ""),
    ],
)
def test_presigned_malformed(name: str, value: str | None) -> None:
    err = error_of(replace_param(presigned_request(), name, value))
    assert (err.code, err.status) == ("AuthorizationQueryParametersError", 400)


def test_presigned_errors() -> None:
    signed = presigned_request()
    sig = dict(signed[2])["X-Amz-Signature"]
    bad = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert error_of(replace_param(signed, "X-Amz-Signature", bad)).code == "SignatureDoesNotMatch"
    assert error_of(presigned_request(secret="wrong")).code == "SignatureDoesNotMatch"
    assert error_of(presigned_request(access_key="NOPE")).code == "InvalidAccessKeyId"
    method, path, query, headers = signed
    assert error_of((method, path + "x", query, headers)).code == "SignatureDoesNotMatch"
    assert error_of((method, path, [*query, ("versionId", "1")], headers)).code == "SignatureDoesNotMatch"
    assert error_of(with_header(signed, "x-amz-meta-extra", "1")).code == "AccessDenied"


def test_presigned_sigv2_is_refused() -> None:
    query = [("AWSAccessKeyId", ACCESS_KEY), ("Signature", "abc="), ("Expires", "9999999999")]
    err = error_of(("GET", "/bucket/k", query, CIMultiDictProxy(CIMultiDict(Host="h"))))
    assert err.code == "InvalidRequest"


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


# -- hostile input: always an S3Error, never a crash ---------------------------------------------------


def test_non_ascii_and_undecodable_input() -> None:
    signed = signed_request()
    auth = signed[3]["Authorization"]
    for region in ("régïon", "bad\udcffregion", "with space"):
        err = error_of(with_header(signed, "Authorization", auth.replace("/us-east-1/", f"/{region}/")))
        assert err.code == "AuthorizationHeaderMalformed"
    # aiohttp decodes raw header bytes with surrogateescape: such values must not blow up the encoder.
    err = error_of(with_header(signed, "host", "h\udcff"))
    assert err.code == "SignatureDoesNotMatch"
    for value in err.fields.values():
        value.encode("utf-8")  # echoed text stays encodable for the error document
    method, path, _, headers = signed
    with pytest.raises(S3Error):
        sigv4.verify(method, path + "\udcff%ff", [("k\udcff", "v\udcfe")], headers, lookup)


@settings(max_examples=300, deadline=None)
@given(authorization=st.text(max_size=300))
def test_fuzz_authorization_header(authorization: str) -> None:
    signed = with_header(signed_request_cached(), "Authorization", "AWS4-HMAC-SHA256 " + authorization)
    with pytest.raises(S3Error):
        check(signed)


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"]),
        st.text(max_size=60),
    )
)
def test_fuzz_presigned_params(params: dict[str, str]) -> None:
    method, path, query, headers = presigned_request_cached()
    fuzzed = [(k, params.get(k, v)) for k, v in query]
    try:
        sigv4.verify(method, path, fuzzed, headers, lookup)
    except S3Error:
        return
    assert fuzzed == query  # only the untouched URL may pass


_CACHE: dict[str, Signed] = {}


def signed_request_cached() -> Signed:
    return _CACHE.setdefault("header", signed_request())


def presigned_request_cached() -> Signed:
    return _CACHE.setdefault("presigned", presigned_request())


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
