"""Scans of two replicas merged into one sorted stream of newest versions (or, for ListObjects of a versioned
bucket, into each S3 key's first live version), and the cursors the listing logic reads it through (from a
worker thread, hopping to the event loop only per batch)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from metadata.keys import past_key
from metadata.records import UploadRecord, decode
from metadata.replica.merge import Entry, merge_all
from metadata.replica.protocol import Replica

T = TypeVar("T")
Run = tuple[list[tuple[bytes, Entry]], bool]  # a replica's run of a key, and whether it is cut (see first_live)


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
            await self.extend()

    async def extend(self) -> None:
        """Fetch the next batch behind what is buffered."""
        items, self._more = await self._fetch()
        self._buf.extend(items)
        if items:
            self._start, self._inclusive = self._after(items[-1])

    async def _fetch(self) -> tuple[list[tuple[bytes, Entry]], bool]:
        return await self.replica.scan(self._table, self._start, self._inclusive, self._scope, self._batch)

    def _after(self, last: tuple[bytes, Entry]) -> tuple[bytes, bool]:
        """Where the next batch starts after one ending with entry `last`: past its key."""
        return last[0], False

    def head(self) -> tuple[bytes, Entry] | None:
        return self._buf[0] if self._buf else None

    def pop(self) -> None:
        self._buf.popleft()


class RunStream(Stream):
    """One replica's run of each S3 key (ReplicaStore.scan_runs: its entries up to and including its first live
    one), a batch at a time."""

    async def _fetch(self) -> tuple[list[tuple[bytes, Entry]], bool]:
        return await self.replica.scan_runs(self._table, self._start, self._inclusive, self._scope, self._batch)

    def _after(self, last: tuple[bytes, Entry]) -> tuple[bytes, bool]:
        """After a live entry, past the rest of its key (as the replica seeks); after a tombstone, the run goes on."""
        return (last[0], False) if last[1].tombstone else (past_key(last[0], self._scope), True)

    def run(self, end: bytes) -> Run | None:
        """The buffered entries before `end` (one key's run) and whether the run is cut, if they are all of it: it
        ends in a live entry, a later key follows, or the replica has nothing more; else None (the rest is still
        to fetch)."""
        run = list(itertools.takewhile(lambda item: item[0] < end, self._buf))
        if run and not run[-1][1].tombstone:
            return run, True
        return (run, False) if len(run) < len(self._buf) or not self._more else None

    def drop(self, n: int) -> None:
        for _ in range(n):
            self._buf.popleft()


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
        # Only the streams whose buffer ran out fetch: most entries are merged from buffers without a task.
        if not self.ready:
            await self._fill([s for s in self._streams if not s.ready])

    async def _fill(self, streams: Sequence[Stream], step: Callable[[Stream], Awaitable[None]] = Stream.fill) -> None:
        results = await asyncio.gather(*(step(s) for s in streams), return_exceptions=True)
        for s, r in zip(streams, results, strict=True):
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


def by_version(runs: list[Run]) -> dict[bytes, list[Entry | None]]:
    """Each record key the runs hold, with every run's entry of it (None where a run has none)."""
    grouped: dict[bytes, list[Entry | None]] = {}
    for i, (run, _) in enumerate(runs):
        for k, e in run:
            grouped.setdefault(k, [None] * len(runs))[i] = e
    return grouped


def first_live(
    runs: list[Run], grouped: dict[bytes, list[Entry | None]] | None = None
) -> tuple[bool, tuple[bytes, Entry] | None]:
    """The first live entry of replicas' runs merged (each run up to and including its first live entry, and cut
    when it stopped there or at a limit, before the key's end), and whether it is known: whether every cut run
    reaches its key, so that every replica's entries of it and of the keys before it were read. grouped: the
    runs' by_version(), if the caller has it."""
    grouped = by_version(runs) if grouped is None else grouped
    for k in sorted(grouped):
        winner = merge_all(grouped[k])
        if winner is not None and not winner.tombstone:
            return all(not cut or run[-1][0] >= k for run, cut in runs), (k, winner)
    return not any(cut for _, cut in runs), None


class RunsMerged(Merged):
    """A quorum's RunStreams merged into each S3 key's first live entry, by first_live's rule: taken from the runs
    when every replica's run reaches it; else (a replica stale on a removal the other holds, and whose run
    stopped before it) read by `full(prefix)`, all of the key's entries merged. Entries a replica's run reached
    and held older or not at all are noted stale, as Merged does."""

    def __init__(
        self,
        streams: list[RunStream],
        scope: bytes,
        full: Callable[[bytes], Awaitable[tuple[bytes, Entry] | None]],
    ) -> None:
        super().__init__(list(streams))
        self._runs = streams
        self._scope, self._full = scope, full
        self._out: deque[tuple[bytes, Entry]] = deque()
        self._end = False  # every stream is exhausted

    def seek(self, start: bytes, inclusive: bool) -> None:
        super().seek(start, inclusive)
        self._out.clear()
        self._end = False

    def skip(self, past: bytes) -> None:
        while self._out and self._out[0][0] < past:
            self._out.popleft()
        if not self._out:
            super().skip(past)

    @property
    def ready(self) -> bool:
        return bool(self._out) or self._end

    async def fill(self) -> None:
        """Merge every key whose runs are buffered whole; fetch only when none is (one hop from the listing's
        thread per batch, not per key)."""
        while not self.ready:
            needy = self._merge_buffered()
            if isinstance(needy, bytes):
                first = await self._full(needy)
                if first is not None:
                    self._out.append(first)
            elif needy:
                await self._fill(needy, Stream.extend)

    def _merge_buffered(self) -> list[RunStream] | bytes:
        """Merge the buffered runs key by key; stop at a key whose runs are not all buffered (the streams to
        fetch for), or whose first live entry the runs do not tell (the prefix to read in full), or at the end
        (nothing)."""
        while True:
            heads = [h[0] for s in self._runs if (h := s.head()) is not None]
            if not heads:
                if any(not s.ready for s in self._runs):
                    return [s for s in self._runs if not s.ready]
                self._end = True
                return []
            end = past_key(min(heads), self._scope)
            found = [s.run(end) for s in self._runs]
            if any(r is None for r in found):
                return [s for s, r in zip(self._runs, found, strict=True) if r is None]
            runs = [r for r in found if r is not None]
            for s, (run, _) in zip(self._runs, runs, strict=True):
                s.drop(len(run))
            grouped = by_version(runs)
            self._note_stale(runs, grouped)
            known, first = first_live(runs, grouped)
            if not known:
                return end[:-1] + b"\x00"  # the key's versions: its bytes, then NUL
            if first is not None:
                self._out.append(first)

    def _note_stale(self, runs: list[Run], grouped: dict[bytes, list[Entry | None]]) -> None:
        for k, held in grouped.items():
            winner = merge_all(held)
            for s, (run, cut), e in zip(self._runs, runs, held, strict=True):
                if e != winner and (not cut or run[-1][0] >= k):
                    assert winner is not None
                    self.stale.append((s.replica, k, winner))

    def take(self) -> tuple[bytes, Entry] | None:
        return self._out.popleft() if self._out else None


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
