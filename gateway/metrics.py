"""The gateway's own Prometheus metrics: repair, GC and event delivery (its S3 requests are counted by the
service skeleton, cluster/service, under tessera_s3_*); and several worker processes' expositions side by side."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from gateway.care.maintenance import Maintenance


class MaintenanceCollector:
    """Read at scrape time from the repairer's and the collector's own tallies."""

    def __init__(self, maintenance: Callable[[], Maintenance | None]) -> None:
        self._maintenance = maintenance

    def collect(self) -> Iterator[Metric]:
        m = self._maintenance()
        if m is None:
            return
        st = m.repairer.stats
        yield CounterMetricFamily("tessera_repaired_parts", "Parts brought back to full redundancy", st.repaired_parts)
        yield CounterMetricFamily("tessera_repaired_bytes", "Object bytes of the parts repaired", st.repaired_bytes)
        yield CounterMetricFamily("tessera_repair_failures", "Repairs that could not be done then", st.failed)
        yield CounterMetricFamily("tessera_gc_fragments", "Unreferenced fragments removed", m.gc.removed_fragments)
        yield CounterMetricFamily("tessera_gc_bytes", "Bytes freed by removing fragments", m.gc.freed_bytes)
        ev = m.notifier.stats
        yield CounterMetricFamily("tessera_events_delivered", "Event deliveries a webhook accepted", ev.delivered)
        yield CounterMetricFamily("tessera_events_retried", "Event deliveries that failed, to be retried", ev.retried)
        yield CounterMetricFamily("tessera_events_dropped", "Events dropped (backlog bound, target gone)", ev.dropped)


class _Labelled:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def by_worker(texts: dict[int, bytes]) -> bytes:
    """Several worker processes' expositions as one, each sample labelled with its worker's number.

    Not summed: a worker that restarts (its counters from zero) or misses a scrape would make a sum
    drop, which Prometheus takes for a counter reset. `sum without (worker) (...)` adds them up."""
    families: dict[str, Metric] = {}
    for number, text in sorted(texts.items()):
        for fam in text_string_to_metric_families(text.decode()):
            into = families.get(fam.name)
            if into is None:
                into = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for sample in fam.samples:
                into.add_sample(sample.name, {**sample.labels, "worker": str(number)}, sample.value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Labelled(list(families.values())))
    return generate_latest(registry)
