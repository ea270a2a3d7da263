"""`tessera admin`: operate a running cluster through a gateway's admin API (docs/admin-api.md).

Credentials and endpoint come from where aws-cli takes them, so an operator's shell set up for `aws s3` works
as is. The render_* functions are pure (document in, text on a rich Console out) so they can be tested without
a server; everything that talks to the gateway goes through gateway.admin.client.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from cli import event_loop
from gateway.admin.client import AdminClient, AdminError

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
POLL_INTERVAL = 0.5  # seconds between GET jobs/ID while waiting
POLL_GRACE = 15.0  # how long a wait rides out an unreachable gateway before giving up

T = TypeVar("T")
Doc = dict[str, Any]

_STATE_STYLE = {
    # fragments
    "ok": "green",
    "missing": "red",
    "corrupt": "bold red",
    "unreachable": "yellow",
    # nodes
    "active": "green",
    "draining": "yellow",
    "retired": "dim",
    # objects and parts
    "healthy": "green",
    "degraded": "yellow",
    "unreadable": "bold red",
    # jobs
    "done": "green",
    "failed": "bold red",
}
_BYTES_VERB = {"repair": "rebuilt", "drain": "moved", "scrub": "verified"}


# -- formatting ---------------------------------------------------------------------------------------


def human_bytes(n: float | None) -> str:
    """Binary units, as drives and object sizes are usually thought of in powers of two."""
    value = float(n or 0)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


def human_duration(seconds: float) -> str:
    """The two largest units: 45s, 11m40s, 1h, 2d3h."""
    rest = int(max(0.0, float(seconds)))
    units = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
    for i, (size, unit) in enumerate(units[:-1]):
        if rest >= size:
            whole, rest = divmod(rest, size)
            small, small_unit = units[i + 1]
            return f"{whole}{unit}" + (f"{rest // small}{small_unit}" if rest >= small else "")
    return f"{rest}s"


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "never"
    return f"{human_duration((time.time() if now is None else now) - ts)} ago"


def amount(value: float | None, unit: str) -> str:
    """A count of work in the job's unit: parts as a number, bytes human-readable."""
    return human_bytes(value) if unit == "bytes" else f"{int(value or 0)} {unit}"


def styled(value: object, style_key: str | None = None) -> Text:
    """A table cell: Text, never markup, since keys and messages can contain '[...]'."""
    text = "" if value is None else str(value)
    return Text(text, style=_STATE_STYLE.get(style_key if style_key is not None else text, ""))


