"""ListObjects (v1 and v2) and ListMultipartUploads, and the url encoding of keys every listing shares."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import owned_bucket, owner_items, xml_response
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request, decode_token, encode_token, int_param
from gateway.s3.xml import document, iso8601, xml_safe

MAX_KEYS = 1000


def _max_keys(req: S3Request, name: str) -> int:
    return min(int_param(req.query, name, MAX_KEYS), MAX_KEYS)


def url_encoding(req: S3Request) -> bool:
    """Whether the client asked for keys url-encoded (encoding-type=url); InvalidArgument for any other type."""
    kind = req.query.get("encoding-type")
    if kind is not None and kind.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=kind,
        )
    return kind is not None


def encoder(asked: bool, texts: Iterable[str]) -> tuple[str | None, Callable[[str], str]]:
    """The EncodingType to answer and how to write keys, prefixes and markers. Unasked, a page that holds a
    character XML 1.0 cannot carry (S3 stores any UTF-8 key) is answered url-encoded all the same, with
    <EncodingType>url</EncodingType> saying so: an unparseable listing would serve nobody."""
    if not asked and all(xml_safe(t) for t in texts):
        return None, lambda s: s
    return "url", lambda s: quote(s, safe="/") if s else s


async def list_objects(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    v2 = req.query.get("list-type") == "2"
    if "list-type" in req.query and not v2:
        raise S3Error("InvalidArgument", "Invalid List Type specified", ArgumentName="list-type")
    asked = url_encoding(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    max_keys = _max_keys(req, "max-keys")
    token = req.query.get("continuation-token")
    if v2:
        start_after = req.query.get("start-after", "")
        marker = decode_token(token) if token is not None else start_after
    else:
        marker = req.query.get("marker", "")
    page = await gw.index.list_objects(req.bucket, prefix, marker, delimiter, max_keys)
    # What the answer writes besides keys and prefixes (v2's markers travel inside opaque tokens).
    echoed = (
        (prefix, delimiter, req.query.get("start-after", "")) if v2 else (prefix, delimiter, marker, page.next_marker)
    )
    enc_type, enc = encoder(asked, itertools.chain(echoed, page.prefixes, (m.key for m in page.objects)))
    fetch_owner = not v2 or req.query.get("fetch-owner", "").lower() == "true"

    contents: list[tuple[str, Any]] = []
    for m in page.objects:
        item: list[tuple[str, Any]] = [
            ("Key", enc(m.key)),
            ("LastModified", iso8601(m.last_modified)),
            ("ETag", f'"{m.etag}"'),
        ]
        if m.checksums:
            item += [("ChecksumAlgorithm", algo) for algo in m.checksums]
            item.append(("ChecksumType", m.checksum_type or "FULL_OBJECT"))
        item += [("Size", m.size), ("StorageClass", "STANDARD")]
        if fetch_owner:
            item.append(("Owner", owner_items(m.owner)))
        contents.append(("Contents", item))
    prefixes = [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.prefixes]

    items: list[tuple[str, Any]] = [("Name", req.bucket), ("Prefix", enc(prefix))]
    if v2:
        if token is not None:
            items.append(("ContinuationToken", token))
        if "start-after" in req.query:
            items.append(("StartAfter", enc(req.query["start-after"])))
        items.append(("KeyCount", len(page.objects) + len(page.prefixes)))
    else:
        items.append(("Marker", enc(marker)))
    items.append(("MaxKeys", max_keys))
    if delimiter:
        items.append(("Delimiter", enc(delimiter)))
    if enc_type:
        items.append(("EncodingType", enc_type))
    items.append(("IsTruncated", page.truncated))
    if page.truncated:
        if v2:
            items.append(("NextContinuationToken", encode_token(page.next_marker)))
        else:
            items.append(("NextMarker", enc(page.next_marker)))
    items += contents + prefixes
    root = "ListBucketResult"
    return xml_response(document(root, items))


async def list_uploads(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    asked = url_encoding(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    key_marker = req.query.get("key-marker", "")
    id_marker = req.query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = _max_keys(req, "max-uploads")
    page = await gw.index.list_uploads(req.bucket, prefix, key_marker, id_marker, delimiter, max_uploads)
    echoed = (prefix, delimiter, key_marker, page.next_key_marker)
    enc_type, enc = encoder(asked, itertools.chain(echoed, page.prefixes, (u.key for u in page.uploads)))
    items: list[tuple[str, Any]] = [
        ("Bucket", req.bucket),
        ("KeyMarker", enc(key_marker)),
        ("UploadIdMarker", id_marker),
        ("NextKeyMarker", enc(page.next_key_marker)),
        ("NextUploadIdMarker", page.next_upload_id_marker),
        ("Prefix", enc(prefix)),
    ]
    if delimiter:
        items.append(("Delimiter", enc(delimiter)))
    items += [("MaxUploads", max_uploads)]
    if enc_type:
        items.append(("EncodingType", enc_type))
    items.append(("IsTruncated", page.truncated))
    for u in page.uploads:
        upload: list[tuple[str, Any]] = [
            ("Key", enc(u.key)),
            ("UploadId", u.upload_id),
            ("Initiator", owner_items(u.owner)),
            ("Owner", owner_items(u.owner)),
            ("StorageClass", "STANDARD"),
            ("Initiated", iso8601(u.initiated)),
        ]
        if u.checksum_algorithm:
            upload.append(("ChecksumAlgorithm", u.checksum_algorithm))
        items.append(("Upload", upload))
    items += [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.prefixes]
    return xml_response(document("ListMultipartUploadsResult", items))
