"""LocalIndex's housekeeping tables: the repair queue, users and leases (their Index operations: AdminTables).

Named databases:
    repairs   keys.repair_key(surviving, data_id, part, index) -> RepairEntry   (LMDB order is repair order)
    users     name -> UserRecord
    leases    name -> Lease

Each function is a transaction body: it gets the transaction LocalIndex opened for it and the
environment's named databases, and does its whole work inside it, so it is atomic like every
other index method.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import lmdb

from metadata import keys, lmdb_env
from metadata.index import UserExists
from metadata.records import USER_CHANGEABLE, Lease, RepairEntry, UserRecord, apply_changes, decode, encode

DBS = ("repairs", "users", "leases")

Dbs = dict[str, Any]


def _position(e: RepairEntry) -> bytes:
    try:
        return keys.repair_key(e.surviving, e.data_id, e.part, e.index)
    except struct.error:  # a part or fragment index that does not fit its field
        raise ValueError(f"repair entry out of range: part {e.part}, index {e.index}") from None


# -- the repair queue


def queue_repairs(txn: lmdb.Transaction, dbs: Dbs, entries: Sequence[RepairEntry]) -> None:
    for e in entries:
        txn.put(_position(e), encode(e), db=dbs["repairs"])


def list_repairs(txn: lmdb.Transaction, dbs: Dbs, after: RepairEntry | None, limit: int) -> list[RepairEntry]:
    out: list[RepairEntry] = []
    if limit <= 0:
        return out
    cur = txn.cursor(dbs["repairs"])
    if after is None:
        ok = cur.first()
    else:
        start = _position(after)
        ok = cur.set_range(start)
        if ok and cur.key() == start:
            ok = cur.next()
    while ok and len(out) < limit:
        out.append(decode(RepairEntry, cur.value()))
        ok = cur.next()
    return out


def remove_repairs(txn: lmdb.Transaction, dbs: Dbs, entries: Sequence[RepairEntry]) -> None:
    for e in entries:
        txn.delete(_position(e), db=dbs["repairs"])  # False when absent: nothing to do


def repair_backlog(txn: lmdb.Transaction, dbs: Dbs) -> int:
    return int(txn.stat(dbs["repairs"])["entries"])  # kept by LMDB itself: no scan


# -- users


def create_user(txn: lmdb.Transaction, dbs: Dbs, rec: UserRecord) -> None:
    if not txn.put(rec.name.encode(), encode(rec), db=dbs["users"], overwrite=False):
        raise UserExists(rec.name)


def list_users(txn: lmdb.Transaction, dbs: Dbs) -> list[UserRecord]:
    # UTF-8 byte order is code point order: LMDB's order is sorted(names).
    return [decode(UserRecord, v) for _, v in txn.cursor(dbs["users"])]


def update_user(txn: lmdb.Transaction, dbs: Dbs, name: str, changes: dict[str, str | None]) -> UserRecord | None:
    data = txn.get(name.encode(), db=dbs["users"])
    if data is None:
        return None
    rec = apply_changes(decode(UserRecord, data), changes, USER_CHANGEABLE)
    txn.put(name.encode(), encode(rec), db=dbs["users"])
    return rec


def delete_user(txn: lmdb.Transaction, dbs: Dbs, name: str) -> UserRecord | None:
    data = txn.pop(name.encode(), db=dbs["users"])
    return None if data is None else decode(UserRecord, data)


# -- leases


def acquire_lease(txn: lmdb.Transaction, dbs: Dbs, name: str, holder: str, ttl: float) -> bool:
    if math.isnan(ttl) or ttl < 0:
        raise ValueError(f"a lease lasts zero seconds or more, not {ttl}")
    # Judged and stamped by this index's clock, inside the one writer: two holders never both see it free.
    now = time.time()
    data = txn.get(name.encode(), db=dbs["leases"])
    if data is not None:
        current = decode(Lease, data)
        if current.holder != holder and current.expires > now:
            return False
    txn.put(name.encode(), encode(Lease(name, holder, now + ttl)), db=dbs["leases"])
    return True


def release_lease(txn: lmdb.Transaction, dbs: Dbs, name: str, holder: str) -> bool:
    data = txn.get(name.encode(), db=dbs["leases"])
    if data is None:
        return False
    current = decode(Lease, data)
    if current.holder != holder or current.expires <= time.time():  # an expired lease is held by no one
        return False
    txn.delete(name.encode(), db=dbs["leases"])
    return True


class AdminTables:
    """The Index's repair queue, user and lease operations for LocalIndex (mixed into it), each one of the
    transaction bodies above."""

    _db: Dbs
    _run: Callable[..., Any]
    _lmdb: lmdb_env.LmdbEnv

    async def queue_repairs(self, entries: Sequence[RepairEntry]) -> None:
        await self._run(True, queue_repairs, self._db, list(entries))

    async def list_repairs(self, after: RepairEntry | None = None, limit: int = 1000) -> list[RepairEntry]:
        return await self._run(False, list_repairs, self._db, after, limit)

    async def remove_repairs(self, entries: Sequence[RepairEntry]) -> None:
        await self._run(True, remove_repairs, self._db, list(entries))

    async def repair_backlog(self) -> int:
        return self._lmdb.read_here(repair_backlog, self._db)

    # -- users

    async def create_user(self, rec: UserRecord) -> None:
        await self._run(True, create_user, self._db, rec)

    async def list_users(self) -> list[UserRecord]:
        return await self._run(False, list_users, self._db)

    async def update_user(self, name: str, changes: dict[str, str | None]) -> UserRecord | None:
        return await self._run(True, update_user, self._db, name, changes)

    async def delete_user(self, name: str) -> UserRecord | None:
        return await self._run(True, delete_user, self._db, name)

    # -- leases

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        return await self._run(True, acquire_lease, self._db, name, holder, ttl)

    async def release_lease(self, name: str, holder: str) -> bool:
        return await self._run(True, release_lease, self._db, name, holder)