def _timestamp(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _ec_width(ec: str) -> int | None:
    """k+m of an "k+m" scheme, or None if it is not one."""
    k, sep, m = str(ec).partition("+")
    return int(k) + int(m) if sep and k.isdigit() and m.isdigit() else None


def _ec_k(ec: str) -> int | None:
    k, sep, m = str(ec).partition("+")
    return int(k) if sep and k.isdigit() and m.isdigit() else None


def part_health(part: Doc) -> str:
    """As the API defines an object's health, per part: all k+m ok, at least k ok, or fewer."""
    if part.get("inline"):
        return "healthy"
    width, k, healthy = _ec_width(part.get("ec", "")), _ec_k(part.get("ec", "")), int(part.get("healthy", 0))
    if width is None or k is None:
        return "unknown"
    return "healthy" if healthy >= width else "degraded" if healthy >= k else "unreadable"


# -- rendering ----------------------------------------------------------------------------------------


def render_status(console: Console, doc: Doc, now: float | None = None) -> None:
    console.print(
        Text.assemble(
            ("EC ", "bold"),
            str(doc.get("ec", "?")),
            ("   node grace ", "bold"),
            human_duration(doc.get("node_grace", 0)),
            ("   gc grace ", "bold"),
            human_duration(doc.get("gc_grace", 0)),
        )
    )

    nodes = doc.get("nodes", [])
    table = Table(title="Storage nodes", title_justify="left")
    for name in ("ID", "Address", "Zone", "State", "Live", "Drives"):
        table.add_column(name)
    table.add_column("Capacity", justify="right")
    table.add_column("Free", justify="right")
    for n in nodes:
        live = n.get("live", False)
        live_text = styled("yes", "ok") if live else styled(f"no (seen {ago(n.get('last_seen'), now)})", "missing")
        table.add_row(
            styled(n.get("id")),
            styled(n.get("address")),
            styled(n.get("zone")),
            styled(n.get("state")),
            live_text,
            str(len(n.get("drives", []))),
            human_bytes(n.get("capacity")),
            human_bytes(n.get("free")),
        )
    live_count = sum(1 for n in nodes if n.get("live"))
    table.caption = (
        f"{len(nodes)} node(s), {live_count} live; capacity {human_bytes(sum(n.get('capacity', 0) for n in nodes))}, "
        f"free {human_bytes(sum(n.get('free', 0) for n in nodes))}"
    )
    table.caption_justify = "left"
    console.print(table)

    meta = Table(title="Metadata replicas", title_justify="left")
    meta.add_column("Address")
    meta.add_column("OK")
    meta.add_column("Error")
    for r in doc.get("metadata", []):
        meta.add_row(
            styled(r.get("address")),
            styled("yes", "ok") if r.get("ok") else styled("no", "missing"),
            styled(r.get("error", "")),
        )
    console.print(meta)

    rep = doc.get("repair", {})
    console.print(
        Text.assemble(
            ("Repair: ", "bold"),
            f"backlog {int(rep.get('backlog', 0))} part(s), ",
            ("running" if rep.get("running") else "not running"),
            f"; repaired {int(rep.get('repaired_parts', 0))} part(s) ({human_bytes(rep.get('repaired_bytes'))})",
            f", {human_bytes(rep.get('bytes_per_s'))}/s",
            (f", {int(rep.get('failed', 0))} failed", "red" if rep.get("failed") else ""),
        )
    )
    gc = doc.get("gc", {})
    console.print(
        Text.assemble(
            ("GC: ", "bold"),
            f"removed {int(gc.get('removed_fragments', 0))} fragment(s), freed {human_bytes(gc.get('freed_bytes'))}",
            f", last run {ago(gc.get('last_run'), now)}",
        )
    )

    jobs = doc.get("jobs", [])
    if jobs:
        jt = Table(title="Jobs (newest first)", title_justify="left")
        jt.add_column("ID", no_wrap=True)
        for name in ("Kind", "Target", "Phase", "Progress", "Bytes", "Failed", "Started", "Message"):
            jt.add_column(name)
        for j in jobs:
            unit = j.get("unit", "parts")
            jt.add_row(
                styled(j.get("id")),  # whole: it is what `tessera admin job ID` takes
                styled(j.get("kind")),
                styled(j.get("target")),
                styled(j.get("phase")),
                f"{amount(j.get('completed'), unit)} / {amount(j.get('total'), unit)}",
                human_bytes(j.get("bytes")),
                styled(j.get("failed", 0), "failed" if j.get("failed") else "ok"),
                ago(j.get("started"), now),
                styled(j.get("message")),
            )
        console.print(jt)


def render_inspect(console: Console, doc: Doc) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Object", styled(f"{doc.get('bucket', '')}/{doc.get('key', '')}"))
    head.add_row("Version", styled(doc.get("version_id")))
    head.add_row("Size", f"{human_bytes(doc.get('size'))} ({int(doc.get('size', 0))} bytes)")
    head.add_row("ETag", styled(doc.get("etag")))
    head.add_row("Last modified", _timestamp(doc.get("last_modified")))
    head.add_row("Health", styled(doc.get("health")))
    console.print(head)

    parts = doc.get("parts", [])
    pt = Table(title="Parts", title_justify="left")
    for name in ("Part", "Size", "EC", "Segments", "Fragments ok", "Health"):
        pt.add_column(name)
    for p in parts:
        inline = p.get("inline", False)
        pt.add_row(
            str(p.get("number", "")),
            human_bytes(p.get("size")),
            "inline" if inline else styled(p.get("ec")),
            "-" if inline else f"{int(p.get('segments', 0))} x {human_bytes(p.get('segment_size'))}",
            "in the manifest" if inline else f"{int(p.get('healthy', 0))}/{_ec_width(p.get('ec', '')) or '?'}",
            styled(part_health(p)),
        )
    console.print(pt)

    for p in parts:
        if p.get("inline"):
            continue
        ft = Table(title=f"Part {p.get('number', '')} fragments", title_justify="left")
        for name in ("Index", "Node", "Zone", "Drive", "State"):
            ft.add_column(name)
        ft.add_column("Size", justify="right")
        for f in p.get("fragments", []):
            ft.add_row(
                str(f.get("index", "")),
                styled(f.get("node")),
                styled(f.get("zone")),
                styled(f.get("drive")),
                styled(f.get("state")),
                human_bytes(f.get("size")),
            )
        console.print(ft)


def render_users(console: Console, doc: Doc) -> None:
    table = Table(title="Users", title_justify="left")
    table.add_column("Name")
    table.add_column("Access key")
    table.add_column("Created")
    for u in doc.get("users", []):
        table.add_row(styled(u.get("name")), styled(u.get("access_key")), _timestamp(u.get("created")))
    console.print(table)


def new_user_lines(doc: Doc) -> list[str]:
    """What `user add` prints: the secret is shown this once, so also as a line to paste into a shell."""
    ak, sk = doc.get("access_key", ""), doc.get("secret_key", "")
    return [
        f"User {doc.get('name', '')} created.",
        f"Access key: {ak}",
        f"Secret key: {sk}",
        f"export AWS_ACCESS_KEY_ID={ak}  AWS_SECRET_ACCESS_KEY={sk}",
    ]


def job_summary(job: Doc) -> str:
    unit = job.get("unit", "parts")
    verb = _BYTES_VERB.get(job.get("kind", ""), "done")
    message = job.get("message") or job.get("phase", "")
    return (
        f"{job.get('kind', 'job')} {job.get('phase', '')}: {message} "
        f"({amount(job.get('completed'), unit)} of {amount(job.get('total'), unit)}, "
        f"{human_bytes(job.get('bytes'))} {verb}, {int(job.get('failed', 0))} failed)"
    )


def job_failed(job: Doc) -> bool:
    return job.get("phase") == "failed" or int(job.get("failed", 0)) > 0


# -- progress -----------------------------------------------------------------------------------------


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "parts")
        total = "?" if task.total is None else amount(task.total, unit)
        return Text(f"{amount(task.completed, unit)} / {total}")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("", style="progress.data.speed")
        unit = task.fields.get("unit", "parts")
        rate = f"{human_bytes(speed)}/s" if unit == "bytes" else f"{speed:.1f} {unit}/s"
        return Text(rate, style="progress.data.speed")


