"""`tessera admin node list|remove` and `tessera admin rebalance`: the cluster's membership and spreading data."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.admin.formatting import Doc, human_bytes, styled
from cli.admin.group import admin, make_console, run, show
from cli.admin.jobs import node_group, start_job
from cli.admin.render import node_live


def render_nodes(console: Console, doc: Doc, now: float | None = None) -> None:
    table = Table(title="Storage nodes", title_justify="left")
    for name in ("ID", "Address", "Zone", "State", "Live", "Drives"):
        table.add_column(name)
    table.add_column("Used / Capacity", justify="right")
    table.add_column("Use", justify="right")
    for n in doc.get("nodes", []):
        capacity, used = n.get("capacity", 0) or 0, n.get("used", 0) or 0
        share = f"{100 * used / capacity:.0f}%" if capacity else "-"
        drives = n.get("drives", [])
        offline = sum(1 for d in drives if str(d.get("state", "")).startswith("offline"))
        drive_text = f"{len(drives)}" + (f" ({offline} offline)" if offline else "")
        table.add_row(
            styled(n.get("id")),
            styled(n.get("address")),
            styled(n.get("zone")),
            styled(n.get("state")),
            node_live(n, now),
            drive_text,
            f"{human_bytes(used)} / {human_bytes(capacity)}",
            share,
        )
    console.print(table)


@node_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def list_nodes(ctx: click.Context, as_json: bool) -> None:
    """Every registered node: address, zone, state, liveness, drives, used/capacity of their filesystems."""
    show(run(ctx, lambda c: c.list_nodes()), as_json, render_nodes)


@node_group.command()
@click.argument("node")
@click.pass_context
def remove(ctx: click.Context, node: str) -> None:
    """Forget NODE: it must hold nothing (retired by a drain, or down and empty) and be stopped."""
    doc = run(ctx, lambda c: c.remove_node(node))
    make_console().print(Text(f"node {doc.get('removed', node)} removed from the cluster"))


@admin.command()
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.pass_context
def rebalance(ctx: click.Context, wait: bool) -> None:
    """Move fragments from the fullest drives to the emptiest until usage evens out (after adding nodes)."""
    start_job(ctx, lambda c: c.rebalance(), wait)
