"""Scans of two replicas merged into one sorted stream of newest versions, and the cursors the
listing logic reads it through (from a worker thread, hopping to the event loop only per batch)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from metadata.keys import past_key
from metadata.records import UploadRecord, decode
from metadata.replica.merge import Entry, merge_all
from metadata.replica.protocol import Replica

T = TypeVar("T")


class Stream:
    """One replica's entries of a table in key order, fetched a batch at a time."""

    def __init__(self, replica: Replica, table: str, scope: bytes, batch: int) -> None:
        self.replica = replica
        self._table, self._scope, self._batch = table, scope, batch
        self._buf: deque[tuple[bytes, Entry]] = deque()
        self._start, self._inclusive, self._more = scope, True, True

    def seek(self, start: bytes, inclusive: bool) -> None:
        self._buf.clear()
        self._start, self._inclusive, self._more = start, inclusive, True

    def skip(self, past: bytes) -> None:
        """Drop the buffered entries before `past`; if none is left, fetch from `past` on, not what lies before."""
        while self._buf and self._buf[0][0] < past:
            self._buf.popleft()
        if not self._buf and self._more and past > self._start:
            self._start, self._inclusive = past, True

    @property
    def ready(self) -> bool:
        """Whether head() can answer without fetching."""
        return bool(self._buf) or not self._more

    async def fill(self) -> None:
        if not self.ready:
            items, self._more = await self._fetch()
            self._buf.extend(items)
            if items:
                self._start, self._inclusive = self._after(items[-1][0])

    async def _fetch(self) -> tuple[list[tuple[bytes, Entry]], bool]:
        return await self.replica.scan(self._table, self._start, self._inclusive, self._scope, self._batch)

    def _after(self, last: bytes) -> tuple[bytes, bool]:
        """Where the next batch starts after one ending at key `last`: past it."""
        return last, False

    def head(self) -> tuple[bytes, Entry] | None:
        return self._buf[0] if self._buf else None

    def pop(self) -> None:
        self._buf.popleft()


class LatestStream(Stream):
    """One copy's first live entry of each S3 key (ReplicaStore.scan_latest), a batch at a time: for a copy read
    alone (EmbeddedIndex._scan_latest)."""

    def __init__(self, replica: Any, table: str, scope: bytes, batch: int) -> None:
        super().__init__(replica, table, scope, batch)
        self._copy = replica  # a DriveCopy: the only replica that scans so

    async def _fetch(self) -> tuple[list[tuple[bytes, Entry]], bool]:
        return await self._copy.scan_latest(self._table, self._start, self._inclusive, self._scope, self._batch)

    def _after(self, last: bytes) -> tuple[bytes, bool]:
        """Past the last key's other entries too."""
        return past_key(last, self._scope), True


class Merged:
    """Two replicas' streams merged by key, newest version winning; notes which replica was stale."""

    def __init__(self, streams: list[Stream]) -> None:
        self._streams = streams
        self.stale: list[tuple[Replica, bytes, Entry]] = []
        self.failed: Replica | None = None  # the replica whose fetch failed, if one did

    def seek(self, start: bytes, inclusive: bool) -> None:
        for s in self._streams:
            s.seek(start, inclusive)

    def skip(self, past: bytes) -> None:
        """Go past the entries before `past` without merging them (what a stale replica holds there is left as
        it is: read repair covers the entries read)."""
        for s in self._streams:
            s.skip(past)

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self._streams)

    async def fill(self) -> None:
        results = await asyncio.gather(*(s.fill() for s in self._streams), return_exceptions=True)
        for s, r in zip(self._streams, results, strict=True):
            if isinstance(r, BaseException):
                self.failed = s.replica
                raise r

    async def next(self) -> tuple[bytes, Entry] | None:
        await self.fill()
        return self.take()

    def take(self) -> tuple[bytes, Entry] | None:
        """The next merged entry; only when ready (both streams have a head buffered, or are done)."""
        heads = [s.head() for s in self._streams]
        present = [h[0] for h in heads if h is not None]
        if not present:
            return None
        key = min(present)
        versions = [h[1] if h is not None and h[0] == key else None for h in heads]
        winner = merge_all(versions)
        assert winner is not None
        for s, v in zip(self._streams, versions, strict=True):
            if v is not None:
                s.pop()
            if v != winner:
                self.stale.append((s.replica, key, winner))
        return key, winner

    async def live(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        while (limit is None or len(out) < limit) and (item := await self.next()) is not None:
            if not item[1].tombstone:
                out.append((item[0], item[1].value))
        return out


class SyncCursor:
    """listing.Cursor over a Merged scan of one bucket, for the listing logic running in a worker thread."""

    def __init__(
        self,
        merged: Merged,
        loop: asyncio.AbstractEventLoop,
        ns: bytes,
        s3_key: Callable[[bytes, bytes], bytes],
        exclusive_suffix: bytes = b"",
    ) -> None:
        self._merged, self._loop, self._ns = merged, loop, ns
        self._s3_key = s3_key  # (record key, value) -> the S3 key the entry belongs to
        self._suffix = exclusive_suffix

    def _wait(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def seek(self, key: bytes, inclusive: bool = False) -> None:
        if self._suffix and not inclusive:
            self._merged.seek(self._ns + key + self._suffix, True)
        else:
            self._merged.seek(self._ns + key, inclusive)

    def skip(self, past: bytes) -> None:
        """Go past the entries before `past` (listing.TwoTables.skip_key)."""
        self._merged.skip(self._ns + past)

    def next(self) -> tuple[bytes, bytes] | None:
        while True:
            # Hop to the event loop only to fetch a batch; buffered entries are merged right here.
            if not self._merged.ready:
                self._wait(self._merged.fill())
            item = self._merged.take()
            if item is None:
                return None
            if not item[1].tombstone:
                return self._s3_key(item[0], item[1].value), item[1].value


class Decoding:
    """A cursor whose values are decoded UploadRecords (what listing.list_uploads works on)."""

    def __init__(self, cursor: SyncCursor) -> None:
        self._cursor = cursor

    def seek(self, key: bytes, inclusive: bool = False) -> None:
        self._cursor.seek(key, inclusive)

    def next(self) -> tuple[bytes, UploadRecord] | None:
        item = self._cursor.next()
        return None if item is None else (item[0], decode(UploadRecord, item[1]))
