"""AWS Signature Version 4 verification, the way S3 does it.

Two ways to carry a signature: the Authorization header, and presigned URLs (X-Amz-* query parameters).
S3 differs from other services in that the request path is not normalized or double-encoded: the canonical
URI is the path as the client sent it, each byte outside A-Za-z0-9-_.~/ percent-encoded. The payload hash
comes from x-amz-content-sha256 (a hex SHA-256 the gateway checks while streaming the body with
payload.PayloadHashVerifier, UNSIGNED-PAYLOAD, or one of the STREAMING-* values that aws_chunked decodes).
The arithmetic shared with our clients' signer (canonical request, signing key) is in canonical.py.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from gateway.s3.canonical import (
    ALGORITHM,
    SERVICE,
    TERMINATOR,
    canonical_query,
    canonical_request,
    canonical_uri,
    derive_signing_key,
    sign,
    string_to_sign,
)
from gateway.s3.errors import S3Error
from gateway.s3.payload import STREAMING_PAYLOADS, UNSIGNED_PAYLOAD, AuthContext

MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGNED_EXPIRES = 604800  # one week, as S3

_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_DATE_RE = re.compile(r"[0-9]{8}")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_INT_RE = re.compile(r"-?[0-9]{1,12}")
_SCOPE_PART_RE = re.compile(r"[!-~]{1,128}")  # access key, region: printable ASCII, no spaces

_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)

_UNSUPPORTED_MECHANISM = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The decoded (name, value) pairs verify() wants, from a raw query string (aiohttp:
    request.rel_url.raw_query_string; not request.query_string, which yarl has already partly decoded).
    Undecodable %XX bytes survive as surrogates, so canonical_query() re-encodes them byte-exact."""
    return parse_qsl(raw_query, keep_blank_values=True, errors="surrogateescape")


def verify(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    lookup_secret: Callable[[str], str | None],
    now: datetime | None = None,
) -> AuthContext:
    """Authenticate a request signed with SigV4 (header or presigned URL), or raise the S3Error AWS would.

    `raw_path` is the path exactly as sent (percent-encoding intact, no query); `query` the decoded
    (name, value) pairs in their original order; `headers` case-insensitive (CIMultiDictProxy or similar;
    a plain dict is accepted too). The body is not read: see AuthContext.content_sha256 / .streaming.
    """
    if not hasattr(headers, "getall"):
        headers = CIMultiDict(headers)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)

    names = {key for key, _ in query}
    authorization = headers.get("authorization")
    presigned_v4 = "X-Amz-Algorithm" in names or "X-Amz-Signature" in names
    presigned_v2 = "AWSAccessKeyId" in names and "Signature" in names
    if authorization is not None and (presigned_v4 or presigned_v2):
        raise S3Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
            "string parameter or the Authorization header should be specified",
            ArgumentName="Authorization",
            ArgumentValue=_echo(authorization),
        )
    if authorization is not None:
        return _verify_header(method, raw_path, query, headers, authorization, lookup_secret, now)
    if presigned_v4:
        return _verify_presigned(method, raw_path, query, headers, lookup_secret, now)
    if presigned_v2:
        raise S3Error("InvalidRequest", _UNSUPPORTED_MECHANISM)
    raise S3Error("AccessDenied")


# -- header auth ------------------------------------------------------------------------------------


def _malformed(detail: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}")


def _verify_header(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: CIMultiDict[str],
    authorization: str,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
) -> AuthContext:
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme != ALGORITHM:
        if scheme == "AWS" or scheme.startswith("AWS4-"):
            raise S3Error("InvalidRequest", _UNSUPPORTED_MECHANISM)
        raise S3Error(
            "InvalidArgument",
            "Unsupported Authorization Type",
            ArgumentName="Authorization",
            ArgumentValue=_echo(scheme),
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if sep and key in ("Credential", "SignedHeaders", "Signature") and key not in parts:
            parts[key] = value.strip()
    if len(parts) != 3 or not all(parts.values()):
        raise _malformed(
            "the authorization header requires three components: Credential, SignedHeaders, and Signature."
        )

    access_key, date, region = _parse_credential(parts["Credential"], _malformed)
    signed_headers = _parse_signed_headers(parts["SignedHeaders"], _malformed)
    signature = parts["Signature"]

    amz_date, request_time = _request_time(headers)
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    if abs(request_time - now) > MAX_SKEW:
        raise S3Error(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            RequestTime=amz_date,
            ServerTime=_iso(now),
            MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)),
        )
    if date != amz_date[:8]:
        raise _malformed(
            f'Invalid credential date "{date}". This date is not the same as X-Amz-Date: "{amz_date[:8]}".'
        )

    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    payload_hash = _check_payload_hash(payload_hash)
    _check_all_signed(headers, signed_headers)

    return _check_signature(
        method,
        raw_path,
        canonical_query(query),
        headers,
        signed_headers,
        payload_hash,
        access_key=access_key,
        secret=secret,
        date=date,
        region=region,
        amz_date=amz_date,
        signature=signature,
        presigned=False,
    )


