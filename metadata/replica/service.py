"""The replica protocol's server side (metadata/replica/protocol.py), added to the metadata service's app
(the skeleton there authenticates every request before these handlers run)."""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from aiohttp import web

from cluster.service import ErrorAnswer, Handler, Service
from metadata.index import IndexFull
from metadata.replica import protocol as rp
from metadata.replica.protocol import NotInitialized
from metadata.replica.store import ReplicaStore

log = logging.getLogger(__name__)


async def _dispatch(store: ReplicaStore, op: str, a: dict[str, Any]) -> dict[str, Any]:
    if op == "get":
        return {"entries": [rp.entry_out(e) for e in await store.get(a["table"], list(a["keys"]))]}
    if op == "get_many":
        return {"entries": [rp.entry_out(e) for e in await store.get_many([(t, k) for t, k in a["reads"]])]}
    if op == "head":
        reads = [(t, k) for t, k in a["reads"]]
        h = await store.head(reads, a["table"], a["prefix"], a["scope"], int(a["limit"]))
        return {"entries": [rp.entry_out(e) for e in h.entries], "run": rp.items_out(h.run), "cut": h.cut}
    if op == "put":
        return {"changed": await store.put(rp.writes_in(a["writes"]))}
    if op in ("scan", "scan_runs"):
        scan = store.scan if op == "scan" else store.scan_runs
        items, more = await scan(a["table"], a["start"], bool(a["inclusive"]), a["scope"], int(a["limit"]))
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


def _operation(store: ReplicaStore, op: str) -> Handler:
    async def call(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise ErrorAnswer(405, "MethodNotAllowed", "replica operations are called with POST")
        body = await request.read()  # read and checked against its signature already
        try:
            args = msgpack.unpackb(body, raw=False)
            if not isinstance(args, dict):
                raise ValueError("body must be a map")
            result = await _dispatch(store, op, args)
        except NotInitialized as exc:
            raise ErrorAnswer(503, "NotInitialized", str(exc)) from None
        except IndexFull as exc:  # 507 Insufficient Storage: the coordinator counts this replica out
            raise ErrorAnswer(507, "IndexFull", str(exc)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ErrorAnswer(400, "BadRequest", f"{type(exc).__name__}: {exc}") from None
        return web.Response(body=msgpack.packb(result, use_bin_type=True), content_type="application/msgpack")

    return call


async def _no_such_operation(request: web.Request) -> web.StreamResponse:
    raise ErrorAnswer(404, "NotFound", f"no replica operation {request.match_info['tail']!r}")


def add_routes(service: Service, store: ReplicaStore) -> None:
    """The replica operations, as routes of the metadata service; logged only when debugging or failing
    (three calls per write, and anti-entropy rounds)."""
    for op in sorted(rp.OPERATIONS):
        service.route("*", rp.PREFIX + op, _operation(store, op), operation=f"replica_{op}", quiet=True)
    service.route("*", rp.PREFIX + "{tail:.*}", _no_such_operation, operation="unknown")
