"""Summaries of a run: a table for people (rich when installed), one JSON line for scripts, a PNG plot."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from bench.workload import Result, Sample


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _stats(samples: list[Sample], seconds: float) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    lat = sorted((s.end - s.start) * 1000 for s in ok)
    nbytes = sum(s.nbytes for s in ok)
    out: dict[str, Any] = {
        "ops": len(ok),
        "errors": len(samples) - len(ok),
        "mb_s": nbytes / seconds / 1e6 if seconds else 0.0,
        "objects_s": len(ok) / seconds if seconds else 0.0,
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else math.nan,
    }
    items = sum(s.items for s in ok)
    if items:
        out["items_s"] = items / seconds
    return out


def summarize(result: Result, endpoint: str = "") -> dict[str, Any]:
    spec = result.spec
    seconds = max(result.ended - result.started, 1e-9)
    summary: dict[str, Any] = {
        "endpoint": endpoint,
        "op": spec.op,
        "size": spec.size,
        "concurrency": spec.concurrency,
        "seconds": round(seconds, 3),
        **_stats(result.samples, seconds),
        "error_kinds": dict(result.errors),
        "client_cpu_s": round(result.client_cpu_s, 3),
        # Client CPU per op: what the load generator itself costs (a core's worth = 1.0 x seconds).
        "client_cpu_share": round(result.client_cpu_s / seconds, 3),
    }
    if spec.part_size:
        summary["part_size"] = spec.part_size
    by_op: dict[str, list[Sample]] = defaultdict(list)
    for s in result.samples:
        by_op[s.op].append(s)
    if len(by_op) > 1:
        summary["by_op"] = {op: _round(_stats(ss, seconds)) for op, ss in sorted(by_op.items())}
    if result.error_examples:
        summary["error_examples"] = result.error_examples
    return _round(summary)


def _round(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float):
            out[k] = None if math.isnan(v) else round(v, 3)
        elif isinstance(v, dict):
            out[k] = _round(v)
        else:
            out[k] = v
    return out


def json_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, separators=(",", ":"))


def human_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


def table(summary: dict[str, Any]) -> None:
    """Print the summary as a table: rich's when installed, plain text otherwise."""
    rows = [("all" if "by_op" in summary else summary["op"], summary)]
    rows += list(summary.get("by_op", {}).items())
    cols = ("op", "ops", "MB/s", "obj/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors")

    def cells(name: str, s: dict[str, Any]) -> list[str]:
        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        return [
            name,
            str(s["ops"]),
            f(s["mb_s"], ".1f"),
            f(s["objects_s"], ".0f"),
            f(s["p50_ms"], ".2f"),
            f(s["p90_ms"], ".2f"),
            f(s["p99_ms"], ".2f"),
            f(s["max_ms"], ".2f"),
            str(s["errors"]),
        ]

    title = (
        f"{summary['op']} {human_size(summary['size'])} x{summary['concurrency']} for {summary['seconds']:.1f}s"
        f"  {summary['endpoint']}  (client CPU {summary['client_cpu_share']:.2f} cores)"
    )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print("  ".join(f"{c:>9}" for c in cols))
        for name, s in rows:
            print("  ".join(f"{c:>9}" for c in cells(name, s)))
    else:
        t = Table(title=title)
        for c in cols:
            t.add_column(c, justify="left" if c == "op" else "right")
        for name, s in rows:
            t.add_row(*cells(name, s))
        Console().print(t)
    for example in summary.get("error_examples", []):
        print(f"  error: {example}")


def plot(result: Result, path: str, title: str = "") -> None:
    """Throughput over the run (per op, MB/s for objects of 64 KiB and up, else objects/s) and latency
    percentiles per op; matplotlib with the Agg backend, so no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, span = result.started, max(result.ended - result.started, 1e-9)
    width = 1.0 if span >= 20 else 0.5 if span >= 5 else 0.25
    nbins = max(1, math.ceil(span / width))
    by_bytes = result.spec.size >= 64 << 10
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * nbins)
    for s in result.samples:
        if s.ok:
            i = min(nbins - 1, int((s.end - t0) / width))
            amount = s.nbytes / 1e6 if by_bytes else 1.0
            series[s.op][i] += amount
            if result.spec.op == "mixed":
                series["all"][i] += amount
    widths = [min(width, span - i * width) for i in range(nbins)]
    if nbins > 1 and widths[-1] < width / 2:
        # The last bin holds only the drain (operations in flight at the deadline finishing): as a rate of
        # its own it would show a spike, so it joins the bin before it.
        nbins -= 1
        widths = [*widths[:-2], widths[-2] + widths[-1]]
        for values in series.values():
            values[-2:] = [values[-2] + values[-1]]
    xs = [i * width + w / 2 for i, w in enumerate(widths)]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for op, values in sorted(series.items()):
        ax1.plot(xs, [v / w for v, w in zip(values, widths, strict=True)], marker=".", label=op)
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("MB/s" if by_bytes else "objects/s")
    ax1.set_ylim(bottom=0)
    ax1.set_title(f"throughput ({width:g} s bins)")
    ax1.grid(alpha=0.3)
    ax1.legend()

    qs = [50, 75, 90, 95, 99, 99.9, 100]
    by_op: dict[str, list[float]] = defaultdict(list)
    for s in result.samples:
        if s.ok:
            by_op[s.op].append((s.end - s.start) * 1000)
    for op, lat in sorted(by_op.items()):
        lat.sort()
        ax2.plot([f"p{q:g}" if q < 100 else "max" for q in qs], [percentile(lat, q) for q in qs], marker="o", label=op)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("percentile")
    ax2.set_ylabel("latency ms")
    ax2.set_title("latency percentiles")
    ax2.grid(alpha=0.3)
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