def _request_time(headers: CIMultiDict[str]) -> tuple[str, datetime]:
    """The signed timestamp: X-Amz-Date, or else Date (RFC 1123), as ISO 8601 basic and as a datetime."""
    value = headers.get("x-amz-date")
    try:
        if value is not None:
            value = value.strip()
            if _AMZ_DATE_RE.fullmatch(value):
                return value, _parse_amz_date(value)
        elif (http_date := headers.get("date")) is not None:
            parsed = parsedate_to_datetime(http_date)
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
            return parsed.strftime("%Y%m%dT%H%M%SZ"), parsed
    except (ValueError, TypeError, IndexError):
        pass
    raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")


# -- presigned URLs ---------------------------------------------------------------------------------


def _query_error(detail: str) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", detail)


def _credential_query_error(detail: str) -> S3Error:
    return _query_error(f"Error parsing the X-Amz-Credential parameter; {detail}")


def _verify_presigned(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: CIMultiDict[str],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
) -> AuthContext:
    params: dict[str, str] = {}
    for key, value in query:
        if key.startswith("X-Amz-"):
            params.setdefault(key, value)
    if not all(params.get(name) for name in _PRESIGN_PARAMS):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    access_key, date, region = _parse_credential(params["X-Amz-Credential"], _credential_query_error)
    amz_date = params["X-Amz-Date"]
    if not _AMZ_DATE_RE.fullmatch(amz_date):
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    try:
        request_time = _parse_amz_date(amz_date)
    except ValueError:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"") from None
    expires_text = params["X-Amz-Expires"]
    if not _INT_RE.fullmatch(expires_text):
        raise _query_error("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires < 0:  # S3 judges a URL that expired before it was signed as expired, not as malformed
        raise S3Error("AccessDenied", "X-Amz-Expires must be non-negative")
    if expires < 1:
        raise _query_error("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise _query_error(f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}")
    signed_headers = _parse_signed_headers(
        params["X-Amz-SignedHeaders"], lambda detail: _query_error(f"Error parsing X-Amz-SignedHeaders; {detail}")
    )
    if date != amz_date[:8]:
        raise _query_error(
            f'Invalid credential date "{date}". This date is not the same as X-Amz-Date: "{amz_date[:8]}".'
        )

    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    if request_time - now > MAX_SKEW:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > request_time + timedelta(seconds=expires):
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            **{"X-Amz-Expires": str(expires)},
            Expires=_iso(request_time + timedelta(seconds=expires)),
            ServerTime=_iso(now),
        )
    _check_all_signed(headers, signed_headers)

    # Presigned URLs are UNSIGNED-PAYLOAD unless the signer fixed the hash in the query (or in a signed
    # header, as botocore does when the request carried one).
    payload_hash = params.get("X-Amz-Content-Sha256")
    if payload_hash is None and "x-amz-content-sha256" in signed_headers:
        payload_hash = headers.get("x-amz-content-sha256")
    payload_hash = _check_payload_hash(payload_hash or UNSIGNED_PAYLOAD)

    return _check_signature(
        method,
        raw_path,
        canonical_query(query, exclude="X-Amz-Signature"),
        headers,
        signed_headers,
        payload_hash,
        access_key=access_key,
        secret=secret,
        date=date,
        region=region,
        amz_date=amz_date,
        signature=params["X-Amz-Signature"],
        presigned=True,
    )


# -- shared -----------------------------------------------------------------------------------------


def _check_payload_hash(value: str) -> str:
    value = value.strip()
    if value not in (UNSIGNED_PAYLOAD, *STREAMING_PAYLOADS) and not _HEX64_RE.fullmatch(value):
        raise S3Error(
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
            "or a valid sha256 value.",
            ArgumentName="x-amz-content-sha256",
            ArgumentValue=_echo(value),
        )
    return value


