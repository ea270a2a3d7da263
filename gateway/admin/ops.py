"""The admin API's operations on the data: status, inspect, and the repair, scrub and drain jobs.

Documents are as docs/admin-api.md describes them. Routing and root-only authentication are in
gateway/admin/api.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web

from cluster.version import VERSION
from gateway.admin.errors import AdminError
from gateway.admin.http import json_ok
from gateway.care.maintenance import Maintenance
from gateway.care.part_health import OK, check_part
from gateway.context import Gateway
from gateway.objects.drive_set import health_of
from gateway.objects.erasure import Scheme
from metadata.index import NoSuchNode
from metadata.records import DriveRecord, NodeRecord, is_version_id, s3_version
from storage_node.drive import OFFLINE, Drive

PROBE_TIMEOUT = 2.0


def maintenance(gw: Gateway) -> Maintenance:
    if gw.maintenance is None:
        raise AdminError(503, "ServiceUnavailable", "this gateway runs no repairer")
    return gw.maintenance


def _space(drives: Iterable[DriveRecord]) -> tuple[int, int]:
    """(capacity, free) counting each filesystem once: drives that are directories of one filesystem
    share its space. Drives of nodes that do not say their filesystem count alone."""
    seen: dict[str, DriveRecord] = {}
    for i, d in enumerate(drives):
        seen.setdefault(d.filesystem or f"drive #{i}", d)
    return sum(d.capacity for d in seen.values()), sum(d.free for d in seen.values())


def _drive_doc(d: DriveRecord, rebuilding: set[str]) -> dict[str, Any]:
    """A drive: where it is, its space, and its state: "ok", "adopted, rebuilding" (found empty and formatted
    back in; repair is filling it) or "offline: why"."""
    state = d.state or ("adopted, rebuilding" if d.drive_id in rebuilding else "ok")
    doc = {"id": d.drive_id, "path": d.path, "capacity": d.capacity, "free": d.free, "state": state}
    return doc | {"adopted": d.adopted}


def _node_doc(
    node_id: str,
    address: str,
    zone: str,
    state: str,
    live: bool,
    last_seen: float,
    drives: list[DriveRecord],
    rebuilding: set[str],
) -> dict[str, Any]:
    capacity, free = _space(drives)
    return {
        "id": node_id,
        "address": address,
        "zone": zone,
        "state": state,
        "live": live,
        "last_seen": last_seen,
        "capacity": capacity,
        "free": free,
        "drives": [_drive_doc(d, rebuilding) for d in drives],
    }


def node_docs(gw: Gateway, rebuilding: set[str]) -> tuple[list[dict[str, Any]], list[DriveRecord]]:
    """Every node's document, and every drive (for the totals)."""
    drives = gw.layer.drives
    nodes: list[NodeRecord] | None = getattr(drives, "nodes", None)
    if nodes is not None:
        live = {s.node_id for s in drives.all_slots() if s.live}
        docs = [
            _node_doc(n.node_id, n.address, n.zone, n.state, n.node_id in live, n.last_seen, n.drives, rebuilding)
            for n in nodes
        ]
        return docs, [d for n in nodes for d in n.drives]
    # The embedded server: each local drive stands as a node of its own.
    docs, every = [], []
    known = getattr(drives, "known", drives.drive)  # offline drives too
    for slot in drives.all_slots():
        records = [_local_record(known(drive_id), drive_id) for drive_id in slot.drive_ids]
        docs.append(_node_doc(slot.node_id, "local", slot.zone, "active", True, time.time(), records, rebuilding))
        every += records
    return docs, every


def _local_record(drive: Drive | None, drive_id: str) -> DriveRecord:
    root, health = getattr(drive, "root", None), health_of(drive)
    state = f"offline: {health.detail}" if health is not None and health.state == OFFLINE else ""
    adopted = health.adopted if health is not None else 0.0
    try:
        record = DriveRecord.measure(drive_id, root) if root is not None else DriveRecord(drive_id, 0, 0)
    except OSError:  # the directory is gone: no space to report
        record = DriveRecord(drive_id, 0, 0, str(root))
    record.state, record.adopted = state, adopted
    return record


async def _probe(session: aiohttp.ClientSession, address: str) -> dict[str, Any]:
    try:
        async with session.get(address.rstrip("/") + "/health/ready") as resp:
            if resp.status == 200:
                return {"address": address, "ok": True, "error": ""}
            return {"address": address, "ok": False, "error": f"not ready ({resp.status})"}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return {"address": address, "ok": False, "error": str(exc) or type(exc).__name__}


