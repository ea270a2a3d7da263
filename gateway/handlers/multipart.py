"""Multipart uploads: create, upload part (and part copy), complete, abort, list parts."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Any

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers import lifecycle, object_lock, quota, versions
from gateway.handlers.buckets import owned_bucket, owner_items, read_small_body, xml_response
from gateway.handlers.listing import encoder, url_encoding
from gateway.handlers.objects import (
    MAX_PUT_SIZE,
    check_put_condition,
    checksum_response_headers,
    copy_source,
    put_condition,
    store_body,
    write_part,
)
from gateway.objects.layer import new_id
from gateway.s3 import checksums
from gateway.s3.body import open_body, stream_source
from gateway.s3.errors import S3Error
from gateway.s3.notification_rules import events_for
from gateway.s3.numbers import MAX_VALUE, decimal, position
from gateway.s3.object_lock import LockRequest
from gateway.s3.request import (
    MAX_PARTS,
    S3Request,
    content_type,
    int_param,
    part_number,
    refuse_unsupported,
    standard_headers,
    user_metadata,
)
from gateway.s3.tags import header_tags
from gateway.s3.xml import child_text, document, iso8601, parse
from metadata.index import NoSuchBucket, NoSuchUpload, PreconditionFailed
from metadata.records import BucketRecord, ObjectManifest, PartRecord, UploadRecord

MIN_PART_SIZE = 5 << 20


async def _upload(gw: Gateway, req: S3Request) -> UploadRecord:
    """The upload ?uploadId= names, once the requester may use both the bucket and that upload: its
    initiator or the root. Knowing an upload id (any presigned part URL shows it) is not a permission."""
    await owned_bucket(gw, req)
    upload_id = req.query.get("uploadId", "")
    rec = await gw.index.get_upload(upload_id) if upload_id else None
    if rec is None or rec.bucket != req.bucket or rec.key != req.key:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    if rec.owner != req.access_key and not gw.is_root(req.access_key):
        raise S3Error("AccessDenied")
    return rec


def _part_number(req: S3Request) -> int:
    number = part_number(req.query)
    if number is None:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
    return number


async def create_upload(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    if not req.key:
        raise S3Error("InvalidRequest", "A key is required.")
    refuse_unsupported(req.headers)
    locking = object_lock.new_version_lock(bucket, req)
    algo = req.headers.get("x-amz-checksum-algorithm", "")
    kind = req.headers.get("x-amz-checksum-type", "").upper()
    if algo:
        algo = checksums.normalize_algorithm(algo)
        kind = kind or ("FULL_OBJECT" if algo == "CRC64NVME" else "COMPOSITE")
    elif kind:
        raise S3Error(
            "InvalidRequest", "The x-amz-checksum-type header can only be used with x-amz-checksum-algorithm."
        )
    if kind not in ("", "COMPOSITE", "FULL_OBJECT"):
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if kind == "FULL_OBJECT" and algo not in checksums.FULL_OBJECT_ALGORITHMS:
        raise S3Error(
            "InvalidRequest",
            f"The FULL_OBJECT checksum type cannot be used with the {algo.lower()} checksum algorithm.",
        )
    if kind == "COMPOSITE" and algo not in checksums.COMPOSITE_ALGORITHMS:
        raise S3Error(
            "InvalidRequest", f"The COMPOSITE checksum type cannot be used with the {algo.lower()} checksum algorithm."
        )
    rec = UploadRecord(
        bucket=req.bucket,
        key=req.key,
        upload_id=new_id(),
        initiated=time.time(),
        owner=req.access_key,
        acl=req.headers.get("x-amz-acl", ""),  # checked by handlers/actions.py
        content_type=content_type(req.headers),
        headers=standard_headers(req.headers),
        user_meta=user_metadata(req.headers),
        checksum_algorithm=algo,
        checksum_type=kind,
        tags=header_tags(req.headers),
        lock_mode=locking.mode,
        lock_until=locking.until,
        legal_hold=locking.legal_hold,
    )
    try:
        await gw.index.create_upload(rec)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None
    items = [("Bucket", req.bucket), ("Key", req.key), ("UploadId", rec.upload_id)]
    headers = {"x-amz-checksum-algorithm": algo, "x-amz-checksum-type": kind} if algo else {}
    return web.Response(
        body=document("InitiateMultipartUploadResult", items), content_type="application/xml", headers=headers
    )


async def _record_part(gw: Gateway, upload: UploadRecord, part: PartRecord) -> None:
    try:
        replaced = await gw.index.put_part(upload.upload_id, part)
    except NoSuchUpload:
        gw.layer.discard([part])  # aborted while the part was being written
        raise S3Error("NoSuchUpload", UploadId=upload.upload_id) from None
    if replaced is not None:
        gw.layer.discard([replaced])


async def upload_part(gw: Gateway, req: S3Request) -> web.StreamResponse:
    number = _part_number(req)
    upload = await _upload(gw, req)
    body = await open_body(req, MAX_PUT_SIZE)
    # A part is no object yet: its bytes count against the quota, here and again at Complete.
    await quota.check(gw, req.http, await gw.bucket(upload.bucket), body.declared or 0, objects=0)
    if upload.checksum_algorithm and upload.checksum_algorithm not in body.algorithms:
        # The client did not send the upload's checksum; compute it so Complete can combine it.
        body.add_checksum(upload.checksum_algorithm)
    part = await store_body(gw, req, body, number)
    await _record_part(gw, upload, part)
    return web.Response(headers={"ETag": f'"{part.etag}"', **checksum_response_headers(part.checksums)})


_COPY_RANGE_RE = re.compile(r"bytes=([0-9]+)-([0-9]+)")  # ASCII digits only


def _copy_range(raw: str, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range: only bytes=first-last, and inside the source (no suffix or open ranges)."""
    m = _COPY_RANGE_RE.fullmatch(raw.strip())
    # A number past any position (more digits than a size has) is malformed, not merely out of range.
    if m is None or position(m.group(1)) > position(m.group(2)) or position(m.group(2)) > MAX_VALUE:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=raw,
        )
    start, end = position(m.group(1)), position(m.group(2))
    if end >= size:
        raise S3Error("InvalidRange", f"The requested range is not satisfiable (source object size: {size})", 416)
    return start, end


