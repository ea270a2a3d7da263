"""gateway.s3.sigv4 and hostile input: always an S3Error, never a crash; fuzzed headers and URLs never pass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.s3 import sigv4
from gateway.s3.errors import S3Error
from tests.sigv4_helpers import Signed, check, error_of, lookup, presigned_request, signed_request, with_header


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
