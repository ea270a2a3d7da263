"""gateway.s3.sigv4 and presigned URLs: accepted, expired, not yet valid, malformed or tampered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.s3 import payload
from tests.sigv4_helpers import ACCESS_KEY, Signed, check, error_of, object_path, presigned_request, with_header


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