async def upload_part_copy(gw: Gateway, req: S3Request) -> web.StreamResponse:
    number = _part_number(req)
    upload = await _upload(gw, req)
    src = await copy_source(gw, req)
    raw_range = req.headers.get("x-amz-copy-source-range")
    start, end = _copy_range(raw_range, src.size) if raw_range is not None else (0, src.size - 1)
    if end - start + 1 > MAX_PUT_SIZE:
        raise S3Error("EntityTooLarge")
    await quota.check(gw, req.http, await gw.bucket(upload.bucket), end - start + 1, objects=0)
    algos = [upload.checksum_algorithm] if upload.checksum_algorithm else []
    body = stream_source(gw.layer.stream(src, start, end) if end >= start else None, algos)
    part, _ = await write_part(gw, body, number)
    part.checksums = body.computed_checksums()
    await _record_part(gw, upload, part)
    items: list[tuple[str, Any]] = [("LastModified", iso8601(part.last_modified)), ("ETag", f'"{part.etag}"')]
    items += [(f"Checksum{a}", v) for a, v in part.checksums.items()]
    return xml_response(document("CopyPartResult", items))


def _wanted_parts(doc_body: bytes) -> list[tuple[int, str, dict[str, str]]]:
    doc = parse(doc_body, "CompleteMultipartUpload")
    wanted: list[tuple[int, str, dict[str, str]]] = []
    for el in doc.findall("Part"):
        raw, etag = child_text(el, "PartNumber"), child_text(el, "ETag")
        num = decimal(raw.strip()) if raw is not None else None
        if num is None or etag is None:
            raise S3Error("MalformedXML")
        if not 1 <= num <= MAX_PARTS:  # a number no part can have: a part that is not there, as S3 says
            raise S3Error("InvalidPart", PartNumber=str(num), ETag=etag.strip().strip('"'))
        sums = {a: v for a in checksums.ALGORITHMS if (v := child_text(el, f"Checksum{a}"))}
        wanted.append((num, etag.strip().strip('"'), sums))
    if not wanted:
        raise S3Error("MalformedXML", "You must specify at least one part.")
    numbers = [n for n, _, _ in wanted]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise S3Error("InvalidPartOrder")
    return wanted