async def status(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    m = maintenance(gw)
    nodes, every_drive = node_docs(gw, await m.rebuilding())
    capacity, free = _space(every_drive)
    if gw.meta_addresses:
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            meta = list(await asyncio.gather(*(_probe(session, a) for a in gw.meta_addresses)))
    elif gw.index_copies is not None:
        meta = gw.index_copies()
    else:
        meta = [{"address": "local", "ok": True, "error": ""}]
    st = m.repairer.stats
    doc = {
        "version": VERSION,
        "ec": str(gw.layer.scheme),
        "node_grace": m.settings.node_grace,
        "gc_grace": m.settings.gc_grace,
        "nodes": nodes,
        "capacity": capacity,  # each filesystem once, however many drives or nodes share it
        "free": free,
        "metadata": meta,
        "repair": {
            "backlog": await gw.index.repair_backlog(),
            "running": True,
            "repaired_parts": st.repaired_parts,
            "repaired_bytes": st.repaired_bytes,
            "failed": st.failed,
            "bytes_per_s": st.bytes_per_s,
        },
        "gc": {
            "removed_fragments": m.gc.removed_fragments,
            "freed_bytes": m.gc.freed_bytes,
            "aborted_uploads": m.gc.aborted_uploads,
            "last_run": m.gc.last_run,
        },
        "jobs": [j.doc() for j in m.jobs.recent()],
        "workers": [w.status().doc() for w in m.workers],
    }
    return json_ok(doc)


async def inspect(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    bucket, key = request.query.get("bucket", ""), request.query.get("key", "")
    if not bucket or not key:
        raise AdminError(400, "InvalidArgument", "give ?bucket=B&key=K")
    if await gw.index.get_bucket(bucket) is None:
        raise AdminError(404, "NoSuchBucket", f"no bucket {bucket!r}")
    version = request.query.get("versionId")
    if version is None:
        man = await gw.index.get_object(bucket, key)
        if man is None:
            raise AdminError(404, "NoSuchKey", f"no object {key!r} in {bucket!r}")
    else:
        if not is_version_id(version):
            raise AdminError(400, "InvalidArgument", f"{version!r} is not a version id")
        man = await gw.index.get_version(bucket, key, version)
        if man is None:
            raise AdminError(404, "NoSuchVersion", f"no version {version!r} of {key!r} in {bucket!r}")
    parts, worst = [], "healthy"
    for part in man.parts:
        scheme = Scheme(part.k, part.m, part.segment_size)
        doc: dict[str, Any] = {
            "number": part.number,
            "data_id": part.data_id,
            "size": part.size,
            "ec": str(scheme),
            "segment_size": part.segment_size,
            "segments": scheme.segment_count(part.size),
            "inline": part.inline is not None,
            "healthy": scheme.width,
            "fragments": [],
        }
        if part.inline is None:
            states = await check_part(part, gw.layer.drives, verify=True)
            doc["fragments"] = [
                {"index": s.index, "drive": s.drive_id, "node": s.node_id, "zone": s.zone, "state": s.state}
                | {"size": s.size}
                for s in states
            ]
            doc["healthy"] = healthy = sum(s.state == OK for s in states)
            if healthy < part.k:
                worst = "unreadable"
            elif healthy < scheme.width and worst == "healthy":
                worst = "degraded"
        parts.append(doc)
    return json_ok(
        {
            "bucket": man.bucket,
            "key": man.key,
            "version_id": man.version_id,
            "s3_version_id": s3_version(man),
            "delete_marker": man.delete_marker,
            "size": man.size,
            "etag": man.etag,
            "last_modified": man.last_modified,
            "health": worst,
            "parts": parts,
        }
    )


async def start_repair(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    return json_ok({"job": maintenance(gw).repair_job().doc()}, status=202)


async def start_scrub(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    m = maintenance(gw)
    if m.scrub is None:
        raise AdminError(503, "ServiceUnavailable", "no scrubbers are reachable from this gateway")
    return json_ok({"job": m.scrub_job().doc()}, status=202)


async def drain(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    m = maintenance(gw)
    node_id = params["node"]
    if getattr(gw.layer.drives, "nodes", None) is None:
        raise AdminError(
            400, "InvalidArgument", "the embedded server's drives cannot be drained: drain needs a cluster"
        )
    try:
        node = next(n for n in await gw.index.list_nodes() if n.node_id == node_id)
    except StopIteration:
        raise AdminError(404, "NoSuchNode", f"no node {node_id!r}") from None
    if node.state == "retired":
        raise AdminError(400, "InvalidArgument", f"node {node_id} is already retired")
    active = [n for n in await gw.index.list_nodes() if n.state == "active" and n.node_id != node_id]
    if len(active) < gw.layer.scheme.width:
        raise AdminError(
            400,
            "InvalidArgument",
            f"draining {node_id} would leave {len(active)} active nodes; EC {gw.layer.scheme} needs "
            f"{gw.layer.scheme.width}",
        )
    try:
        return json_ok({"job": m.drain_job(node_id).doc()}, status=202)
    except NoSuchNode:
        raise AdminError(404, "NoSuchNode", f"no node {node_id!r}") from None


async def run_lifecycle(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    """A lifecycle pass now: over ?bucket= (which must exist), or every bucket with rules."""
    m = maintenance(gw)
    bucket = request.query.get("bucket", "")
    if bucket and await gw.index.get_bucket(bucket) is None:
        raise AdminError(404, "NoSuchBucket", f"no bucket {bucket!r}")
    return json_ok({"job": m.lifecycle.run_job([bucket] if bucket else []).doc()}, status=202)


async def job(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    found = maintenance(gw).jobs.get(params["id"])
    if found is None:
        raise AdminError(404, "NoSuchJob", f"no job {params['id']!r} on this gateway")
    return json_ok({"job": found.doc()})
