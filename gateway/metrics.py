"""The gateway's Prometheus metrics: S3 requests by operation and status, their latency and bytes; repair and GC."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from gateway.care.maintenance import Maintenance

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _MaintenanceCollector:
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


class GatewayMetrics:
    def __init__(self, maintenance: Callable[[], Maintenance | None] = lambda: None) -> None:
        # One registry per app, so several gateways in one process (tests) do not collide.
        self.registry = CollectorRegistry()
        self.registry.register(_MaintenanceCollector(maintenance))
        self.requests = Counter(
            "tessera_s3_requests", "S3 requests answered", ["operation", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "tessera_s3_request_seconds",
            "Time to answer an S3 request (to the end of its body)",
            ["operation"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.bytes_in = Counter("tessera_s3_received_bytes", "Request body bytes", registry=self.registry)
        self.bytes_out = Counter("tessera_s3_sent_bytes", "Response body bytes", registry=self.registry)
        # labels() checks and locks on every call: a few percent of a small request's CPU. The
        # children it returns are stable, so each is looked up once.
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    def observe(self, operation: str, status: int, seconds: float, received: int, sent: int) -> None:
        counted = self._counted.get((operation, status))
        if counted is None:
            counted = self._counted[operation, status] = self.requests.labels(operation, str(status))
        timed = self._timed.get(operation)
        if timed is None:
            timed = self._timed[operation] = self.latency.labels(operation)
        counted.inc()
        timed.observe(seconds)
        self.bytes_in.inc(received)
        self.bytes_out.inc(sent)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
