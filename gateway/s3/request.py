"""What an S3 request names and asks for: bucket, key, metadata headers, conditions, ranges."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy

from gateway.s3.errors import S3Error
from gateway.s3.numbers import decimal, position
from gateway.s3.payload import AuthContext

MAX_KEY_BYTES = 1024
MAX_USER_META = 2048  # bytes of x-amz-meta-* names and values together, as S3
STANDARD_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
# Reserved by S3 for its own naming schemes (punycode, access point aliases, directory buckets, ...).
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@dataclass(slots=True)
class S3Request:
    http: web.Request
    request_id: str
    bucket: str
    key: str
    access_key: str = ""
    query: MultiDictProxy[str] = field(default_factory=lambda: MultiDictProxy(MultiDict()))
    auth: AuthContext | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.http.headers

    @property
    def resource(self) -> str:
        return "/" + self.bucket + ("/" + self.key if self.key else "")


def check_bucket_name(name: str) -> None:
    if (
        not _BUCKET_RE.match(name)
        or ".." in name
        or _IP_RE.match(name)
        or ".-" in name
        or "-." in name
        or name.startswith(_RESERVED_PREFIXES)
        or name.endswith(_RESERVED_SUFFIXES)
    ):
        raise S3Error("InvalidBucketName", BucketName=name)


def split_path(raw_path: str, host_bucket: str | None) -> tuple[str, str]:
    """(bucket, key) from the raw request path; keys keep every character, '+' included."""
    try:
        path = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", 400) from None
    if host_bucket is not None:
        bucket, key = host_bucket, path[1:]
    else:
        bucket, _, key = path[1:].partition("/")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError")
    return bucket, key


MAX_PARTS = 10000
MAX_INT32 = 2147483647  # the largest max-keys (and other count) S3 takes before it answers "not an integer"


def int_param(query: MultiDictProxy[str], name: str, default: int, low: int = 0, high: int = MAX_INT32) -> int:
    """A numeric query parameter (max-keys, max-parts, part-number-marker, ...): its default when absent,
    InvalidArgument unless it is a plain decimal in [low, high]."""
    raw = query.get(name)
    if raw is None:
        return default
    value = decimal(raw, low, high)
    if value is None:
        raise S3Error(
            "InvalidArgument",
            f"Argument {name} must be an integer between {low} and {high}",
            ArgumentName=name,
            ArgumentValue=raw,
        )
    return value


def part_number(query: MultiDictProxy[str]) -> int | None:
    """?partNumber=N (1-10000), None when absent."""
    raw = query.get("partNumber")
    if raw is None:
        return None
    number = decimal(raw, 1, MAX_PARTS)
    if number is None:
        raise S3Error(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=raw,
        )
    return number


def encode_token(marker: str) -> str:
    """An opaque continuation token for a listing that resumes after `marker`."""
    return base64.urlsafe_b64encode(marker.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise S3Error(
            "InvalidArgument", "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None


def canonical_id(access_key: str) -> str:
    """S3 names owners by a 64-hex canonical id; ours is derived from the access key."""
    return hashlib.sha256(b"tessera-owner:" + access_key.encode()).hexdigest()


def _kept(name: str, value: str) -> str:
    """A header value the object keeps and answers again: text, not bytes that are not UTF-8 (aiohttp hands
    those over as surrogates, which neither the index nor a response header can carry)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise S3Error(
                "InvalidArgument", f"The value of the {name} header is not valid UTF-8.", ArgumentName=name
            ) from None
    return value


def content_type(headers: CIMultiDictProxy[str]) -> str:
    return _kept("Content-Type", headers.get("Content-Type") or "binary/octet-stream")


def user_metadata(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith("x-amz-meta-"):
            key = low[len("x-amz-meta-") :]
            _kept(name, value)
            meta[key] = f"{meta[key]},{value}" if key in meta else value
    if sum(len(k) + len(v.encode()) for k, v in meta.items()) > MAX_USER_META:
        raise S3Error("MetadataTooLarge")
    return meta


def standard_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in STANDARD_HEADERS:
        value = headers.get(name)
        if name == "Content-Encoding" and value is not None and "aws-chunked" in value:
            # aws-chunked describes the transfer, not the object; any other value is kept exactly as sent
            value = ",".join(v.strip() for v in value.split(",") if v.strip() and v.strip() != "aws-chunked")
        if value:
            out[name] = _kept(name, value)
    return out


# Write headers asking for what we do not have (encryption): refused, as MinIO does
# without a KMS, rather than acknowledged and silently dropped.
_UNSUPPORTED_WRITE_HEADERS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-aws-kms-key-id",
)


_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # C0 controls but TAB, and DEL


def has_control(value: str) -> bool:
    return _CONTROL_RE.search(value) is not None


def header_safe(value: str) -> str:
    """A stored value made fit for a response header: a CR or LF would end the header (aiohttp then refuses
    to send the response at all), so control characters become spaces."""
    return _CONTROL_RE.sub(" ", value) if has_control(value) else value


def refuse_unsupported(headers: CIMultiDictProxy[str]) -> None:
    for name in _UNSUPPORTED_WRITE_HEADERS:
        if name in headers:
            raise S3Error("NotImplemented", f"The {name} header is not implemented.")


def content_md5(headers: CIMultiDictProxy[str]) -> bytes | None:
    value = headers.get("Content-MD5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest") from None
    if len(digest) != 16:
        raise S3Error("InvalidDigest")
    return digest


def _http_time(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None  # S3 ignores a date it cannot parse


def _etags(value: str) -> list[str]:
    return [v.strip().removeprefix("W/").strip('"') for v in value.split(",")]


def check_conditions(headers: CIMultiDictProxy[str], etag: str, last_modified: float, prefix: str = "") -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since against an object's ETag and time, as RFC 7232 orders them.

    With prefix "x-amz-copy-source-" the same rules guard a copy's source (failures are 412 there).
    """
    mtime = int(last_modified)
    if_match = headers.get(prefix + "If-Match")
    if if_match is not None:
        tags = _etags(if_match)
        if "*" not in tags and etag not in tags:
            raise S3Error("PreconditionFailed", Condition=prefix + "If-Match")
    else:
        since = headers.get(prefix + "If-Unmodified-Since")
        t = _http_time(since) if since else None
        if t is not None and mtime > t:
            raise S3Error("PreconditionFailed", Condition=prefix + "If-Unmodified-Since")
    if_none = headers.get(prefix + "If-None-Match")
    not_modified = "PreconditionFailed" if prefix else "NotModified"
    if if_none is not None:
        tags = _etags(if_none)
        if "*" in tags or etag in tags:
            raise S3Error(not_modified, Condition=prefix + "If-None-Match")
    else:
        since = headers.get(prefix + "If-Modified-Since")
        t = _http_time(since) if since else None
        if t is not None and mtime <= t:
            raise S3Error(not_modified, Condition=prefix + "If-Modified-Since")


_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # ASCII digits only: \d takes any script's digits


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """An inclusive (start, end) for one byte range; None for the whole object.

    Syntax S3 does not act on (several ranges, garbage) means the whole object, as RFC 9110
    allows; a well-formed range that selects nothing is InvalidRange. Numbers too long to be
    positions count as past any end (numbers.position), never as an error of ours.
    """
    if value is None:
        return None
    m = _RANGE_RE.fullmatch(value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = position(first)
        end = position(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=value)
        return start, min(end, size - 1)
    suffix = position(last)
    if suffix == 0 or size == 0:
        raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=value)
    return max(0, size - suffix), size - 1
