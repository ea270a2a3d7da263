"""`tessera admin bucket quota|info`, `tessera admin user quota|info` and `tessera admin notify add|list|remove`."""

from __future__ import annotations

import re

import click
from rich.console import Console

from cli.admin.formatting import Doc, human_bytes
from cli.admin.group import admin, run, show
from cli.admin.users import user
from gateway.admin.client import AdminClient

_SIZE_RE = re.compile(r"([0-9]+)\s*([KMGTP]?)(i?B?)", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def parse_size(text: str) -> int:
    """Bytes from "10GiB", "500MB", "1T" or "4096": KiB/MiB/GiB/... and K/M/G/... are powers of 1024, KB/MB/GB
    powers of 1000."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None or (m.group(3) and not m.group(2) and m.group(3).lower() != "b"):
        raise click.BadParameter(f"{text!r} is not a size (e.g. 10GiB, 500MB, 4096)")
    number, prefix, suffix = int(m.group(1)), m.group(2).upper(), m.group(3).lower()
    base = 1000 if suffix == "b" and prefix else 1024
    return number * base ** _POWERS[prefix]


def _size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else parse_size(value)


def _limits_text(quota: Doc) -> str:
    size, objects = quota.get("max_size", 0), quota.get("max_objects", 0)
    parts = ([f"{human_bytes(size)} ({size} bytes)"] if size else []) + ([f"{objects} objects"] if objects else [])
    return ", ".join(parts) or "none"


def render_info(console: Console, doc: Doc) -> None:
    usage = doc.get("usage", {})
    what = f"bucket {doc['name']}" if "versioning" in doc else f"user {doc['name']}"
    console.print(f"[bold]{what}[/bold]  owner {doc.get('owner', doc.get('access_key', ''))}", highlight=False)
    if "versioning" in doc:
        console.print(f"versioning: {doc['versioning']}   notifications: {'on' if doc.get('notifications') else 'off'}")
    held, objects = usage.get("bytes", 0), usage.get("objects", 0)
    console.print(f"usage: {human_bytes(held)} ({held} bytes) in {objects} objects", highlight=False)
    console.print(f"quota: {_limits_text(doc.get('quota', {}))}")


def _quota_options(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option("--clear", is_flag=True, help="Remove the quota.")(fn)
    fn = click.option("--max-objects", type=click.IntRange(min=0), default=None, help="Objects (versions) at most.")(fn)
    return click.option("--max-size", callback=_size, default=None, help="Bytes at most: 10GiB, 500MB, 4096 ...")(fn)


def _set_quota(
    ctx: click.Context, kind: str, name: str, max_size: int | None, max_objects: int | None, clear: bool
) -> None:
    """Set or clear the quota of a bucket or a user (kind), and say what it is now."""
    if clear and (max_size is not None or max_objects is not None):
        raise click.UsageError("--clear takes no --max-size or --max-objects")
    if not clear and max_size is None and max_objects is None:
        raise click.UsageError("give --max-size, --max-objects or --clear")
    if kind == "bucket":
        clear_call, set_call = AdminClient.clear_bucket_quota, AdminClient.set_bucket_quota
    else:
        clear_call, set_call = AdminClient.clear_user_quota, AdminClient.set_user_quota
    if clear:
        doc = run(ctx, lambda c: clear_call(c, name))
    else:
        doc = run(ctx, lambda c: set_call(c, name, max_size, max_objects))
    click.echo(f"{kind} {name}: quota {_limits_text(doc.get('quota', {}))}")


@admin.group()
def bucket() -> None:
    """Buckets: quotas and usage."""


@bucket.command("quota")
@click.argument("name")
@_quota_options
@click.pass_context
def bucket_quota(ctx: click.Context, name: str, max_size: int | None, max_objects: int | None, clear: bool) -> None:
    """Set or clear a bucket's quota: writes that would pass it are refused (403 QuotaExceeded)."""
    _set_quota(ctx, "bucket", name, max_size, max_objects, clear)


@bucket.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def bucket_info(ctx: click.Context, name: str, as_json: bool) -> None:
    """A bucket's usage (every version counted) and quota."""
    show(run(ctx, lambda c: c.bucket_info(name)), as_json, render_info)


@user.command("quota")
@click.argument("name")
@_quota_options
@click.pass_context
def user_quota(ctx: click.Context, name: str, max_size: int | None, max_objects: int | None, clear: bool) -> None:
    """Set or clear a user's quota, over all the buckets they own together."""
    _set_quota(ctx, "user", name, max_size, max_objects, clear)


@user.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def user_info(ctx: click.Context, name: str, as_json: bool) -> None:
    """A user's usage over all their buckets, and quota."""
    show(run(ctx, lambda c: c.user_info(name)), as_json, render_info)


@admin.group()
def notify() -> None:
    """Webhook targets for bucket event notifications (docs/notifications.md)."""


@notify.command("add")
@click.argument("name")
@click.option("--webhook", required=True, help="The URL events are POSTed to.")
@click.option("--auth-token", default="", help="Sent as 'Authorization: Bearer TOKEN'.")
@click.pass_context
def notify_add(ctx: click.Context, name: str, webhook: str, auth_token: str) -> None:
    """Register (or replace) a webhook target; buckets name it as arn:tessera:sqs::NAME."""
    doc = run(ctx, lambda c: c.add_notify_target(name, webhook, auth_token))
    click.echo(f"target {name}: {doc.get('webhook')}  (use <Queue>{doc.get('arn')}</Queue>)")


@notify.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def notify_list(ctx: click.Context, as_json: bool) -> None:
    """Every target, and how many events wait for delivery."""

    def render(console: Console, doc: Doc) -> None:
        for t in doc.get("targets", []):
            token = "  (auth token set)" if t.get("auth_token") else ""
            console.print(f"{t['name']}  {t['webhook']}{token}", highlight=False)
        console.print(f"{doc.get('backlog', 0)} event(s) queued", highlight=False)

    show(run(ctx, lambda c: c.list_notify_targets()), as_json, render)


@notify.command("remove")
@click.argument("name")
@click.pass_context
def notify_remove(ctx: click.Context, name: str) -> None:
    """Forget a target: events still queued for it are dropped."""
    run(ctx, lambda c: c.remove_notify_target(name))
