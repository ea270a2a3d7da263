"""The replica protocol's server side (metadata/replica/protocol.py), added to the metadata service's app."""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from aiohttp import web

from cluster import auth
from cluster.auth import ClusterAuthError
from metadata.replica import protocol as rp
from metadata.replica.protocol import NotInitialized
from metadata.replica.store import ReplicaStore

log = logging.getLogger(__name__)
STORE = web.AppKey("replica_store", ReplicaStore)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status)


async def _dispatch(store: ReplicaStore, op: str, a: dict[str, Any]) -> dict[str, Any]:
    if op == "get":
        return {"entries": [rp.entry_out(e) for e in await store.get(a["table"], list(a["keys"]))]}
    if op == "get_many":
        return {"entries": [rp.entry_out(e) for e in await store.get_many([(t, k) for t, k in a["reads"]])]}
    if op == "put":
        return {"changed": await store.put(rp.writes_in(a["writes"]))}
    if op == "scan":
        items, more = await store.scan(a["table"], a["start"], bool(a["inclusive"]), a["scope"], int(a["limit"]))
        return {"entries": rp.items_out(items), "more": more}
    if op == "prepare":
        p = await store.prepare(a["table"], a["key"], a["txn"], int(a["ts"]), float(a["lease"]))
        return {"granted": p.granted, "entry": rp.entry_out(p.entry), "promised": p.promised}
    if op == "commit":
        return {"ok": await store.commit(a["table"], a["key"], a["txn"], rp.writes_in(a["writes"]))}
    if op == "release":
        await store.release(a["table"], a["key"], a["txn"])
        return {}
    if op == "chunk_digests":
        return {"chunks": [list(c) for c in await store.chunk_digests(a["table"], int(a["chunk"]))]}
    if op == "range_digests":
        return {"digests": await store.range_digests(a["table"], list(a["starts"]))}
    if op == "pull":
        items, nxt = await store.pull(a["table"], a["start"], a["end"], int(a["limit"]))
        return {"entries": rp.items_out(items), "next": nxt}
    if op == "status":
        return {"initialized": store.initialized}
    raise AssertionError(op)


async def _call(request: web.Request) -> web.Response:
    secret: bytes = request.app[SECRET]
    try:
        claim = auth.verify(secret, request.method, request.rel_url.raw_path_qs, request.headers.get(auth.HEADER))
    except ClusterAuthError as exc:
        return _error(403, "Forbidden", str(exc))
    body = await request.read()
    if claim == auth.STREAMING or auth.body_hash(body) != claim:
        return _error(403, "Forbidden", "the body does not match its signature")
    op = request.match_info["rop"]
    if op not in rp.OPERATIONS:
        return _error(404, "NotFound", f"no replica operation {op!r}")
    try:
        args = msgpack.unpackb(body, raw=False)
        if not isinstance(args, dict):
            raise ValueError("body must be a map")
        result = await _dispatch(request.app[STORE], op, args)
    except NotInitialized as exc:
        return _error(503, "NotInitialized", str(exc))
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, "BadRequest", f"{type(exc).__name__}: {exc}")
    return web.Response(body=msgpack.packb(result, use_bin_type=True), content_type="application/msgpack")


SECRET = web.AppKey("replica_secret", bytes)


def add_routes(app: web.Application, store: ReplicaStore, secret: bytes) -> None:
    app[STORE] = store
    app[SECRET] = secret
    app.router.add_post(rp.PREFIX + "{rop}", _call)
