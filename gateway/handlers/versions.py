"""Versioning: Get/PutBucketVersioning, ListObjectVersions, and what object operations share about versions
(version ids on writes, reads by versionId, delete markers). The model is in docs/versioning.md."""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from gateway.context import Gateway
from gateway.handlers.buckets import owned_bucket, owner_items, read_small_body, xml_response
from gateway.handlers.listing import MAX_KEYS, encoder, url_encoding
from gateway.objects.layer import new_id
from gateway.s3.errors import S3Error
from gateway.s3.notification_rules import events_for
from gateway.s3.request import S3Request, int_param
from gateway.s3.xml import child_text, document, http_date, iso8601, parse
from metadata.index import NoSuchBucket
from metadata.records import (
    NULL_VERSION,
    VERSIONING_STATES,
    BucketRecord,
    LockGuard,
    ObjectManifest,
    is_version_id,
    new_version_id,
    s3_version,
)

_LOCKED_VERSIONING = (
    "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
)

# -- the bucket's configuration


async def get_bucket_versioning(gw: Gateway, req: S3Request) -> web.StreamResponse:
    rec = await owned_bucket(gw, req)
    # Never configured: an empty configuration, as S3 answers.
    return xml_response(document("VersioningConfiguration", [("Status", rec.versioning or None)]))


async def put_bucket_versioning(gw: Gateway, req: S3Request) -> web.StreamResponse:
    bucket = await owned_bucket(gw, req)
    doc = parse(await read_small_body(req, body_checksums=True), "VersioningConfiguration")
    status, mfa = child_text(doc, "Status"), child_text(doc, "MfaDelete")
    if mfa is not None and mfa not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML")
    if mfa == "Enabled":
        raise S3Error("NotImplemented", "MFA Delete is not implemented.")
    if status not in VERSIONING_STATES:
        raise S3Error(
            "IllegalVersioningConfigurationException",
            "The Versioning element must be specified" if status is None else "Invalid versioning status",
        )
    try:
        if bucket.object_lock and status != "Enabled":
            raise ValueError("object lock keeps versioning Enabled")
        await gw.index.set_versioning(req.bucket, status)
    except NoSuchBucket:
        raise S3Error("NoSuchBucket", BucketName=req.bucket) from None
    except ValueError:  # the index's answer too, when object lock was enabled meanwhile
        raise S3Error("InvalidBucketState", _LOCKED_VERSIONING, 409) from None
    return web.Response(status=200)


# -- what object operations share


def stamp(man: ObjectManifest, bucket: BucketRecord) -> ObjectManifest:
    """Give a new version its S3 version id: a new one while versioning is Enabled, else the null version."""
    man.s3_version_id = new_version_id(man.last_modified) if bucket.versioning == "Enabled" else ""
    return man


def version_header(man: ObjectManifest, bucket: BucketRecord | None = None) -> dict[str, str]:
    """x-amz-version-id for an answer about `man`: in a bucket whose versioning was ever configured
    (`bucket`, when the caller has it), or for a version that has an id."""
    if man.s3_version_id or (bucket is not None and bucket.versioning):
        return {"x-amz-version-id": s3_version(man)}
    return {}


def version_param(req: S3Request, name: str = "versionId") -> str | None:
    """The versionId a request names (None without one); InvalidArgument for one we never hand out."""
    value = req.query.get(name)
    if value is not None:
        check_version_id(value, name)
    return value


def check_version_id(value: str, name: str = "versionId") -> None:
    if not is_version_id(value):
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName=name, ArgumentValue=value)


def _marker_headers(man: ObjectManifest) -> dict[str, str]:
    return {"x-amz-delete-marker": "true", "x-amz-version-id": s3_version(man)}


async def read_version(gw: Gateway, req: S3Request, bucket: BucketRecord) -> ObjectManifest:
    """What a GET or HEAD reads: the current version, or the one ?versionId= names.

    A key whose newest version is a delete marker answers NoSuchKey saying so; a delete marker named by
    its version id answers MethodNotAllowed (it has no data), as S3 does."""
    version = version_param(req)
    if version is None:
        man = await gw.index.get_object(req.bucket, req.key) if req.key else None
        if man is not None:
            return man
        latest = await gw.index.latest_version(req.bucket, req.key) if bucket.versioning and req.key else None
        err = S3Error("NoSuchKey", Key=req.key)
        if latest is not None and latest.delete_marker:
            err.headers.update(_marker_headers(latest))
        raise err
    man = await gw.index.get_version(req.bucket, req.key, version) if req.key else None
    if man is None:
        raise S3Error("NoSuchVersion", Key=req.key, VersionId=version)
    if man.delete_marker:
        err = S3Error("MethodNotAllowed", ResourceType="DeleteMarker", Method=req.http.method)
        err.headers.update(_marker_headers(man))
        err.headers["Last-Modified"] = http_date(man.last_modified)
        raise err
    return man


