"""The console's bucket and object endpoints: each one S3 request, signed as the signed-in user, with the
answer turned into JSON; bodies stream through (uploads in parts, downloads as they come)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web

from cluster.service import ErrorAnswer
from gateway.console.context import console, read_json, required, user
from gateway.console.upstream import body_chunks, content_md5, error_answer, object_path, parse_xml
from gateway.s3.numbers import decimal

PAGE = 200  # keys per page of the object browser
MAX_SHARE = 7 * 24 * 3600  # a presigned URL lives at most a week, as S3 allows
_KEPT_HEADERS = ("Content-Type", "Content-Length", "ETag", "Last-Modified")


def _text(el: ET.Element, name: str) -> str:
    found = el.find(name)
    return (found.text or "") if found is not None else ""


def _bucket(request: web.Request) -> str:
    name = request.match_info["bucket"]
    if not name or len(name) > 255:
        raise ErrorAnswer(400, "InvalidBucketName", "the bucket name is not valid")
    return name


async def list_buckets(request: web.Request) -> web.StreamResponse:
    _, _, body = await console(request).upstream.call(user(request), "GET", "/")
    root = parse_xml(body)
    buckets = [
        {"name": _text(b, "Name"), "created": _text(b, "CreationDate")} for b in root.iter("Bucket") if _text(b, "Name")
    ]
    return web.json_response({"buckets": buckets})


async def create_bucket(request: web.Request) -> web.StreamResponse:
    doc = await read_json(request)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ErrorAnswer(400, "InvalidBucketName", "give the bucket a name")
    # Object lock can only be chosen when a bucket is made (and turns versioning on for good).
    headers = {"x-amz-bucket-object-lock-enabled": "true"} if doc.get("object_lock") is True else None
    await console(request).upstream.call(user(request), "PUT", object_path(name), headers=headers)
    return web.json_response({"name": name}, status=201)


async def delete_bucket(request: web.Request) -> web.StreamResponse:
    await console(request).upstream.call(user(request), "DELETE", object_path(_bucket(request)))
    return web.json_response({})


async def list_objects(request: web.Request) -> web.StreamResponse:
    """One page of a "folder": the common prefixes and the objects directly under ?prefix=, from ?token=."""
    bucket = _bucket(request)
    query = [("list-type", "2"), ("delimiter", "/"), ("max-keys", str(PAGE)), ("encoding-type", "url")]
    prefix, token = request.query.get("prefix", ""), request.query.get("token", "")
    if prefix:
        query.append(("prefix", prefix))
    if token:
        query.append(("continuation-token", token))
    _, _, body = await console(request).upstream.call(user(request), "GET", object_path(bucket), query)
    root = parse_xml(body)
    objects = [
        {
            "key": unquote(_text(c, "Key")),
            "size": decimal(_text(c, "Size")) or 0,
            "etag": _text(c, "ETag").strip('"'),
            "modified": _text(c, "LastModified"),
        }
        for c in root.iter("Contents")
    ]
    folders = [unquote(_text(p, "Prefix")) for p in root.iter("CommonPrefixes")]
    truncated = _text(root, "IsTruncated") == "true"
    return web.json_response(
        {
            "bucket": bucket,
            "prefix": prefix,
            "folders": folders,
            "objects": objects,
            "next": _text(root, "NextContinuationToken") if truncated else "",
        }
    )


async def object_details(request: web.Request) -> web.StreamResponse:
    """HEAD of the object (size, ETag, type, metadata, checksums); its fragments come from inspect()."""
    bucket, key = _bucket(request), required(request, "key")
    up = console(request).upstream
    checksums = {"x-amz-checksum-mode": "ENABLED"}
    async with up.request(user(request), "HEAD", object_path(bucket, key), headers=checksums) as resp:
        if resp.status >= 300:
            raise error_answer(resp.status, b"")
        h = resp.headers
        doc: dict[str, Any] = {
            "bucket": bucket,
            "key": key,
            "size": decimal(h.get("Content-Length", "")) or 0,
            "etag": h.get("ETag", "").strip('"'),
            "content_type": h.get("Content-Type", ""),
            "modified": h.get("Last-Modified", ""),
            "version_id": h.get("x-amz-version-id", ""),
            "metadata": {k[len("x-amz-meta-") :]: v for k, v in h.items() if k.lower().startswith("x-amz-meta-")},
            "lock": {  # object lock: mode, retain-until-date, legal-hold, where set
                k.lower()[len("x-amz-object-lock-") :]: v
                for k, v in h.items()
                if k.lower().startswith("x-amz-object-lock-")
            },
            "checksums": {
                k[len("x-amz-checksum-") :]: v
                for k, v in h.items()
                if k.lower().startswith("x-amz-checksum-") and k.lower() != "x-amz-checksum-type"
            },
        }
    return web.json_response(doc)


async def download(request: web.Request) -> web.StreamResponse:
    """The object's bytes, streamed from S3 as they come, as an attachment."""
    bucket, key = _bucket(request), required(request, "key")
    up = console(request).upstream
    try:
        async with up.request(user(request), "GET", object_path(bucket, key), _version(request)) as resp:
            if resp.status >= 300:
                raise error_answer(resp.status, await resp.content.read(65536))
            out = web.StreamResponse(headers={k: resp.headers[k] for k in _KEPT_HEADERS if k in resp.headers})
            name = key.rsplit("/", 1)[-1] or "download"
            out.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(256 << 10):
                await out.write(chunk)
            await out.write_eof()
            return out
    except aiohttp.ClientError as exc:
        raise ErrorAnswer(502, "Unreachable", f"the S3 endpoint did not answer: {exc}") from None


