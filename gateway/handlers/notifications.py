"""Bucket notifications: Put/GetBucketNotificationConfiguration, and the events a write queues (docs/notifications.md).

Rules are S3's QueueConfiguration elements whose Queue names a target the operator registered
(`tessera admin notify add NAME --webhook URL`): `arn:tessera:sqs::NAME`, or MinIO's form
`arn:minio:sqs::NAME:webhook`. They are stored on the bucket record as JSON; a write that matches a rule
hands the index an EventRecord, which the index queues in the write's own transaction.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import owned_bucket, read_small_body, xml_response
from gateway.s3.errors import S3Error
from gateway.s3.notification_rules import EVENTS, Rule, rules_of, target_of, to_json
from gateway.s3.request import S3Request
from gateway.s3.xml import child_text, document, parse
from metadata.index import NoSuchBucket

MAX_RULES = 100
_UNSUPPORTED_DESTINATIONS = ("TopicConfiguration", "CloudFunctionConfiguration", "EventBridgeConfiguration")


def _invalid(message: str, name: str = "", value: str = "") -> S3Error:
    fields = {"ArgumentName": name, "ArgumentValue": value} if name else {}
    return S3Error("InvalidArgument", message, **fields)


def _filter(el: Any) -> tuple[str, str]:
    prefix = suffix = None
    f = el.find("Filter")
    if f is None:
        return "", ""
    key = f.find("S3Key")
    for rule in key.findall("FilterRule") if key is not None else []:
        name, value = (child_text(rule, "Name") or "").lower(), child_text(rule, "Value")
        if value is None or name not in ("prefix", "suffix"):
            raise _invalid("filter rule name must be either prefix or suffix", "FilterRule", name)
        if (prefix if name == "prefix" else suffix) is not None:
            raise _invalid("Cannot specify more than one prefix (or suffix) rule in a filter.", "FilterRule", name)
        if name == "prefix":
            prefix = value
        else:
            suffix = value
    return prefix or "", suffix or ""


def parse_config(raw: bytes, targets: set[str]) -> list[Rule]:
    """The rules of a NotificationConfiguration body, every target checked to exist."""
    doc = parse(raw, "NotificationConfiguration")
    for tag in _UNSUPPORTED_DESTINATIONS:
        if doc.find(tag) is not None:
            raise _invalid(f"{tag} is not supported: register a webhook target and use QueueConfiguration.", tag)
    rules: list[Rule] = []
    for i, el in enumerate(doc.findall("QueueConfiguration")):
        arn = (child_text(el, "Queue") or "").strip()
        target = target_of(arn)
        if target is None or target not in targets:
            raise _invalid("Unable to validate the following destination configurations", arn or "Queue", arn)
        events = tuple(e.text.strip() for e in el.findall("Event") if e.text)
        if not events:
            raise S3Error("MalformedXML")
        bad = [e for e in events if e not in EVENTS]
        if bad:
            raise _invalid("The event is not supported for notifications", "Event", bad[0])
        prefix, suffix = _filter(el)
        rules.append(Rule(child_text(el, "Id") or f"rule-{i + 1}", target, arn, events, prefix, suffix))
    if len(rules) > MAX_RULES:
        raise _invalid(f"At most {MAX_RULES} notification configurations are allowed.")
    return rules


# -- the two operations


async def get_notification(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    items: list[tuple[str, Any]] = []
    for r in rules_of(rec.notifications):
        conf: list[tuple[str, Any]] = [("Id", r.id), ("Queue", r.arn)]
        conf += [("Event", e) for e in r.events]
        pairs = (("prefix", r.prefix), ("suffix", r.suffix))
        named = [("FilterRule", [("Name", n), ("Value", v)]) for n, v in pairs if v]
        if named:
            conf.append(("Filter", [("S3Key", named)]))
        items.append(("QueueConfiguration", conf))
    return xml_response(document("NotificationConfiguration", items))


async def put_notification(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    raw = await read_small_body(req, body_checksums=True)
    targets = {t.name for t in await gw.index.list_notify_targets()}
    rules = parse_config(raw, targets)
    try:
        await gw.index.set_notifications(req.bucket, to_json(rules))
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None
    return web.Response(status=200)
