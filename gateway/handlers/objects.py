"""Object operations: put, get, head, copy (deletes: gateway/handlers/deletes.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from cluster.service import exchange
from gateway.context import Gateway
from gateway.handlers import lifecycle, object_lock, quota, versions
from gateway.handlers.buckets import owned_bucket, xml_response
from gateway.objects.layer import StorageUnavailable
from gateway.objects.pipelines import ReadError
from gateway.s3 import checksums
from gateway.s3.body import Body, StreamBody, open_body, stream_source
from gateway.s3.errors import S3Error
from gateway.s3.notification_rules import events_for
from gateway.s3.request import (
    S3Request,
    check_conditions,
    content_md5,
    content_type,
    has_control,
    parse_range,
    part_number,
    refuse_unsupported,
    standard_headers,
    user_metadata,
)
from gateway.s3.tags import header_tags
from gateway.s3.xml import document, http_date, iso8601
from metadata.index import NoSuchBucket, PreconditionFailed
from metadata.records import (
    Condition,
    EventRecord,
    ObjectManifest,
    PartRecord,
    s3_version,
)

log = logging.getLogger(__name__)

MAX_PUT_SIZE = 5 << 30  # a single PUT (and a part) is at most 5 GiB, as in S3
_MARKER_SOURCE = "The source of a copy request may not specifically refer to a delete marker by version id."
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def put_condition(req: S3Request) -> Condition | None:
    if_match = req.headers.get("If-Match")
    if_none = req.headers.get("If-None-Match")
    if if_none is not None and if_none.strip() != "*":
        raise S3Error("NotImplemented", "If-None-Match on a write only supports '*'.")
    if if_match is None and if_none is None:
        return None
    return Condition(if_match=if_match.strip().strip('"') if if_match else None, if_none_match_star=if_none is not None)


def check_put_condition(cond: Condition | None, current: ObjectManifest | None) -> None:
    """Fail early, before any data is written; the index checks again atomically at commit."""
    if cond is None:
        return
    if cond.if_none_match_star and current is not None:
        raise S3Error("PreconditionFailed", Condition="If-None-Match")
    if cond.if_match is not None:
        if current is None:
            # If-Match: * asks only that there be an object; a named ETag on a missing key is S3's 404.
            raise S3Error("PreconditionFailed", Condition="If-Match") if cond.if_match == "*" else S3Error("NoSuchKey")
        if cond.if_match not in ("*", current.etag):
            raise S3Error("PreconditionFailed", Condition="If-Match")


async def write_part(gw: Gateway, body: Body | StreamBody, number: int) -> tuple[PartRecord, bytes]:
    """The object layer's write, with storage that cannot take the data answered as S3's 503."""
    try:
        return await gw.layer.write(body, number, body.hashers)
    except StorageUnavailable as exc:
        raise S3Error("ServiceUnavailable", str(exc), 503) from None


async def store_body(gw: Gateway, req: S3Request, body: Body, number: int) -> PartRecord:
    """Write a request body as a part; verify Content-MD5 and checksums; return its record."""
    want_md5 = content_md5(req.headers)
    part, md5 = await write_part(gw, body, number)
    try:
        if want_md5 is not None and want_md5 != md5:
            raise S3Error("BadDigest")
        part.checksums = body.verified_checksums()
    except BaseException:
        gw.layer.discard([part])
        raise
    return part


def checksum_response_headers(values: dict[str, str], kind: str = "") -> dict[str, str]:
    out = {checksums.header_name(algo): value for algo, value in values.items()}
    if values and kind:
        out["x-amz-checksum-type"] = kind
    return out


def single_part_manifest(
    req: S3Request, part: PartRecord, kind: str, headers: dict[str, str], meta: dict[str, str]
) -> ObjectManifest:
    """The manifest of an object written in one part (PUT, copy), owned by the requester."""
    return ObjectManifest(
        bucket=req.bucket,
        key=req.key,
        version_id=part.data_id,
        size=part.size,
        etag=part.etag,
        last_modified=part.last_modified,
        owner=req.access_key,
        acl=req.headers.get("x-amz-acl", ""),  # checked by handlers/actions.py
        parts=[part],
        content_type=kind,
        headers=headers,
        user_meta=meta,
        checksums=part.checksums,
        checksum_type="FULL_OBJECT" if part.checksums else "",
    )


async def commit(gw: Gateway, man: ObjectManifest, cond: Condition | None, events: Sequence[EventRecord] = ()) -> None:
    try:
        previous = await gw.index.put_object(man, cond, events)
    except PreconditionFailed:
        gw.layer.discard(man.parts)
        raise S3Error("PreconditionFailed") from None
    except NoSuchBucket:
        gw.layer.discard(man.parts)
        raise S3Error("NoSuchBucket", BucketName=man.bucket) from None
    gw.layer.committed(man)
    if previous is not None:
        gw.layer.discard(previous.parts)


async def put_object(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    if not req.key:
        raise S3Error("InvalidRequest", "A key is required.")
    refuse_unsupported(req.headers)
    cond = put_condition(req)
    locking = object_lock.new_version_lock(bucket, req, integrity=True)
    check_put_condition(cond, await gw.index.get_object(req.bucket, req.key) if cond else None)
    meta, headers, kind = user_metadata(req.headers), standard_headers(req.headers), content_type(req.headers)
    tags = header_tags(req.headers)
    body = await open_body(req, MAX_PUT_SIZE)
    await quota.check_put(gw, req.http, bucket, req.key, body.declared)
    part = await store_body(gw, req, body, 0)
    if body.declared is None:  # a size the headers did not declare: checked now, before the commit
        await quota.check_stored(gw, req.http, bucket, req.key, part)
    man = versions.stamp(single_part_manifest(req, part, kind, headers, meta), bucket)
    man.tags = tags
    object_lock.stamp_lock(man, locking, bucket)
    await commit(gw, man, cond, events_for(bucket, "ObjectCreated:Put", man.key, man, req.access_key))
    h = {"ETag": f'"{man.etag}"', **checksum_response_headers(man.checksums), **versions.version_header(man, bucket)}
    h.update(lifecycle.expiration_headers(gw, bucket, man))
    return web.Response(status=200, headers=h)


async def resolve_version(gw: Gateway, req: S3Request) -> ObjectManifest:
    """The object version a request names (?versionId=), once the requester may use its bucket.

    The one place that maps a versionId to a manifest (GET, HEAD, tagging, attributes): see
    versions.read_version (delete markers, the null version, ids of the wrong form).
    """
    return await versions.read_version(gw, req, await owned_bucket(gw, req))


def object_headers(man: ObjectManifest, req: S3Request) -> dict[str, str]:
    h = {
        "ETag": f'"{man.etag}"',
        "Last-Modified": http_date(man.last_modified),
        "Content-Type": man.content_type,
        "Accept-Ranges": "bytes",
        **man.headers,
        **{f"x-amz-meta-{k}": v for k, v in man.user_meta.items()},
    }
    if len(man.parts) > 1 or (man.parts and man.parts[0].number > 0):
        h["x-amz-mp-parts-count"] = str(len(man.parts))
    if man.tags:
        h["x-amz-tagging-count"] = str(len(man.tags))
    if man.s3_version_id or "versionId" in req.query:
        h["x-amz-version-id"] = s3_version(man)
    h.update(object_lock.lock_response_headers(man))
    for param, header in _RESPONSE_OVERRIDES.items():
        if param in req.query:
            value = req.query[param]
            if has_control(value):  # a CR or LF would end the header and start one of the client's choosing
                raise S3Error("InvalidArgument", f"Invalid value for {param}", ArgumentName=param, ArgumentValue=value)
            h[header] = value
    return h


def _part_range(man: ObjectManifest, req: S3Request) -> tuple[int, int] | None:
    """The byte range of ?partNumber=N, or None when not asked."""
    n = part_number(req.query)
    if n is None:
        return None
    start = 0
    for i, part in enumerate(man.parts):
        if part.number == n or (part.number == 0 and n == 1 and i == 0):
            return start, start + part.size - 1
        start += part.size
    raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable", 416)


def _selected_range(man: ObjectManifest, req: S3Request) -> tuple[int, int] | None:
    part = _part_range(man, req)
    if part is not None:
        if "Range" in req.headers:
            raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
        return part
    return parse_range(req.headers.get("Range"), man.size)


def _not_modified(req: S3Request, man: ObjectManifest) -> web.Response | None:
    """Check a read's conditions; a 304 carries the validators (ETag, Last-Modified), as RFC 9110 wants."""
    try:
        check_conditions(req.headers, man.etag, man.last_modified)
    except S3Error as err:
        if err.status != 304:
            raise
        return web.Response(
            status=304, headers={"ETag": f'"{man.etag}"', "Last-Modified": http_date(man.last_modified)}
        )
    return None