def _version(request: web.Request) -> list[tuple[str, str]]:
    """?version=ID: that version of the object (where the bucket keeps versions), else the current one."""
    version = request.query.get("version", "")
    return [("versionId", required(request, "version", 1024))] if version else []


async def delete_object(request: web.Request) -> web.StreamResponse:
    """The object (a delete marker in a versioned bucket), or with ?version= that version for good."""
    bucket, key = _bucket(request), required(request, "key")
    await console(request).upstream.call(user(request), "DELETE", object_path(bucket, key), _version(request))
    return web.json_response({})


async def delete_many(request: web.Request) -> web.StreamResponse:
    """{"keys": [...]}: one DeleteObjects request (at most 1000 keys, as S3 takes); what was deleted and what not."""
    keys = (await read_json(request)).get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= 1000 or not all(isinstance(k, str) and k for k in keys):
        raise ErrorAnswer(400, "InvalidArgument", "give 1 to 1000 keys")
    root = ET.Element("Delete")
    for key in keys:
        ET.SubElement(ET.SubElement(root, "Object"), "Key").text = key
    body = ET.tostring(root, encoding="utf-8")
    path, query = object_path(_bucket(request)), [("delete", "")]
    headers = {"Content-MD5": content_md5(body), "Content-Type": "application/xml"}
    _, _, answer = await console(request).upstream.call(user(request), "POST", path, query, headers=headers, data=body)
    result = parse_xml(answer)
    errors = [
        {"key": _text(e, "Key"), "code": _text(e, "Code"), "message": _text(e, "Message")} for e in result.iter("Error")
    ]
    return web.json_response({"deleted": [_text(d, "Key") for d in result.iter("Deleted")], "errors": errors})


def _length(request: web.Request) -> dict[str, str]:
    """The upload's Content-Length, handed on: S3 wants it, and the body is streamed, not counted."""
    if request.content_length is None:
        raise ErrorAnswer(411, "MissingContentLength", "send the Content-Length of the upload")
    headers = {"Content-Length": str(request.content_length)}
    ctype = request.headers.get("Content-Type", "")
    if ctype and len(ctype) < 256:
        headers["Content-Type"] = ctype
    return headers


async def put_object(request: web.Request) -> web.StreamResponse:
    """A whole small file in one PUT (larger files go in parts: create_upload, upload_part, ...)."""
    bucket, key = _bucket(request), required(request, "key")
    headers = _length(request)
    _, h, _ = await console(request).upstream.call(
        user(request), "PUT", object_path(bucket, key), headers=headers, data=body_chunks(request.content)
    )
    return web.json_response({"key": key, "etag": h.get("ETag", "").strip('"')}, status=201)


