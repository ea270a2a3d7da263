"""The replica protocol: what coordinators (metadata/replicated/index.py) and anti-entropy ask of one replica.

    POST /r1/<operation>   msgpack map of arguments -> 200 msgpack map of results
    errors                 JSON {"error": kind, "message": ...}: NotInitialized (503: rebuilding),
                           InvalidArgument (400), BadRequest (400), Forbidden (403)

Signed like every internal request (cluster/auth.py). Entries travel as [hlc, tombstone, value] or nil,
keys as bytes. The operations mirror ReplicaStore's methods one to one, so a coordinator running
inside a replica uses its own store directly and the others through ReplicaClient, alike (Replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from metadata.replica.merge import Entry

PREFIX = "/r1/"
OPERATIONS = frozenset(
    "get get_many head put scan scan_runs prepare commit release chunk_digests range_digests pull status".split()
)


class ReplicaDown(Exception):
    """The replica did not answer (refused, timed out, rebuilding, or failed): count it out of the quorum."""


class ReplicaFull(ReplicaDown):
    """The replica has no room for the write (its disk is full): counted out, and said so if no quorum."""


class NotInitialized(ReplicaDown):
    """This replica is rebuilding from its peers and cannot vouch for what it holds yet."""


@dataclass(slots=True)
class Prepared:
    granted: bool
    entry: Entry | None  # the replica's version of the key (whether or not granted)
    promised: int  # the highest timestamp this replica has promised for the key: retry above it


@dataclass(slots=True)
class Head:
    """get_many's entries, and the first entries under a prefix: up to and including the first live one (a
    key's newest version, past the tombstones of removed ones), at most a limit; cut: the run stopped before
    the prefix's end (at that live entry or the limit), so what lies after its last key is unknown."""

    entries: list[Entry | None]
    run: list[tuple[bytes, Entry]]
    cut: bool


@dataclass(slots=True)
class Write:
    table: str
    key: bytes
    entry: Entry


class Replica(Protocol):
    name: str

    async def get(self, table: str, key_list: list[bytes]) -> list[Entry | None]: ...

    async def get_many(self, reads: list[tuple[str, bytes]]) -> list[Entry | None]: ...

    async def head(
        self, reads: list[tuple[str, bytes]], table: str, prefix: bytes, scope: bytes, limit: int
    ) -> Head: ...

    async def put(self, writes: list[Write]) -> int: ...

    async def scan(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]: ...

    async def scan_runs(
        self, table: str, start: bytes, inclusive: bool, scope: bytes, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bool]: ...

    async def prepare(self, table: str, key: bytes, txn_id: str, ts: int, lease: float) -> Prepared: ...

    async def commit(self, table: str, key: bytes, txn_id: str, writes: list[Write]) -> bool: ...

    async def release(self, table: str, key: bytes, txn_id: str) -> None: ...

    async def chunk_digests(self, table: str, chunk: int) -> list[tuple[bytes, bytes]]: ...

    async def range_digests(self, table: str, starts: list[bytes]) -> list[bytes]: ...

    async def pull(
        self, table: str, start: bytes, end: bytes | None, limit: int
    ) -> tuple[list[tuple[bytes, Entry]], bytes | None]: ...

    async def status(self) -> bool:
        """Whether the replica is initialized (answers reads)."""
        ...


def entry_out(e: Entry | None) -> Any:
    return None if e is None else [e.hlc, e.tombstone, e.value]


def entry_in(v: Any) -> Entry | None:
    if v is None:
        return None
    hlc, tomb, value = v
    if not (isinstance(hlc, int) and isinstance(tomb, bool) and isinstance(value, bytes)):
        raise ValueError("malformed entry")
    return Entry(hlc, tomb, value)


def writes_out(writes: list[Write]) -> list[Any]:
    return [[w.table, w.key, entry_out(w.entry)] for w in writes]


def writes_in(v: Any) -> list[Write]:
    out = []
    for table, key, e in v:
        entry = entry_in(e)
        if not isinstance(table, str) or not isinstance(key, bytes) or entry is None:
            raise ValueError("malformed write")
        out.append(Write(table, key, entry))
    return out


def items_out(items: list[tuple[bytes, Entry]]) -> list[Any]:
    return [[k, entry_out(e)] for k, e in items]


def items_in(v: Any) -> list[tuple[bytes, Entry]]:
    out = []
    for k, e in v:
        entry = entry_in(e)
        assert entry is not None
        out.append((k, entry))
    return out
