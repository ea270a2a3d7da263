"""The gateway's own Prometheus metrics: repair, GC and event delivery (its S3 requests are counted by the
service skeleton, cluster/service, under tessera_s3_*); and several worker processes' expositions summed."""

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


class _Merged:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge(texts: list[bytes]) -> bytes:
    """Several processes' expositions of the same metrics as one: values summed (counts, sums and
    histogram buckets add up across processes), creation times the earliest."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text.decode()):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                values[fam.name] = {}
            into = values[fam.name]
            for sample in fam.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in into:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(into[key], sample.value)
                else:
                    into[key] += sample.value
    for name, fam in families.items():
        for (sample_name, labels), value in values[name].items():
            fam.add_sample(sample_name, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(list(families.values())))
    return generate_latest(registry)