async def create_upload(request: web.Request) -> web.StreamResponse:
    bucket, key = _bucket(request), required(request, "key")
    ctype = request.query.get("type", "")
    headers = {"Content-Type": ctype} if ctype and len(ctype) < 256 else None
    _, _, body = await console(request).upstream.call(
        user(request), "POST", object_path(bucket, key), [("uploads", "")], headers=headers
    )
    return web.json_response({"upload_id": _text(parse_xml(body), "UploadId")}, status=201)


def _part(request: web.Request) -> int:
    number = decimal(request.query.get("part"), 1, 10_000)
    if number is None:
        raise ErrorAnswer(400, "InvalidArgument", "?part= is a part number from 1 to 10000")
    return number


async def upload_part(request: web.Request) -> web.StreamResponse:
    bucket, key, upload = _bucket(request), required(request, "key"), request.match_info["upload"]
    number = _part(request)
    query = [("partNumber", str(number)), ("uploadId", upload)]
    headers = {"Content-Length": _length(request)["Content-Length"]}
    _, h, _ = await console(request).upstream.call(
        user(request), "PUT", object_path(bucket, key), query, headers=headers, data=body_chunks(request.content)
    )
    return web.json_response({"part": number, "etag": h.get("ETag", "")})


async def complete_upload(request: web.Request) -> web.StreamResponse:
    bucket, key, upload = _bucket(request), required(request, "key"), request.match_info["upload"]
    doc = await read_json(request)
    parts = doc.get("parts")
    if not isinstance(parts, list) or not parts or len(parts) > 10_000:
        raise ErrorAnswer(400, "InvalidArgument", "give the parts: [{part, etag}, ...]")
    root = ET.Element("CompleteMultipartUpload")
    for p in parts:
        if not isinstance(p, dict) or not isinstance(p.get("part"), int) or not isinstance(p.get("etag"), str):
            raise ErrorAnswer(400, "InvalidArgument", "each part is {part: number, etag: text}")
        el = ET.SubElement(root, "Part")
        ET.SubElement(el, "PartNumber").text = str(p["part"])
        ET.SubElement(el, "ETag").text = p["etag"]
    body = ET.tostring(root)
    _, _, answer = await console(request).upstream.call(
        user(request), "POST", object_path(bucket, key), [("uploadId", upload)], data=body
    )
    result = parse_xml(answer)
    if result.tag == "Error":  # S3 may send an error inside a 200 after it has started answering
        raise error_answer(500, answer)
    return web.json_response({"key": key, "etag": _text(result, "ETag").strip('"')}, status=201)


async def abort_upload(request: web.Request) -> web.StreamResponse:
    bucket, key, upload = _bucket(request), required(request, "key"), request.match_info["upload"]
    await console(request).upstream.call(user(request), "DELETE", object_path(bucket, key), [("uploadId", upload)])
    return web.json_response({})


async def share(request: web.Request) -> web.StreamResponse:
    """A presigned GET URL of the object, valid for ?expires= seconds, pointing at the S3 endpoint on the
    host the browser reached the console by. The object is checked first: no link to nothing."""
    bucket, key = _bucket(request), required(request, "key")
    expires = decimal(request.query.get("expires", "3600"), 1, MAX_SHARE)
    if expires is None:
        raise ErrorAnswer(400, "InvalidArgument", f"?expires= is 1 to {MAX_SHARE} seconds")
    c = console(request)
    who = user(request)
    await c.upstream.call(who, "HEAD", object_path(bucket, key))
    host = request.url.host or "127.0.0.1"
    netloc = f"[{host}]:{c.s3_port}" if ":" in host else f"{host}:{c.s3_port}"
    url = c.upstream.presign(who, netloc, c.s3_scheme, object_path(bucket, key), expires)
    return web.json_response({"url": url, "expires": expires})