async def _all_parts(gw: Gateway, upload_id: str) -> dict[int, PartRecord]:
    parts: dict[int, PartRecord] = {}
    marker = 0
    while True:
        page = await gw.index.list_parts(upload_id, marker, 1000)
        parts.update((p.number, p) for p in page.parts)
        if not page.truncated:
            return parts
        marker = page.next_marker


def _object_checksum(upload: UploadRecord, chosen: list[PartRecord]) -> dict[str, str]:
    algo = upload.checksum_algorithm
    if not algo:
        return {}
    digests = []
    for p in chosen:
        if algo not in p.checksums:
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using a {algo.lower()} checksum. "
                f"The complete request must include the checksum for each part.",
            )
        digests.append(base64.b64decode(p.checksums[algo]))
    if upload.checksum_type == "FULL_OBJECT":
        return {algo: checksums.combine_full_object(algo, [(d, p.size) for d, p in zip(digests, chosen, strict=True)])}
    return {algo: checksums.composite(algo, digests)}


def _check_declared(req: S3Request, upload: UploadRecord, sums: dict[str, str], size: int) -> None:
    """What the client says the completed object is: x-amz-mp-object-size, x-amz-checksum-type and -<algo>."""
    raw_size = req.headers.get("x-amz-mp-object-size")
    if raw_size is not None and decimal(raw_size.strip()) != size:
        raise S3Error(
            "InvalidRequest",
            f"The provided 'x-amz-mp-object-size' header value {raw_size} does not match the object size {size}.",
        )
    kind = req.headers.get("x-amz-checksum-type")
    if kind is not None and kind.strip().upper() != upload.checksum_type:
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using the {upload.checksum_type or 'no'} checksum mode. "
            "The complete request must use the same checksum mode.",
        )
    for algo, name in checksums.checksum_headers(req.headers.keys()).items():
        if algo not in sums:
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using {upload.checksum_algorithm.lower() or 'no'} checksum. "
                "The complete request must use the same checksum algorithm.",
            )
        # A composite value may be given with or without its "-<parts>" suffix (base64 has no '-').
        if req.headers[name].strip().split("-")[0] != sums[algo].split("-")[0]:
            raise S3Error(
                "BadDigest", f"The {checksums.header_name(algo)} you specified did not match the calculated checksum."
            )


def _completed_document(man: ObjectManifest, bucket: BucketRecord | None = None) -> web.Response:
    items: list[tuple[str, Any]] = [
        ("Location", f"/{man.bucket}/{man.key}"),
        ("Bucket", man.bucket),
        ("Key", man.key),
        ("ETag", f'"{man.etag}"'),
    ]
    items += [(f"Checksum{a}", v) for a, v in man.checksums.items()]
    if man.checksums:
        items.append(("ChecksumType", man.checksum_type))
    resp = xml_response(document("CompleteMultipartUploadResult", items))
    resp.headers.update(versions.version_header(man, bucket))
    return resp


async def _completed_before(gw: Gateway, req: S3Request) -> web.Response | None:
    """The answer to a repeated CompleteMultipartUpload that already succeeded: S3 answers it again, 200 with
    the same ETag. The completed object carries its upload id (as its version id) while it is current."""
    upload_id = req.query.get("uploadId", "")
    man = await gw.index.get_object(req.bucket, req.key) if upload_id else None
    if man is None or man.version_id != upload_id or not man.etag.endswith(f"-{len(man.parts)}"):
        return None
    if man.owner != req.access_key and not gw.is_root(req.access_key):
        raise S3Error("AccessDenied")
    return _completed_document(man)


