"""GetObjectAttributes: an object's ETag, checksum, parts, storage class and size, chosen by x-amz-object-attributes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import xml_response
from gateway.handlers.objects import resolve_version
from gateway.s3.errors import S3Error
from gateway.s3.numbers import decimal
from gateway.s3.request import MAX_PARTS, S3Request
from gateway.s3.xml import document, http_date
from metadata.records import ObjectManifest

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_LISTED_PARTS = 1000


def _wanted(req: S3Request) -> set[str]:
    raw = ",".join(req.headers.getall("x-amz-object-attributes", []))
    names = {name.strip() for name in raw.split(",") if name.strip()}
    if not names:
        raise S3Error(
            "InvalidArgument",
            "Missing required header for this request: x-amz-object-attributes",
            ArgumentName="x-amz-object-attributes",
        )
    unknown = sorted(names.difference(ATTRIBUTES))
    if unknown:
        raise S3Error(
            "InvalidArgument",
            "Invalid attribute name specified.",
            ArgumentName="x-amz-object-attributes",
            ArgumentValue=unknown[0],
        )
    return names


def _number_header(req: S3Request, name: str, default: int, high: int) -> int:
    raw = req.headers.get(name)
    if raw is None:
        return default
    value = decimal(raw.strip(), 0, high)
    if value is None:
        raise S3Error(
            "InvalidArgument", f"{name} must be an integer between 0 and {high}", ArgumentName=name, ArgumentValue=raw
        )
    return value


def _parts(man: ObjectManifest, max_parts: int, marker: int) -> list[tuple[str, Any]] | None:
    """The ObjectParts element: parts after the marker, at most max_parts of them. Only a multipart object
    has parts to list."""
    if not man.parts or man.parts[0].number == 0:
        return None
    after = [p for p in man.parts if p.number > marker]
    page, truncated = after[:max_parts], len(after) > max_parts
    items: list[tuple[str, Any]] = [
        ("PartsCount", len(man.parts)),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1].number if page else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    for p in page:
        part: list[tuple[str, Any]] = [("PartNumber", p.number), ("Size", p.size)]
        part += [(f"Checksum{a}", v) for a, v in p.checksums.items()]
        items.append(("Part", part))
    return items


async def get_object_attributes(gw: Gateway, req: S3Request) -> web.StreamResponse:
    wanted = _wanted(req)
    max_parts = min(_number_header(req, "x-amz-max-parts", MAX_LISTED_PARTS, MAX_PARTS), MAX_LISTED_PARTS)
    marker = _number_header(req, "x-amz-part-number-marker", 0, MAX_PARTS)
    man = await resolve_version(gw, req)
    items: list[tuple[str, Any]] = []
    if "ETag" in wanted:
        items.append(("ETag", man.etag))
    if "Checksum" in wanted and man.checksums:
        checksum: list[tuple[str, Any]] = [(f"Checksum{a}", v) for a, v in man.checksums.items()]
        items.append(("Checksum", [*checksum, ("ChecksumType", man.checksum_type or None)]))
    if "ObjectParts" in wanted:
        items.append(("ObjectParts", _parts(man, max_parts, marker)))
    if "StorageClass" in wanted:
        items.append(("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        items.append(("ObjectSize", man.size))
    resp = xml_response(document("GetObjectAttributesResponse", items))
    resp.headers["Last-Modified"] = http_date(man.last_modified)
    return resp
