"""Signature Version 2 in presigned URLs (AWSAccessKeyId, Expires, Signature).

aws-cli's `s3 presign` and boto3's default `generate_presigned_url` still produce these URLs,
so a store that users reach with those tools has to accept them. Header-signed SigV2 requests
are not accepted: every current SDK signs headers with SigV4.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence

from gateway.s3.errors import S3Error
from gateway.s3.numbers import decimal
from gateway.s3.payload import UNSIGNED_PAYLOAD, AuthContext

# Query parameters that are part of the signed resource (S3's list of sub-resources).
_SUBRESOURCES = frozenset(
    "accelerate acl analytics cors defaultObjectAcl delete inventory lifecycle location logging metrics "
    "notification object-lock partNumber policy replication requestPayment response-cache-control "
    "response-content-disposition response-content-encoding response-content-language response-content-type "
    "response-expires restore select select-type storageClass tagging torrent uploadId uploads versionId "
    "versioning versions website".split()
)


def is_presigned_v2(query: Sequence[tuple[str, str]]) -> bool:
    names = {k for k, _ in query}
    return "Signature" in names and "AWSAccessKeyId" in names


def verify_presigned(  # resource_path: /bucket/key as sent, with the bucket even when virtual-hosted
    method: str,
    resource_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    lookup_secret: Callable[[str], str | None],
    now: float | None = None,
) -> AuthContext:
    params = dict(query)
    access_key, signature, expires = params["AWSAccessKeyId"], params["Signature"], params.get("Expires", "")
    expires_at = decimal(expires)
    if expires_at is None:
        raise S3Error(
            "AccessDenied", "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
        )
    if expires_at < (time.time() if now is None else now):
        raise S3Error("AccessDenied", "Request has expired", Expires=expires)
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    expected = base64.b64encode(
        hmac.new(secret.encode(), string_to_sign(method, resource_path, query, headers).encode(), hashlib.sha1).digest()
    ).decode()
    if not hmac.compare_digest(expected, signature):
        raise S3Error("SignatureDoesNotMatch", SignatureProvided=signature)
    return AuthContext(
        access_key=access_key,
        region="",
        date="",
        amz_date="",
        scope="",
        signing_key=b"",
        seed_signature=signature,
        payload_hash=UNSIGNED_PAYLOAD,
        presigned=True,
    )


def string_to_sign(method: str, raw_path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> str:
    params = dict(query)
    lower = {k.lower(): v for k, v in headers.items()}

    def standard(name: str) -> str:
        return params.get(name, lower.get(name, "")).strip()

    amz: dict[str, str] = {}
    for name, value in [*lower.items(), *((k.lower(), v) for k, v in query)]:
        if name.startswith("x-amz-"):
            amz[name] = value.strip()
    custom = "".join(f"{k}:{amz[k]}\n" for k in sorted(amz))
    return f"{method}\n{standard('content-md5')}\n{standard('content-type')}\n{params['Expires']}\n{custom}" + (
        _resource(raw_path, query)
    )


def _resource(raw_path: str, query: Sequence[tuple[str, str]]) -> str:
    subs = sorted((k, v) for k, v in query if k in _SUBRESOURCES)
    if not subs:
        return raw_path
    return raw_path + "?" + "&".join(f"{k}={v}" if v else k for k, v in subs)
