"""gateway.s3.sigv4 refuses bad header auth with the S3 error AWS gives: unknown keys, wrong secrets,
tampering, clock skew, malformed Authorization, credential scope, dates and unsigned headers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.s3 import payload, sigv4
from gateway.s3.errors import S3Error
from tests.sigv4_helpers import ACCESS_KEY, check, error_of, lookup, presigned_request, signed_request, with_header


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
