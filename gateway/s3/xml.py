"""S3's XML: documents built from (tag, value) lists, bodies parsed with namespaces dropped."""

from __future__ import annotations

import functools
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any

from gateway.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY = 4 << 20  # a CompleteMultipartUpload of 10,000 parts is about 1 MiB

# Items of a document: (tag, value) where value is text-like, None (left out), or a nested list of items.
Items = Iterable[tuple[str, Any]]


def iso8601(ts: float) -> str:
    ms = int(ts * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ms:03d}Z"


def http_date(ts: float) -> str:
    return _http_date(int(ts))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    # formatdate was a twentieth of a small GET's CPU; most answers repeat a few timestamps.
    return formatdate(seconds, usegmt=True)


# What XML 1.0 cannot carry at all, not even as a character reference: C0 controls but TAB, LF and CR;
# lone surrogates; U+FFFE and U+FFFF. S3 keys may hold them (any UTF-8 is a key).
_NOT_XML_RE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> bool:
    """Whether `text` survives a trip through an XML 1.0 document unchanged."""
    # Printable text (most keys) is safe: what XML refuses is all in Unicode's non-printable classes.
    return text.isprintable() or _NOT_XML_RE.search(text) is None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # Last line of defence, for documents that have no encoding-type (errors, upload results): a character
    # XML cannot carry would make the whole answer unparseable, so it becomes U+FFFD. Listings url-encode
    # instead (handlers/listing.py), so that nothing is lost there.
    return text if xml_safe(text) else _NOT_XML_RE.sub("\ufffd", text)


def _fill(parent: ET.Element, items: Items) -> None:
    for tag, value in items:
        if value is None:
            continue
        el = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(el, value)
        else:
            el.text = _text(value)


def document(root: str, items: Items, namespace: bool = True, text: str | None = None) -> bytes:
    el = ET.Element(root, {"xmlns": NS} if namespace else {})
    el.text = None if text is None else _text(text)
    _fill(el, items)
    body = ET.tostring(el, encoding="utf-8", xml_declaration=False)
    if b"\r" in body:  # a parser reads a raw CR as LF; only a reference keeps a key's CR a CR
        body = body.replace(b"\r", b"&#13;")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def error_document(err: S3Error, resource: str, request_id: str) -> bytes:
    items: list[tuple[str, Any]] = [("Code", err.code), ("Message", err.message)]
    items += list(err.fields.items())
    items += [("Resource", resource), ("RequestId", request_id)]
    return document("Error", items, namespace=False)


def parse(body: bytes, root: str) -> ET.Element:
    """Parse a request body whose root element must be `root`; MalformedXML otherwise.

    expat (>= 2.4.1, as CPython bundles) refuses entity-expansion bombs; no DTDs are fetched.
    """
    if not body.strip():
        raise S3Error("MalformedXML")
    try:
        el = ET.fromstring(body)
    except ET.ParseError:
        raise S3Error("MalformedXML") from None
    for node in el.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{"):
            node.tag = node.tag.split("}", 1)[1]
    if el.tag != root:
        raise S3Error("MalformedXML")
    return el


def child_text(el: ET.Element, tag: str, default: str | None = None) -> str | None:
    found = el.find(tag)
    if found is None:
        return default
    return found.text or ""