def _echo(value: str) -> str:
    """Client text put back in an error document: lone surrogates (undecodable bytes) escaped."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _parse_credential(credential: str, error: Callable[[str], S3Error]) -> tuple[str, str, str]:
    parts = credential.split("/")
    if (
        len(parts) != 5
        or not _SCOPE_PART_RE.fullmatch(parts[0])
        or not _DATE_RE.fullmatch(parts[1])
        or not _SCOPE_PART_RE.fullmatch(parts[2])
    ):
        raise error('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    access_key, date, region, service, terminator = parts
    if service != SERVICE:
        raise error(f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    if terminator != TERMINATOR:
        raise error(f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
    return access_key, date, region


def _parse_signed_headers(value: str, error: Callable[[str], S3Error]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not all(names) or any(name != name.strip().lower() for name in names):
        raise error("SignedHeaders must be a ';'-separated list of lowercase header names.")
    return names


def _check_all_signed(headers: CIMultiDict[str], signed_headers: Sequence[str]) -> None:
    """S3 refuses requests whose Host or x-amz-* headers are not covered by the signature."""
    signed = set(signed_headers)
    missing = sorted(
        {
            lname
            for name in headers
            if ((lname := name.lower()) == "host" or lname.startswith("x-amz-")) and lname not in signed
        }
    )
    if missing:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(missing),
        )


def _check_signature(
    method: str,
    raw_path: str,
    query: str,
    headers: CIMultiDict[str],
    signed_headers: tuple[str, ...],
    payload_hash: str,
    *,
    access_key: str,
    secret: str,
    date: str,
    region: str,
    amz_date: str,
    signature: str,
    presigned: bool,
) -> AuthContext:
    scope = f"{date}/{region}/{SERVICE}/{TERMINATOR}"
    signing_key = derive_signing_key(secret, date, region)
    provided = signature.strip()
    uri = canonical_uri(raw_path)
    canonical = canonical_request(method, uri, query, headers, signed_headers, payload_hash)
    to_sign = string_to_sign(amz_date, scope, canonical)
    ok = _SIGNATURE_RE.fullmatch(provided) is not None and hmac.compare_digest(sign(signing_key, to_sign), provided)
    if not ok and raw_path and uri != raw_path and _SIGNATURE_RE.fullmatch(provided):
        # A client that signed the path exactly as it sent it, with a different (still valid) encoding
        # choice than S3's (say '%7E' for '~', or '!' unencoded), signed the same resource: accept it.
        alt = string_to_sign(
            amz_date, scope, canonical_request(method, raw_path, query, headers, signed_headers, payload_hash)
        )
        ok = hmac.compare_digest(sign(signing_key, alt), provided)
    if not ok:
        raise S3Error(
            "SignatureDoesNotMatch",
            AWSAccessKeyId=access_key,
            StringToSign=_echo(to_sign),
            SignatureProvided=_echo(provided),
            CanonicalRequest=_echo(canonical),
        )
    return AuthContext(
        access_key=access_key,
        region=region,
        date=date,
        amz_date=amz_date,
        scope=scope,
        signing_key=signing_key,
        seed_signature=provided,
        payload_hash=payload_hash,
        presigned=presigned,
        signed_headers=signed_headers,
    )


def _parse_amz_date(value: str) -> datetime:
    """YYYYMMDDTHHMMSSZ (already matched by _AMZ_DATE_RE) -> aware datetime; ValueError if out of range.
    By hand: strptime costs a third of a whole verification."""
    return datetime(
        int(value[0:4]),
        int(value[4:6]),
        int(value[6:8]),
        int(value[9:11]),
        int(value[11:13]),
        int(value[13:15]),
        tzinfo=UTC,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_MAX_ACCESS_KEY = 128  # longer claims are not worth an index read: verify() rejects them anyway


def claimed_access_key(authorization: str | None, query: list[tuple[str, str]]) -> str:
    """The access key a request says it is signed with, or "" (verify() judges the claim and its form)."""
    claimed = ""
    if authorization is not None:
        _, found, rest = authorization.partition("Credential=")
        if found:
            claimed = rest.split("/", 1)[0].strip()
    else:
        for name, value in query:
            if name == "X-Amz-Credential":
                claimed = value.split("/", 1)[0]
                break
            if name == "AWSAccessKeyId":
                claimed = value
                break
    return claimed if len(claimed) <= _MAX_ACCESS_KEY and "," not in claimed else ""
