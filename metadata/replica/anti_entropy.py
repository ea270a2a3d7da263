"""Anti-entropy: a replica pulls from each peer whatever it lacks, comparing range digests first.

Each round, for each peer and table, the peer cuts its table into runs of CHUNK entries (in LMDB key
order) and sends each run's first key and digest; this replica digests the same key ranges of its
own table. Only ranges whose digests differ are pulled, entry by entry, and merged (merge.merge
keeps whichever version is newer, so pulling what is already known changes nothing). In sync, a
round costs one ordered read of each table on both sides and a few kilobytes on the wire. Every
replica pulls from every peer, so all converge; push is not needed.

A replica whose store is fresh (first start, or its directory was wiped) is not initialized: it
refuses reads and prepares (a coordinator uses the others) until it has pulled everything from
enough initialized peers to meet every quorum (of N replicas with a majority quorum Q: N-Q+1 of them;
both peers of three), so a wiped replica never answers "absent" for a record only one peer still
holds. A brand-new cluster, where no replica is initialized, initializes once all see each other.

Tombstones older than the grace period are dropped, but only once both peers hold that tombstone (or
something newer, or have dropped it themselves): no replica can then hand the deleted record back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from cluster.workers import Periodic
from metadata import hlc
from metadata.replica.packed import TABLES
from metadata.replica.protocol import Replica, ReplicaDown, Write
from metadata.replica.store import ReplicaStore

log = logging.getLogger(__name__)

CHUNK = 1000
PULL_LIMIT = 2000
REBUILD_RETRY = 0.5  # seconds between rounds while not initialized
TOMBSTONE_GRACE = 24 * 3600.0
GC_BATCH = 1000


@dataclass
class _Metrics:
    pulled: Counter
    rounds: Counter
    differing: Gauge
    last_round: Gauge
    initialized: Gauge
    purged: Counter


def _metrics(registry: CollectorRegistry | None) -> _Metrics:
    registry = registry or CollectorRegistry()
    return _Metrics(
        pulled=Counter(
            "tessera_meta_antientropy_records",
            "Records anti-entropy pulled that changed this replica",
            ["peer"],
            registry=registry,
        ),
        rounds=Counter("tessera_meta_antientropy_rounds", "Anti-entropy rounds completed", registry=registry),
        differing=Gauge(
            "tessera_meta_antientropy_ranges_differing",
            "Key ranges that differed from a peer in the last round",
            registry=registry,
        ),
        last_round=Gauge(
            "tessera_meta_antientropy_last_round_seconds", "Duration of the last anti-entropy round", registry=registry
        ),
        initialized=Gauge(
            "tessera_meta_replica_initialized", "1 once this replica holds what its peers hold", registry=registry
        ),
        purged=Counter(
            "tessera_meta_tombstones_purged", "Tombstones dropped after the grace period", registry=registry
        ),
    )


class AntiEntropy:
    def __init__(
        self,
        store: ReplicaStore,
        peers: list[Replica],
        interval: float = 30.0,
        registry: CollectorRegistry | None = None,
        tombstone_grace: float = TOMBSTONE_GRACE,
        chunk: int = CHUNK,
    ) -> None:
        self._store = store
        self._peers = peers
        self._interval = interval
        self._grace = tombstone_grace
        self._chunk = chunk
        self._m = _metrics(registry)
        self._m.initialized.set(1 if store.initialized else 0)
        # Initialized peers that together meet every majority quorum of the len(peers)+1 replicas.
        replicas = len(peers) + 1
        self.vouching = replicas - (replicas // 2 + 1) + 1
        self.rounds = 0
        self.vouched = 0  # initialized peers pulled from in full in the last round
        # A round at once, then every interval; quickly again while not initialized.
        self.worker = Periodic(
            "anti-entropy",
            self.round,
            lambda: self._interval if self._store.initialized else REBUILD_RETRY,
            at_once=True,
            what="anti-entropy round",
            counters=lambda: {"rounds": self.rounds, "initialized": self._store.initialized},
        )

    def start(self) -> None:
        self.worker.start()

    async def close(self) -> None:
        await self.worker.stop()
        for p in self._peers:
            closer = getattr(p, "close", None)
            if closer is not None:
                await closer()

    async def round(self) -> int:
        """One pass over every peer (and tombstone collection); returns the records pulled."""
        started = time.monotonic()
        statuses = await asyncio.gather(*(p.status() for p in self._peers), return_exceptions=True)
        reachable = [(p, s) for p, s in zip(self._peers, statuses, strict=True) if isinstance(s, bool)]
        pulled = differing = 0
        synced = vouched = 0
        for peer, peer_initialized in reachable:
            if not peer_initialized and self._store.initialized:
                continue  # it is rebuilding: it pulls from us, we have nothing to learn from it
            try:
                n, d = await self.sync_from(peer)
            except ReplicaDown as exc:
                log.info("anti-entropy: %s unreachable: %s", peer.name, exc)
                continue
            pulled, differing, synced = pulled + n, differing + d, synced + 1
            vouched += peer_initialized
        if not self._store.initialized and (synced == len(self._peers) or vouched >= self.vouching):
            # Every peer's contents (initialized or, in a brand-new cluster, not) are merged in here, or
            # those of enough initialized peers to hold every acknowledged write.
            await self._store.mark_initialized()
            self._m.initialized.set(1)
            log.info("anti-entropy: replica initialized (%d records pulled from its peers)", pulled)
        if self._store.initialized and len(reachable) == len(self._peers) and all(s for _, s in reachable):
            await self.collect_tombstones()
        elapsed = time.monotonic() - started
        self._m.rounds.inc()
        self._m.differing.set(differing)
        self._m.last_round.set(elapsed)
        self.rounds += 1
        self.vouched = vouched
        if pulled or differing:
            log.info("anti-entropy: round pulled %d record(s), %d range(s) differed, %.2fs", pulled, differing, elapsed)
        return pulled

    async def sync_from(self, peer: Replica) -> tuple[int, int]:
        """Pull from `peer` every range whose digest differs; returns (records changed here, ranges differing)."""
        pulled = differing = 0
        for table in TABLES:
            try:
                chunks = await peer.chunk_digests(table, self._chunk)
            except ValueError as exc:  # a peer of an older version, without this table: it holds nothing of it
                log.warning("anti-entropy: %s has no table %s (%s)", peer.name, table, exc)
                continue
            starts = [s for s, _ in chunks]
            mine = await self._store.range_digests(table, starts)
            for i, ((start, theirs), ours) in enumerate(zip(chunks, mine, strict=True)):
                if theirs == ours:
                    continue
                differing += 1
                end = starts[i + 1] if i + 1 < len(starts) else None
                pos: bytes | None = start
                while pos is not None:
                    items, pos = await peer.pull(table, pos, end, PULL_LIMIT)
                    n = await self._store.put([Write(table, k, e) for k, e in items])
                    if n:
                        pulled += n
                        self._m.pulled.labels(peer.name).inc(n)
                if differing % 20 == 0:
                    log.info(
                        "anti-entropy: %s from %s: %d of %d ranges checked, %d records pulled",
                        table,
                        peer.name,
                        i + 1,
                        len(chunks),
                        pulled,
                    )
        return pulled, differing

    async def collect_tombstones(self) -> int:
        before = hlc.pack(int((time.time() - self._grace) * 1000))
        purged = 0
        for table in TABLES:
            candidates = await self._store.tombstones(table, before, GC_BATCH)
            if not candidates:
                continue
            key_list = [k for k, _ in candidates]
            try:
                theirs = await asyncio.gather(*(p.get(table, key_list) for p in self._peers))
            except ReplicaDown:
                return purged
            except ValueError:  # a peer without this table (an older version) cannot vouch: keep them
                continue
            safe = [
                (k, e)
                for j, (k, e) in enumerate(candidates)
                if all(t[j] is None or t[j].hlc >= e.hlc for t in theirs)  # type: ignore[union-attr]
            ]
            n = await self._store.purge(table, safe)
            purged += n
            self._m.purged.inc(n)
        if purged:
            log.info("tombstone collection: %d tombstone(s) dropped", purged)
        return purged
