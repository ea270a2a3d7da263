"""The admin API's node operations beside drain: list the nodes, remove one, and rebalance the cluster."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.errors import AdminError
from gateway.admin.http import json_ok
from gateway.admin.ops import maintenance, node_docs
from gateway.care.scanner import stored_parts, upload_parts
from gateway.context import Gateway
from metadata.records import NodeRecord


def _cluster_nodes(gw: Gateway, what: str) -> list[NodeRecord]:
    nodes: list[NodeRecord] | None = getattr(gw.layer.drives, "nodes", None)
    if nodes is None:
        raise AdminError(400, "InvalidArgument", f"the embedded server's drives are fixed: {what} needs a cluster")
    return nodes


async def list_nodes(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    docs, _ = node_docs(gw, await maintenance(gw).rebuilding())
    for doc in docs:
        doc["used"] = max(0, doc["capacity"] - doc["free"])
    return json_ok({"nodes": docs})


async def _fragments_on(gw: Gateway, drive_ids: set[str]) -> int:
    """Fragments of stored versions and of uploads in progress that are placed on these drives."""
    count = 0
    async for _, part in stored_parts(gw.index):
        count += sum(d in drive_ids for d in part.placement)
    async for _, _, part in upload_parts(gw.index):
        count += sum(d in drive_ids for d in part.placement)
    return count


async def remove_node(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    """Forget a node that holds nothing: retired (drained), or down and empty. A running node would
    register itself again at its next heartbeat, so it must be stopped first."""
    node_id = params["node"]
    _cluster_nodes(gw, "node remove")
    node = next((n for n in await gw.index.list_nodes() if n.node_id == node_id), None)
    if node is None:
        raise AdminError(404, "NoSuchNode", f"no node {node_id!r}")
    live = {s.node_id for s in gw.layer.drives.all_slots() if s.live}
    if node_id in live:
        hint = "" if node.state == "retired" else f", drain it first (tessera admin node drain {node_id}),"
        raise AdminError(
            409,
            "NodeInUse",
            f"node {node_id} is {node.state} and running{hint} and stop it: "
            "a running node registers itself again at its next heartbeat",
        )
    held = await _fragments_on(gw, {d.drive_id for d in node.drives})
    if held:
        raise AdminError(
            409,
            "NodeInUse",
            f"node {node_id} ({node.state}, down) still holds {held} fragment(s) of stored data: start it and "
            f"drain it (tessera admin node drain {node_id}), or let repair rebuild them elsewhere first",
        )
    await gw.index.remove_node(node_id)
    refresh = getattr(gw.layer.drives, "refresh", None)
    if refresh is not None:
        await refresh()
    return json_ok({"removed": node_id})


async def rebalance(gw: Gateway, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    m = maintenance(gw)
    _cluster_nodes(gw, "rebalance")
    job = m.rebalance_job()  # asking again while one runs here follows that one
    return json_ok({"job": job.doc()}, status=202 if job.phase == "starting" else 200)
