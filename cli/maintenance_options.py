"""The flags that tune background repair, scanning, garbage collection and scrubbing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gateway.care.maintenance import Settings


def maintenance_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--node-grace",
            type=click.FloatRange(min=0),
            default=600.0,
            show_default=True,
            help="Seconds a storage node may be unreachable before its fragments are rebuilt elsewhere.",
        ),
        click.option(
            "--gc-grace",
            type=click.FloatRange(min=0),
            default=3600.0,
            show_default=True,
            help="Seconds before fragments nothing references (failed writes, leftovers) are removed.",
        ),
        click.option(
            "--scan-interval",
            type=click.FloatRange(min=1),
            default=3600.0,
            show_default=True,
            help="Seconds between background scans for lost redundancy and garbage.",
        ),
        click.option(
            "--repair-rate",
            type=click.FloatRange(min=1),
            default=200.0,
            show_default=True,
            help="MB/s of object data the repairer rebuilds at most.",
        ),
        click.option(
            "--auto-repair/--no-auto-repair",
            default=True,
            show_default=True,
            help="Repair in the background (queue, heal on read, node grace); off, damage is still queued "
            "and `tessera admin repair` still works.",
        ),
        click.option(
            "--repair-concurrency",
            type=click.IntRange(min=1, max=64),
            default=2,
            show_default=True,
            help="Parts repaired at once.",
        ),
        click.option(
            "--min-free",
            type=click.FloatRange(min=0),
            default=1000.0,
            show_default=True,
            help="MB a drive keeps free: below it the drive is full and takes no new fragments "
            "(a PUT that cannot place k+1 fragments gets 503).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def settings(
    node_grace: float,
    gc_grace: float,
    scan_interval: float,
    repair_rate: float,
    repair_concurrency: int,
    auto_repair: bool,
    min_free: float,
) -> Settings:
    return Settings(
        auto_repair=auto_repair,
        node_grace=node_grace,
        gc_grace=gc_grace,
        scan_interval=scan_interval,
        repair_rate=repair_rate * 1e6,
        repair_concurrency=repair_concurrency,
        min_free=int(min_free * 1e6),
    )


def scrub_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--scrub-interval",
        type=click.FloatRange(min=0),
        default=604800.0,
        show_default=True,
        help="Seconds between scrub passes (0: only on demand, `tessera admin scrub`).",
    )(f)
    return click.option(
        "--scrub-rate",
        type=click.FloatRange(min=0, min_open=True),
        default=50.0,
        show_default=True,
        help="MB/s the scrubber reads at most, across all drives.",
    )(f)
