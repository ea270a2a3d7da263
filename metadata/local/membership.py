"""LocalIndex's cluster membership (metadata/local/store.py runs these transaction bodies, as admin_tables.py's).

Named databases:
    nodes           node_id -> NodeRecord   (as the node last reported it; its state is not kept here)
    node_states     node_id -> state   (NODE_STATES, set by operators; a node without one is "active")
    drive_owners    drive_id -> node_id   (a drive belongs to one node)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import lmdb

from metadata.index import DriveClaimed, NoSuchNode
from metadata.records import NodeRecord, decode, encode

Dbs = dict[str, Any]


def _node(txn: lmdb.Transaction, dbs: Dbs, data: bytes) -> NodeRecord:
    """A stored node record with its operator state, which heartbeats never carry."""
    rec = decode(NodeRecord, data)
    state = txn.get(rec.node_id.encode(), db=dbs["node_states"])
    rec.state = "active" if state is None else state.decode()
    return rec


def upsert_node(txn: lmdb.Transaction, dbs: Dbs, rec: NodeRecord) -> NodeRecord:
    owners = dbs["drive_owners"]
    claimed = [d.drive_id for d in rec.drives]
    if len(set(claimed)) != len(claimed):
        raise ValueError(f"node {rec.node_id} lists a drive twice")
    node = rec.node_id.encode()
    for drive_id in claimed:
        owner = txn.get(drive_id.encode(), db=owners)
        if owner is not None and owner != node:
            raise DriveClaimed(drive_id, owner.decode())
    stored = txn.get(node, db=dbs["nodes"])
    previous = None if stored is None else decode(NodeRecord, stored)
    for d in previous.drives if previous else []:
        if d.drive_id not in claimed:
            txn.delete(d.drive_id.encode(), db=owners)
    for drive_id in claimed:
        txn.put(drive_id.encode(), node, db=owners)
    data = encode(dataclasses.replace(rec, last_seen=time.time(), state="active"))
    txn.put(node, data, db=dbs["nodes"])
    return _node(txn, dbs, data)  # a copy sharing nothing with the caller's record


def list_nodes(txn: lmdb.Transaction, dbs: Dbs) -> list[NodeRecord]:
    return [_node(txn, dbs, v) for _, v in txn.cursor(dbs["nodes"])]


def remove_node(txn: lmdb.Transaction, dbs: Dbs, node_id: str) -> bool:
    stored = txn.get(node_id.encode(), db=dbs["nodes"])
    if stored is None:
        return False
    for d in decode(NodeRecord, stored).drives:
        txn.delete(d.drive_id.encode(), db=dbs["drive_owners"])
    txn.delete(node_id.encode(), db=dbs["nodes"])
    txn.delete(node_id.encode(), db=dbs["node_states"])  # a node registering again starts active
    return True


def set_node_state(txn: lmdb.Transaction, dbs: Dbs, node_id: str, state: str) -> NodeRecord:
    data = txn.get(node_id.encode(), db=dbs["nodes"])
    if data is None:
        raise NoSuchNode(node_id)
    txn.put(node_id.encode(), state.encode(), db=dbs["node_states"])
    return _node(txn, dbs, data)
