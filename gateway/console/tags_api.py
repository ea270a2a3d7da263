"""Tags of a bucket (?key= absent) or an object, read and replaced through S3's tagging requests."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aiohttp import web

from cluster.service import ErrorAnswer
from gateway.console.context import console, read_json, user
from gateway.console.upstream import content_md5, object_path, parse_xml

MAX_TAGS = 50  # a bucket's limit; S3 refuses more than 10 on an object with its own error


def _target(request: web.Request) -> str:
    return object_path(request.match_info["bucket"], request.query.get("key", ""))


async def get_tags(request: web.Request) -> web.StreamResponse:
    c = console(request)
    try:
        _, _, body = await c.upstream.call(user(request), "GET", _target(request), [("tagging", "")])
    except ErrorAnswer as err:
        if err.failure.kind == "NoSuchTagSet":  # a bucket without tags
            return web.json_response({"tags": {}})
        raise
    root = parse_xml(body)
    tags = {(t.findtext("Key") or ""): (t.findtext("Value") or "") for t in root.iter("Tag")}
    return web.json_response({"tags": tags})


async def put_tags(request: web.Request) -> web.StreamResponse:
    """Replace the tag set with {"tags": {key: value}}; an empty set removes them all."""
    doc = await read_json(request)
    tags = doc.get("tags")
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise ErrorAnswer(400, "InvalidTag", f"give the tags as {{key: value}}, at most {MAX_TAGS}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise ErrorAnswer(400, "InvalidTag", "tag keys and values are text")
    c, who, target = console(request), user(request), _target(request)
    if not tags:
        await c.upstream.call(who, "DELETE", target, [("tagging", "")])
        return web.json_response({"tags": {}})
    root = ET.Element("Tagging")
    tag_set = ET.SubElement(root, "TagSet")
    for key, value in tags.items():
        tag = ET.SubElement(tag_set, "Tag")
        ET.SubElement(tag, "Key").text = key
        ET.SubElement(tag, "Value").text = value
    body = ET.tostring(root, encoding="utf-8")
    await c.upstream.call(who, "PUT", target, [("tagging", "")], headers={"Content-MD5": content_md5(body)}, data=body)
    return web.json_response({"tags": tags})