async def delete_key(
    gw: Gateway, bucket: BucketRecord, key: str, version: str | None, owner: str, guard: LockGuard | None = None
) -> tuple[ObjectManifest | None, dict[str, str]]:
    """DeleteObject of `key` (one version, with `version`): what was removed or added, and the answer's
    headers. Without a version in a bucket with versioning configured, a delete marker becomes the latest.
    A version its object lock protects (judged by `guard`) is kept: the index raises ObjectLocked."""
    removed = events_for(bucket, "ObjectRemoved:Delete", key, principal=owner)
    if version is not None:
        for ev in removed:
            ev.version_id = "" if version == NULL_VERSION else version
        old = await gw.index.delete_version(bucket.name, key, version, guard=guard, events=removed)
        if old is not None:
            gw.layer.discard(old.parts)
        headers = {"x-amz-version-id": version}
        if old is not None and old.delete_marker:
            headers["x-amz-delete-marker"] = "true"
        return old, headers
    if not bucket.versioning:
        old = await gw.index.delete_object(bucket.name, key, events=removed)
        if old is not None:
            gw.layer.discard(old.parts)
        return old, {}
    now = time.time()
    marker = ObjectManifest(bucket.name, key, new_id(), 0, "", now, owner, [], delete_marker=True)
    stamp(marker, bucket)
    freed = await gw.index.put_object(
        marker, events=events_for(bucket, "ObjectRemoved:DeleteMarkerCreated", key, marker, owner)
    )
    if freed is not None:
        gw.layer.discard(freed.parts)
    return marker, _marker_headers(marker)


# -- ListObjectVersions


async def list_object_versions(gw: Gateway, req: S3Request) -> web.StreamResponse:
    await owned_bucket(gw, req)
    asked = url_encoding(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    key_marker = req.query.get("key-marker", "")
    id_marker = req.query.get("version-id-marker", "")
    if id_marker:
        if not key_marker:
            raise S3Error(
                "InvalidArgument",
                "A version-id marker cannot be specified without a key marker.",
                ArgumentName="version-id-marker",
                ArgumentValue=id_marker,
            )
        check_version_id(id_marker, "version-id-marker")
    max_keys = min(int_param(req.query, "max-keys", MAX_KEYS), MAX_KEYS)
    page = await gw.index.list_versions(req.bucket, prefix, key_marker, id_marker, delimiter, max_keys)
    echoed = (prefix, delimiter, key_marker, page.next_key_marker)
    keys = (e.manifest.key for e in page.versions)
    enc_type, enc = encoder(asked, itertools.chain(echoed, page.prefixes, keys))
    items: list[tuple[str, Any]] = [
        ("Name", req.bucket),
        ("Prefix", enc(prefix)),
        ("KeyMarker", enc(key_marker)),
        ("VersionIdMarker", id_marker),
    ]
    if page.truncated:
        items.append(("NextKeyMarker", enc(page.next_key_marker)))
        if page.next_version_id_marker:
            items.append(("NextVersionIdMarker", page.next_version_id_marker))
    items.append(("MaxKeys", max_keys))
    if delimiter:
        items.append(("Delimiter", enc(delimiter)))
    if enc_type:
        items.append(("EncodingType", enc_type))
    items.append(("IsTruncated", page.truncated))
    for entry in page.versions:
        m = entry.manifest
        head: list[tuple[str, Any]] = [
            ("Key", enc(m.key)),
            ("VersionId", s3_version(m)),
            ("IsLatest", entry.latest),
            ("LastModified", iso8601(m.last_modified)),
        ]
        if m.delete_marker:
            items.append(("DeleteMarker", [*head, ("Owner", owner_items(m.owner))]))
            continue
        body: list[tuple[str, Any]] = [("ETag", f'"{m.etag}"')]
        body += [("ChecksumAlgorithm", algo) for algo in m.checksums]
        if m.checksums:
            body.append(("ChecksumType", m.checksum_type or "FULL_OBJECT"))
        body += [("Size", m.size), ("StorageClass", "STANDARD"), ("Owner", owner_items(m.owner))]
        items.append(("Version", head + body))
    items += [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.prefixes]
    return xml_response(document("ListVersionsResult", items))
