"""`tessera admin status` and `inspect`: the cluster and one object, as tables or JSON."""

from __future__ import annotations

import click

from cli.admin.group import admin, run, show
from cli.admin.render import render_inspect, render_status


@admin.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Nodes, metadata replicas, repair backlog, garbage collection, workers and recent jobs."""
    show(run(ctx, lambda c: c.status()), as_json, render_status)


@admin.command()
@click.argument("target", metavar="BUCKET/KEY")
@click.option("--version-id", default=None, help="A version of the object (its S3 version id, or null).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def inspect(ctx: click.Context, target: str, version_id: str | None, as_json: bool) -> None:
    """An object's EC scheme, segments, where each fragment lives, and its health (its current version,
    or the one --version-id names)."""
    bucket, _, key = target.removeprefix("s3://").partition("/")  # as aws-cli writes it, or BUCKET/KEY
    if not bucket or not key:
        raise click.BadParameter("expected BUCKET/KEY", param_hint="BUCKET/KEY")
    show(run(ctx, lambda c: c.inspect(bucket, key, version_id)), as_json, render_inspect)
