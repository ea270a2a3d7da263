"""Bucket versioning, object lock, and an object's versions, through S3's own requests."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from aiohttp import web

from cluster.service import ErrorAnswer
from gateway.console.context import console, read_json, required, user
from gateway.console.upstream import content_md5, object_path, parse_xml
from gateway.s3.numbers import decimal

_STATES = ("Enabled", "Suspended")
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


async def get_versioning(request: web.Request) -> web.StreamResponse:
    path = object_path(request.match_info["bucket"])
    _, _, body = await console(request).upstream.call(user(request), "GET", path, [("versioning", "")])
    return web.json_response({"status": parse_xml(body).findtext("Status") or ""})  # "": never enabled


async def put_versioning(request: web.Request) -> web.StreamResponse:
    status = (await read_json(request)).get("status")
    if status not in _STATES:
        raise ErrorAnswer(400, "InvalidArgument", "status is Enabled or Suspended")
    root = ET.Element("VersioningConfiguration", xmlns=S3_XMLNS)
    ET.SubElement(root, "Status").text = status
    body = ET.tostring(root, encoding="utf-8")
    headers = {"Content-MD5": content_md5(body)}
    path = object_path(request.match_info["bucket"])
    await console(request).upstream.call(user(request), "PUT", path, [("versioning", "")], headers=headers, data=body)
    return web.json_response({"status": status})


def _version_doc(el: ET.Element, marker: bool) -> dict[str, Any]:
    return {
        "version_id": el.findtext("VersionId") or "",
        "latest": el.findtext("IsLatest") == "true",
        "modified": el.findtext("LastModified") or "",
        "size": decimal(el.findtext("Size")) or 0,
        "etag": (el.findtext("ETag") or "").strip('"'),
        "delete_marker": marker,
    }


async def list_versions(request: web.Request) -> web.StreamResponse:
    """The versions and delete markers of one key, newest first (the first 1000)."""
    bucket, key = request.match_info["bucket"], required(request, "key")
    query = [("versions", ""), ("prefix", key), ("max-keys", "1000")]
    _, _, body = await console(request).upstream.call(user(request), "GET", object_path(bucket), query)
    root = parse_xml(body)
    versions = [
        _version_doc(el, el.tag == "DeleteMarker")
        for el in root
        if el.tag in ("Version", "DeleteMarker") and el.findtext("Key") == key
    ]
    return web.json_response({"versions": versions})


async def get_object_lock(request: web.Request) -> web.StreamResponse:
    """The bucket's object lock: {"enabled": false}, or enabled with its default retention ("mode": "" for none)."""
    path = object_path(request.match_info["bucket"])
    try:
        _, _, body = await console(request).upstream.call(user(request), "GET", path, [("object-lock", "")])
    except ErrorAnswer as err:
        if err.failure.kind == "ObjectLockConfigurationNotFoundError":
            return web.json_response({"enabled": False})
        raise
    root = parse_xml(body)
    return web.json_response(
        {
            "enabled": root.findtext("ObjectLockEnabled") == "Enabled",
            "mode": root.findtext("Rule/DefaultRetention/Mode") or "",
            "days": decimal(root.findtext("Rule/DefaultRetention/Days")) or 0,
            "years": decimal(root.findtext("Rule/DefaultRetention/Years")) or 0,
        }
    )


async def put_legal_hold(request: web.Request) -> web.StreamResponse:
    """{"status": "ON"|"OFF"}: place or release the legal hold of the object (or of ?version=)."""
    bucket, key = request.match_info["bucket"], required(request, "key")
    status = (await read_json(request)).get("status")
    if status not in ("ON", "OFF"):
        raise ErrorAnswer(400, "InvalidArgument", "status is ON or OFF")
    root = ET.Element("LegalHold", xmlns=S3_XMLNS)
    ET.SubElement(root, "Status").text = status
    body = ET.tostring(root, encoding="utf-8")
    query = [("legal-hold", "")]
    if version := request.query.get("version", ""):
        query.append(("versionId", version))
    headers = {"Content-MD5": content_md5(body)}
    await console(request).upstream.call(
        user(request), "PUT", object_path(bucket, key), query, headers=headers, data=body
    )
    return web.json_response({"status": status})
