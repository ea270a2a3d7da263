"""POST object: a browser's multipart/form-data upload, authenticated by the signed POST policy in the form
(gateway/s3/post_policy.py), its file field streamed to the erasure-coded writer."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import BodyPartReader, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.accounts.authorize import AccessDenied, authorize
from gateway.context import Gateway
from gateway.handlers import access
from gateway.handlers.objects import MAX_PUT_SIZE, checksum_response_headers, commit, single_part_manifest, write_part
from gateway.s3 import checksums, post_policy
from gateway.s3.errors import S3Error
from gateway.s3.request import (
    MAX_KEY_BYTES,
    STANDARD_HEADERS,
    S3Request,
    content_type,
    has_control,
    header_safe,
    refuse_unsupported,
    standard_headers,
    user_metadata,
)
from gateway.s3.xml import document

MAX_FIELDS = 64 << 10  # bytes of the fields before the file: a policy of many conditions fits
_PART_OVERHEAD = 64  # what a field's boundary and headers count against MAX_FIELDS, about
FILE_CHUNK = 256 << 10  # read from the file part at a time: memory per upload stays a few segments
_DISCONNECTS = (aiohttp.ClientPayloadError, ConnectionError, asyncio.IncompleteReadError, EOFError)
_KEPT = frozenset({"content-type", *(h.lower() for h in STANDARD_HEADERS)})
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # an HTTP header name (field names are lowercased)
_ACLS_OWNER_ONLY = ("private", "bucket-owner-full-control")  # what every object here already is
_ACLS_OTHER = ("public-read", "public-read-write", "authenticated-read", "bucket-owner-read", "aws-exec-read")


def _malformed() -> S3Error:
    return S3Error("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.", 400)


class _FormFile:
    """The form's file part as a BodySource, refused as soon as it passes `limit` bytes."""

    def __init__(self, part: BodyPartReader, limit: int, hashers: list[checksums.Checksum]) -> None:
        self._part = part
        self._limit = limit
        self.hashers = hashers
        self.received = 0

    async def read(self) -> bytes:
        try:
            piece = await self._part.read_chunk(FILE_CHUNK)
        except _DISCONNECTS:
            raise S3Error("IncompleteBody") from None
        except Exception:  # aiohttp raises ValueError, AssertionError... for a part that does not end well
            raise _malformed() from None
        self.received += len(piece)
        if self.received > self._limit:
            raise S3Error(
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=str(self.received),
                MaxSizeAllowed=str(self._limit),
            )
        return piece


def _fields_too_large() -> S3Error:
    return S3Error(
        "MaxPostPreDataLengthExceeded", "Your POST request fields preceeding the upload file was too large.", 400
    )


async def _field(part: BodyPartReader, budget: int) -> bytes:
    value = bytearray()
    while chunk := await part.read_chunk(8192):
        value += chunk
        if len(value) > budget:
            raise _fields_too_large()
    return bytes(value)


async def read_fields(request: web.Request) -> tuple[dict[str, str], BodyPartReader | None]:
    """The fields before the file (lowercase names; the first of a repeated name) and the file part, unread.
    Fields after the file are never read, as S3 ignores them."""
    fields: dict[str, str] = {}
    budget = MAX_FIELDS
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _malformed()  # a nested multipart
            name = (part.name or "").lower()
            if name == "file":
                return fields, part
            raw = await _field(part, budget)
            budget -= len(raw) + len(name) + _PART_OVERHEAD  # so that many empty fields cannot go on forever
            if budget < 0:
                raise _fields_too_large()
            fields.setdefault(name, raw.decode("utf-8"))
    except S3Error:
        raise
    except _DISCONNECTS:
        raise S3Error("IncompleteBody") from None
    except Exception:  # no boundary, a broken part, a field that is not UTF-8 ...
        raise _malformed() from None
    return fields, None


def _object_headers(fields: dict[str, str]) -> CIMultiDictProxy[str]:
    """The fields an object keeps (Content-Type, x-amz-meta-*, ...) as the request headers of a PUT. A form
    can say what a header cannot (a CR or LF in a value, a space in a name): refused, as GET answers them."""
    for name, value in fields.items():
        if name.startswith("x-amz-meta-") or name in _KEPT:
            if has_control(value) or (name.startswith("x-amz-meta-") and not _TOKEN_RE.fullmatch(name)):
                raise S3Error("InvalidArgument", f"The {name} field is not valid.", ArgumentName=name)
    headers = CIMultiDictProxy(CIMultiDict(fields))
    refuse_unsupported(headers)
    return headers


def _check_acl(fields: dict[str, str]) -> None:
    acl = fields.get("acl")
    if acl is None or acl in _ACLS_OWNER_ONLY:
        return
    if acl in _ACLS_OTHER:
        raise S3Error("NotImplemented", f"The canned ACL {acl} is not implemented.")
    raise S3Error("InvalidArgument", None, ArgumentName="x-amz-acl", ArgumentValue=acl)


