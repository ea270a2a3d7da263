"""Shared by the test_sigv4* modules: requests signed (or presigned) by botocore itself, as the gateway
receives them, and gateway.s3.sigv4.verify run on them.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.s3 import payload, sigv4
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