def _answer_head(req: S3Request, man: ObjectManifest) -> tuple[int, int, int, dict[str, str]]:
    """Status, byte range [start, end] and headers of a GET or HEAD of `man`."""
    h = object_headers(man, req)
    rng = _selected_range(man, req)
    if rng is None:
        start, end, status = 0, man.size - 1, 200
        if req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            h.update(checksum_response_headers(man.checksums, man.checksum_type))
    else:
        (start, end), status = rng, 206
        h["Content-Range"] = f"bytes {start}-{end}/{man.size}"
    return status, start, end, h


async def head_object(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    man = await versions.read_version(gw, req, bucket)
    if (not_modified := _not_modified(req, man)) is not None:
        return not_modified
    status, start, end, h = _answer_head(req, man)
    h.update(lifecycle.current_expiration(gw, req, bucket, man))
    h["Content-Length"] = str(end - start + 1)
    resp = web.StreamResponse(status=status, headers=h)
    resp.content_length = end - start + 1
    return resp


async def get_object(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    man = await versions.read_version(gw, req, bucket)
    if (not_modified := _not_modified(req, man)) is not None:
        return not_modified
    status, start, end, h = _answer_head(req, man)
    h.update(lifecycle.current_expiration(gw, req, bucket, man))
    if all(p.inline is not None for p in man.parts):
        # All in the manifest: one write of headers and body, none of the streaming machinery.
        data = b"".join(p.inline or b"" for p in man.parts)
        return web.Response(status=status, headers=h, body=data[start : end + 1])
    resp = web.StreamResponse(status=status, headers=h)
    resp.content_length = end - start + 1
    stream = gw.layer.stream(man, start, end)
    # Read the first piece before answering so that an unreadable object is a clean 503, not a cut body.
    first = await _first_piece(stream) if end >= start else b""
    await resp.prepare(req.http)
    if first:
        await resp.write(first)
        sent = len(first)
        try:
            async for piece in stream:
                await resp.write(piece)
                sent += len(piece)
        except ReadError as exc:
            _cut_short(req, sent, exc)
            return resp
    await resp.write_eof()
    return resp


def _cut_short(req: S3Request, sent: int, exc: ReadError) -> None:
    """The object became unreadable after its headers went out: the only honest signal left to the
    client is a connection closed short of Content-Length. Not a bug of ours (no traceback) and not an
    answer we could still give (no 500): the access log keeps the status sent, with the error named."""
    log.warning("GET %s cut short after %d bytes: %s", req.http.rel_url.raw_path, sent, exc)
    exchange(req.http).error = "ReadCutShort"
    if req.http.transport is not None:
        req.http.transport.close()


async def _first_piece(stream: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(stream, b"")
    except ReadError as exc:
        raise S3Error("ServiceUnavailable", f"Not enough fragments are readable: {exc}", 503) from None


def copy_source_version(value: str) -> str | None:
    """The versionId an x-amz-copy-source names, if any (checked)."""
    _, sep, query = value.partition("?")
    if not sep or not query.startswith("versionId="):
        return None
    version = unquote(query.removeprefix("versionId="))
    versions.check_version_id(version, "x-amz-copy-source")
    return version


def parse_copy_source(value: str) -> tuple[str, str]:
    src = unquote(value.split("?", 1)[0])
    bucket, _, key = src.lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=value,
        )
    return bucket, key


async def copy_source(gw: Gateway, req: S3Request) -> ObjectManifest:
    raw = req.headers["x-amz-copy-source"]
    bucket, key = parse_copy_source(raw)
    version = copy_source_version(raw)
    await gw.bucket(bucket)  # judged before the handler ran (handlers/actions.py): a GetObject of its own
    if version is None:
        man = await gw.index.get_object(bucket, key)
        if man is None:
            raise S3Error("NoSuchKey", Key=key)
    else:
        man = await gw.index.get_version(bucket, key, version)
        if man is None:
            raise S3Error("NoSuchVersion", Key=key, VersionId=version)
        if man.delete_marker:
            raise S3Error("InvalidRequest", _MARKER_SOURCE)
    check_conditions(req.headers, man.etag, man.last_modified, prefix="x-amz-copy-source-")
    return man


async def copy_object(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    refuse_unsupported(req.headers)
    src = await copy_source(gw, req)
    directive = req.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.", ArgumentName="x-amz-metadata-directive")
    if (src.bucket, src.key) == (req.bucket, req.key) and directive == "COPY":
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself without changing the "
            "object's metadata, storage class, website redirect location or encryption attributes.",
        )
    tagging = req.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tagging not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown tagging directive.", ArgumentName="x-amz-tagging-directive")
    tags = header_tags(req.headers) if tagging == "REPLACE" else dict(src.tags)
    cond = put_condition(req)
    locking = object_lock.new_version_lock(bucket, req)
    check_put_condition(cond, await gw.index.get_object(req.bucket, req.key) if cond else None)
    if directive == "REPLACE":
        kind, headers, meta = content_type(req.headers), standard_headers(req.headers), user_metadata(req.headers)
    else:
        kind, headers, meta = src.content_type, dict(src.headers), dict(src.user_meta)
    await quota.check_put(gw, req.http, bucket, req.key, src.size)
    algo = req.headers.get("x-amz-checksum-algorithm")
    algos = [checksums.normalize_algorithm(algo)] if algo else list(src.checksums)
    body = stream_source(gw.layer.stream(src, 0, src.size - 1) if src.size else None, algos)
    part, _ = await write_part(gw, body, 0)
    part.checksums = body.computed_checksums()
    now = time.time()
    part.last_modified = now
    man = versions.stamp(single_part_manifest(req, part, kind, headers, meta), bucket)
    man.tags = tags
    object_lock.stamp_lock(man, locking, bucket)
    await commit(gw, man, cond, events_for(bucket, "ObjectCreated:Copy", man.key, man, req.access_key))
    items: list[tuple[str, Any]] = [("LastModified", iso8601(now)), ("ETag", f'"{man.etag}"')]
    items += [(f"Checksum{a}", v) for a, v in man.checksums.items()]
    resp = xml_response(document("CopyObjectResult", items))
    resp.headers.update(versions.version_header(man, bucket))
    resp.headers.update(lifecycle.expiration_headers(gw, bucket, man))
    if src.s3_version_id or copy_source_version(req.headers["x-amz-copy-source"]) is not None:
        resp.headers["x-amz-copy-source-version-id"] = s3_version(src)
    return resp
