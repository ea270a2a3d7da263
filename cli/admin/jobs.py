"""`tessera admin repair`, `scrub`, `job`, `lifecycle run`, `node drain`: jobs run at the gateway, followed here."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import click
from rich.text import Text

from cli.admin.formatting import Doc
from cli.admin.group import admin, make_console, print_json, run
from cli.admin.progress import follow_job
from cli.admin.render import job_failed, job_summary
from gateway.admin.client import AdminClient


def start_job(ctx: click.Context, start: Callable[[AdminClient], Awaitable[Doc]], wait: bool) -> None:
    console = make_console()

    async def go(client: AdminClient) -> Doc:
        job = (await start(client))["job"]
        console.print(Text(f"{job.get('kind', 'job')} job {job.get('id', '')} started"))
        return await follow_job(client, job, console) if wait else job

    job = run(ctx, go)
    if not wait:
        console.print(Text(f"follow it with: tessera admin job {job.get('id', '')} --wait"))
        return
    console.print(Text(job_summary(job), style="red" if job_failed(job) else ""), soft_wrap=True)
    if job_failed(job):
        sys.exit(1)


@admin.command()
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.pass_context
def repair(ctx: click.Context, wait: bool) -> None:
    """Scan for objects below full redundancy and rebuild them."""
    start_job(ctx, lambda c: c.start_repair(), wait)


@admin.command()
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.pass_context
def scrub(ctx: click.Context, wait: bool) -> None:
    """Read and verify every fragment's checksums now; corrupt ones are rebuilt."""
    start_job(ctx, lambda c: c.start_scrub(), wait)


@admin.command()
@click.argument("job_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def job(ctx: click.Context, job_id: str, wait: bool, as_json: bool) -> None:
    """A job started by repair, scrub or node drain (on the gateway that started it)."""
    console = make_console()

    async def go(client: AdminClient) -> Doc:
        found = (await client.job(job_id))["job"]
        return await follow_job(client, found, console) if wait else found

    found = run(ctx, go)
    if as_json:
        print_json({"job": found})
    else:
        console.print(Text(job_summary(found), style="red" if job_failed(found) else ""), soft_wrap=True)
    if found.get("finished") is not None and job_failed(found):
        sys.exit(1)


@admin.group("lifecycle")
def lifecycle_group() -> None:
    """Bucket lifecycle rules."""


@lifecycle_group.command("run")
@click.argument("bucket", required=False, default="")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.pass_context
def lifecycle_run(ctx: click.Context, bucket: str, wait: bool) -> None:
    """Apply the lifecycle rules of BUCKET (every bucket with rules when none is named) now."""
    start_job(ctx, lambda c: c.run_lifecycle(bucket), wait)


@admin.group("node")
def node_group() -> None:
    """Storage node operations."""


@node_group.command()
@click.argument("node")
@click.option("--no-wait", is_flag=True, help="Start the drain and return at once.")
@click.pass_context
def drain(ctx: click.Context, node: str, no_wait: bool) -> None:
    """Move every fragment off NODE, then retire it."""
    start_job(ctx, lambda c: c.drain(node), not no_wait)