def _announced(fields: dict[str, str]) -> dict[str, str]:
    found = checksums.checksum_headers(fields)
    if len(found) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- field.")
    for algo, name in found.items():
        checksums.decode_b64(algo, fields[name])
    return {algo: fields[name].strip() for algo, name in found.items()}


def _stored_key(fields: dict[str, str], filename: str) -> str:
    if "key" not in fields:
        raise post_policy.missing("key")
    key = fields["key"].replace("${filename}", filename)
    if not key:
        raise S3Error("InvalidArgument", "User key must have a length greater than 0.", ArgumentName="key")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a file name that was not UTF-8
        raise S3Error("InvalidArgument", "The key is not valid UTF-8.", ArgumentName="key") from None
    if size > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError")
    return key


async def _judge(gw: Gateway, req: S3Request, access_key: str, key: str) -> None:
    """s3:PutObject on bucket/key for the form's signer ("" anonymous), judged as the judging step judges a
    PUT (app.py leaves forms to this handler: their credentials are in the body)."""
    who = gw.users.principal(access_key)
    try:
        await authorize(gw, who, "s3:PutObject", req.bucket, key, access.context(req, who), access.judged_bucket(req))
    except AccessDenied:
        raise S3Error("AccessDenied") from None


async def post_object(gw: Gateway, req: S3Request) -> web.StreamResponse:
    """POST /bucket with a form: signature, policy and access judged before a byte is stored."""
    if req.key:
        raise S3Error("MethodNotAllowed")
    fields, file_part = await read_fields(req.http)
    access_key = ""  # an unsigned form is anonymous: allowed where a bucket policy lets anyone s3:PutObject
    if post_policy.is_signed(fields):
        claimed = post_policy.claimed_access_key(fields)
        if claimed and not gw.users.known(claimed):
            await gw.users.ensure(claimed)  # a user created through another gateway a moment ago
        access_key = post_policy.verify_form(fields, gw.users.secret)
    if file_part is None:
        raise S3Error("InvalidArgument", "POST requires exactly one file upload per request.", ArgumentName="file")
    key = _stored_key(fields, file_part.filename or "")
    await _judge(gw, req, access_key, key)  # the form's signer (or nobody) writes as a PUT would
    policy = post_policy.decode_policy(fields["policy"]) if access_key else None  # an unsigned form has none
    if policy is not None:
        post_policy.check_policy(policy, {**fields, "bucket": req.bucket, "key": key})
    _check_acl(fields)
    headers = _object_headers(fields)
    meta, kept, kind = user_metadata(headers), standard_headers(headers), content_type(headers)
    expected = _announced(fields)
    low, high = (policy.length_range if policy else None) or (0, MAX_PUT_SIZE)
    body = _FormFile(file_part, min(high, MAX_PUT_SIZE), [checksums.Checksum(a) for a in expected])
    part, _ = await write_part(gw, body, 0)
    try:
        if part.size < low:
            raise S3Error(
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=str(part.size),
                MinSizeAllowed=str(low),
            )
        part.checksums = {h.algorithm: h.b64() for h in body.hashers}
        for algo, want in expected.items():
            if part.checksums[algo] != want:
                raise S3Error("BadDigest", f"The {checksums.header_name(algo)} you specified did not match.")
    except BaseException:
        gw.layer.discard([part])
        raise
    req.key, req.access_key = key, access_key
    man = single_part_manifest(req, part, kind, kept, meta)
    await commit(gw, man, None)
    return _answer(req, fields, man.etag, checksum_response_headers(man.checksums))


def _answer(req: S3Request, fields: dict[str, str], etag_hex: str, extra: dict[str, str]) -> web.Response:
    """What success_action_redirect or success_action_status ask for (204 by default, as S3)."""
    etag = f'"{etag_hex}"'
    http = req.http
    location = f"{http.scheme}://{header_safe(http.host)}{http.rel_url.raw_path.rstrip('/')}/{quote(req.key)}"
    headers = {"ETag": etag, "Location": location, **extra}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and not has_control(redirect):
        try:
            target = URL(redirect)
        except ValueError:
            target = None
        if target is not None and target.scheme in ("http", "https") and target.host:
            query = urlencode({"bucket": req.bucket, "key": req.key, "etag": etag})
            sep = "&" if target.query_string else "?"
            return web.Response(status=303, headers={**headers, "Location": f"{redirect}{sep}{query}"})
    status = fields.get("success_action_status")
    if status == "201":
        items = [("Location", location), ("Bucket", req.bucket), ("Key", req.key), ("ETag", etag)]
        body = document("PostResponse", items, namespace=False)
        return web.Response(status=201, body=body, content_type="application/xml", headers=headers)
    return web.Response(status=200 if status == "200" else 204, headers=headers)