class _BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{human_bytes(task.fields.get('bytes', 0))} {task.fields.get('verb', '')}")


def _task_total(job: Doc) -> float | None:
    """None (an indeterminate bar) while the job does not know its total yet."""
    total = job.get("total") or 0
    return float(total) if total or job.get("finished") is not None else None


async def follow_job(client: AdminClient, job: Doc, console: Console) -> Doc:
    """Poll GET jobs/ID until the job finishes, showing a progress bar on a terminal; the final JOB."""
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        _CountColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        _BytesColumn(),
        console=console,
        disable=not console.is_terminal,  # no cursor games in a pipe or a log file
    )

    def describe(j: Doc) -> str:
        return " ".join(str(w) for w in (j.get("kind", "job"), j.get("target"), j.get("phase")) if w)

    with progress:
        task = progress.add_task(
            describe(job),
            total=_task_total(job),
            completed=job.get("completed", 0),
            unit=job.get("unit", "parts"),
            bytes=job.get("bytes", 0),
            verb=_BYTES_VERB.get(job.get("kind", ""), ""),
        )
        unreachable_since: float | None = None
        while job.get("finished") is None:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                new = (await client.job(str(job["id"])))["job"]
            except AdminError as exc:
                # Ride out a gateway blip; the job itself runs on at the gateway either way.
                if exc.status != 0:
                    raise
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > POLL_GRACE:
                    raise
                continue
            unreachable_since = None
            if new.get("phase") != job.get("phase") and new.get("finished") is None and not console.is_terminal:
                console.print(Text(describe(new)))
            if new.get("unit") != job.get("unit"):
                # Scrub switches from bytes verified to parts repaired: a new bar, a new rate.
                progress.reset(task, total=_task_total(new), completed=new.get("completed", 0))
            progress.update(
                task,
                description=describe(new),
                total=_task_total(new),
                completed=new.get("completed", 0),
                unit=new.get("unit", "parts"),
                bytes=new.get("bytes", 0),
            )
            job = new
    return job


# -- commands -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    endpoint: str


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"tessera admin: error: {message}", err=True)
    sys.exit(code)


def _credentials() -> tuple[str, str]:
    ak, sk = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not ak or not sk:
        _fail("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the gateway's root credentials")
    return ak, sk


