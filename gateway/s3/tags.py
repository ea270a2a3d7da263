"""Tag sets as S3 takes them: from the x-amz-tagging header and from Tagging documents, with S3's limits."""

from __future__ import annotations

from urllib.parse import parse_qsl

from multidict import CIMultiDictProxy

from gateway.s3.errors import S3Error
from gateway.s3.xml import child_text, document, parse, xml_safe

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_CHARS = 128  # Unicode characters, as S3 counts them
MAX_VALUE_CHARS = 256
_HEADER_MESSAGE = (
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name "
    "duplicates."
)


def check_tags(pairs: list[tuple[str, str]], limit: int) -> dict[str, str]:
    """A tag set as S3 accepts it (count, lengths, no duplicates, no aws: keys), in the order given."""
    if len(pairs) > limit:
        if limit == MAX_OBJECT_TAGS:
            raise S3Error("BadRequest", f"Object tags cannot be greater than {limit}")
        raise S3Error("InvalidTag", f"Bucket tag count cannot be greater than {limit}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not key or not xml_safe(key):
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid", TagKey=key)
        if len(key) > MAX_KEY_CHARS:
            raise S3Error("InvalidTag", f"The TagKey you have provided is too long, max {MAX_KEY_CHARS}", TagKey=key)
        if key.lower().startswith("aws:"):
            raise S3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:", TagKey=key)
        if not xml_safe(value):
            raise S3Error("InvalidTag", "The TagValue you have provided is invalid", TagKey=key)
        if len(value) > MAX_VALUE_CHARS:
            raise S3Error(
                "InvalidTag", f"The TagValue you have provided is too long, max {MAX_VALUE_CHARS}", TagKey=key
            )
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key", TagKey=key)
        tags[key] = value
    return tags


def header_tags(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The tags of x-amz-tagging (PUT, copy with REPLACE, multipart create): a URL-encoded query string."""
    raw = headers.get("x-amz-tagging")
    if raw is None or not raw.strip():
        return {}
    try:  # the header is small (aiohttp bounds header lines), so parsing it whole is cheap
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", _HEADER_MESSAGE, ArgumentName="x-amz-tagging", ArgumentValue=raw) from None
    if len({k for k, _ in pairs}) != len(pairs):
        raise S3Error("InvalidArgument", _HEADER_MESSAGE, ArgumentName="x-amz-tagging", ArgumentValue=raw)
    return check_tags(pairs, MAX_OBJECT_TAGS)


def parse_tagging(body: bytes, limit: int) -> dict[str, str]:
    """The tag set of a Tagging document (PutObjectTagging, PutBucketTagging)."""
    doc = parse(body, "Tagging")
    tag_set = doc.find("TagSet")
    if tag_set is None or len(doc) != 1:
        raise S3Error("MalformedXML")
    pairs = []
    for tag in tag_set:
        key, value = child_text(tag, "Key"), child_text(tag, "Value")
        if tag.tag != "Tag" or key is None or value is None:
            raise S3Error("MalformedXML")
        pairs.append((key, value))
    return check_tags(pairs, limit)


def tagging_document(tags: dict[str, str]) -> bytes:
    return document("Tagging", [("TagSet", [("Tag", [("Key", k), ("Value", v)]) for k, v in tags.items()])])