async def complete_upload(gw: Gateway, req: S3Request) -> web.StreamResponse:
    try:
        upload = await _upload(gw, req)
    except S3Error as err:
        if err.code != "NoSuchUpload" or (done := await _completed_before(gw, req)) is None:
            raise
        await read_small_body(req)  # the request's body is read (and checked) as for a first completion
        return done
    wanted = _wanted_parts(await read_small_body(req))
    cond = put_condition(req)
    check_put_condition(cond, await gw.index.get_object(req.bucket, req.key) if cond else None)
    have = await _all_parts(gw, upload.upload_id)
    chosen: list[PartRecord] = []
    for i, (number, etag, sums) in enumerate(wanted):
        part = have.get(number)
        if part is None or part.etag != etag or any(part.checksums.get(a) != v for a, v in sums.items()):
            raise S3Error("InvalidPart", PartNumber=str(number), ETag=etag)
        if i < len(wanted) - 1 and part.size < MIN_PART_SIZE:
            raise S3Error(
                "EntityTooSmall", PartNumber=str(number), ProposedSize=str(part.size), MinSizeAllowed=str(MIN_PART_SIZE)
            )
        chosen.append(part)
    md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
    sums = _object_checksum(upload, chosen)
    _check_declared(req, upload, sums, sum(p.size for p in chosen))
    man = ObjectManifest(
        bucket=upload.bucket,
        key=upload.key,
        version_id=upload.upload_id,
        size=sum(p.size for p in chosen),
        etag=f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}",
        last_modified=time.time(),
        owner=req.access_key,
        acl=upload.acl,
        parts=chosen,
        content_type=upload.content_type,
        headers=upload.headers,
        user_meta=upload.user_meta,
        checksums=sums,
        checksum_type=upload.checksum_type if sums else "",
        tags=upload.tags,
    )
    bucket = await gw.bucket(upload.bucket)
    versions.stamp(man, bucket)
    asked = LockRequest(upload.lock_mode, upload.lock_until, upload.legal_hold)  # as CreateMultipartUpload asked
    object_lock.stamp_lock(man, asked, bucket)
    await quota.check_put(gw, req.http, bucket, man.key, man.size)
    events = events_for(bucket, "ObjectCreated:CompleteMultipartUpload", man.key, man, req.access_key)
    try:
        done = await gw.index.complete_upload(upload.upload_id, man, cond, events)
    except NoSuchUpload:
        if (again := await _completed_before(gw, req)) is not None:  # a retry of this completion raced it
            return again
        raise S3Error("NoSuchUpload", UploadId=upload.upload_id) from None
    except PreconditionFailed:
        raise S3Error("PreconditionFailed") from None
    gw.layer.committed(man)
    gw.layer.discard(done.unused)
    if done.previous is not None:
        gw.layer.discard(done.previous.parts)
    resp = _completed_document(man, bucket)
    resp.headers.update(lifecycle.expiration_headers(gw, bucket, man))
    return resp


async def abort_upload(gw: Gateway, req: S3Request) -> web.StreamResponse:
    upload = await _upload(gw, req)
    try:
        parts = await gw.index.abort_upload(upload.upload_id)
    except NoSuchUpload:
        raise S3Error("NoSuchUpload", UploadId=upload.upload_id) from None
    gw.layer.discard(parts)
    return web.Response(status=204)


async def list_parts(gw: Gateway, req: S3Request) -> web.StreamResponse:
    upload = await _upload(gw, req)
    marker = int_param(req.query, "part-number-marker", 0)
    max_parts = min(int_param(req.query, "max-parts", 1000), 1000)
    enc_type, enc = encoder(url_encoding(req), [upload.key])  # SDKs that ask (Java's) get the key encoded
    page = await gw.index.list_parts(upload.upload_id, marker, max_parts)
    items: list[tuple[str, Any]] = [
        ("Bucket", upload.bucket),
        ("Key", enc(upload.key)),
        ("EncodingType", enc_type),
        ("UploadId", upload.upload_id),
        ("Initiator", owner_items(upload.owner)),
        ("Owner", owner_items(upload.owner)),
        ("StorageClass", "STANDARD"),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page.next_marker),
        ("MaxParts", max_parts),
        ("IsTruncated", page.truncated),
    ]
    if upload.checksum_algorithm:
        items += [("ChecksumAlgorithm", upload.checksum_algorithm), ("ChecksumType", upload.checksum_type)]
    for p in page.parts:
        part: list[tuple[str, Any]] = [
            ("PartNumber", p.number),
            ("LastModified", iso8601(p.last_modified)),
            ("ETag", f'"{p.etag}"'),
            ("Size", p.size),
        ]
        part += [(f"Checksum{a}", v) for a, v in p.checksums.items()]
        items.append(("Part", part))
    return xml_response(document("ListPartsResult", items))