def _run(ctx: click.Context, call: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run one admin conversation; every failure becomes one line on stderr and exit 1."""
    endpoint = ctx.find_object(_Target).endpoint  # type: ignore[union-attr]
    ak, sk = _credentials()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    async def conversation() -> T:
        async with AdminClient(endpoint, ak, sk, region) as client:
            return await call(client)

    try:
        return event_loop.run(conversation())
    except AdminError as exc:
        hint = ""
        if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            hint = "; the admin API wants the gateway's root credentials"
        _fail(f"{exc}{hint}")
    except KeyboardInterrupt:
        _fail("interrupted (a job already started goes on at the gateway: see tessera admin status)", 130)


def _console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or logged: no screen to fit, so no wrapping or cropping at rich's default of 80 columns.
        console = Console(width=512)
    return console


def _print_json(doc: Doc) -> None:
    click.echo(json.dumps(doc, indent=2))


def _start_job(ctx: click.Context, start: Callable[[AdminClient], Awaitable[Doc]], wait: bool) -> None:
    console = _console()

    async def go(client: AdminClient) -> Doc:
        job = (await start(client))["job"]
        console.print(Text(f"{job.get('kind', 'job')} job {job.get('id', '')} started"))
        return await follow_job(client, job, console) if wait else job

    job = _run(ctx, go)
    if not wait:
        console.print(Text(f"follow it with: tessera admin job {job.get('id', '')} --wait"))
        return
    console.print(Text(job_summary(job), style="red" if job_failed(job) else ""), soft_wrap=True)
    if job_failed(job):
        sys.exit(1)


@click.group()
@click.option(
    "--endpoint",
    "--endpoint-url",
    "endpoint",
    envvar="AWS_ENDPOINT_URL",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    help="The gateway's URL (else AWS_ENDPOINT_URL).",
)
@click.pass_context
def admin(ctx: click.Context, endpoint: str) -> None:
    """Operate a cluster through a gateway (root credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."""
    ctx.obj = _Target(endpoint)


@admin.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Nodes, metadata replicas, repair backlog, garbage collection and recent jobs."""
    doc = _run(ctx, lambda c: c.status())
    if as_json:
        _print_json(doc)
    else:
        render_status(_console(), doc)


@admin.command()
@click.argument("target", metavar="BUCKET/KEY")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def inspect(ctx: click.Context, target: str, as_json: bool) -> None:
    """An object's EC scheme, segments, where each fragment lives, and its health."""
    bucket, _, key = target.partition("/")
    if not bucket or not key:
        raise click.BadParameter("expected BUCKET/KEY", param_hint="BUCKET/KEY")
    doc = _run(ctx, lambda c: c.inspect(bucket, key))
    if as_json:
        _print_json(doc)
    else:
        render_inspect(_console(), doc)


@admin.command()
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.pass_context
def repair(ctx: click.Context, wait: bool) -> None:
    """Scan for objects below full redundancy and rebuild them."""
    _start_job(ctx, lambda c: c.start_repair(), wait)


@admin.command()
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.pass_context
def scrub(ctx: click.Context, wait: bool) -> None:
    """Read and verify every fragment's checksums now; corrupt ones are rebuilt."""
    _start_job(ctx, lambda c: c.start_scrub(), wait)


@admin.command()
@click.argument("job_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it finishes.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def job(ctx: click.Context, job_id: str, wait: bool, as_json: bool) -> None:
    """A job started by repair, scrub or node drain (on the gateway that started it)."""
    console = _console()

    async def go(client: AdminClient) -> Doc:
        found = (await client.job(job_id))["job"]
        return await follow_job(client, found, console) if wait else found

    found = _run(ctx, go)
    if as_json:
        _print_json({"job": found})
    else:
        console.print(Text(job_summary(found), style="red" if job_failed(found) else ""), soft_wrap=True)
    if found.get("finished") is not None and job_failed(found):
        sys.exit(1)


@admin.group("node")
def node_group() -> None:
    """Storage node operations."""


@node_group.command()
@click.argument("node")
@click.option("--no-wait", is_flag=True, help="Start the drain and return at once.")
@click.pass_context
def drain(ctx: click.Context, node: str, no_wait: bool) -> None:
    """Move every fragment off NODE, then retire it."""
    _start_job(ctx, lambda c: c.drain(node), not no_wait)


@admin.group()
def user() -> None:
    """S3 users (each sees only the buckets they created)."""


@user.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def user_add(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create a user; prints its access key and secret (shown only this once)."""
    doc = _run(ctx, lambda c: c.add_user(name))
    if as_json:
        _print_json(doc)
    else:
        for line in new_user_lines(doc):
            click.echo(line)


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """Every user, by name."""
    doc = _run(ctx, lambda c: c.list_users())
    if as_json:
        _print_json(doc)
    else:
        render_users(_console(), doc)


@user.command("remove")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Delete a user: its access key stops working at once."""
    _run(ctx, lambda c: c.remove_user(name))
    click.echo(f"User {name} removed.")
