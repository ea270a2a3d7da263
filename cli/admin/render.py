"""The render_* functions: a document of the admin API in, text on a rich Console out. Pure, so they can be
tested without a server."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.admin.formatting import (
    BYTES_VERB,
    Doc,
    ago,
    amount,
    ec_width,
    human_bytes,
    human_duration,
    part_health,
    styled,
    timestamp,
)


def node_live(n: Doc, now: float | None = None) -> Text:
    """ "yes", or when the node was last heard from."""
    return styled("yes", "ok") if n.get("live") else styled(f"no (seen {ago(n.get('last_seen'), now)})", "missing")


def render_status(console: Console, doc: Doc, now: float | None = None) -> None:
    console.print(
        Text.assemble(
            ("Tessera ", "bold"),
            str(doc.get("version", "?")),
            ("   EC ", "bold"),
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
        live_text = node_live(n, now)
        table.add_row(
            styled(n.get("id")),
            styled(n.get("address")),
            styled(n.get("zone")),
            styled(n.get("state")),
            live_text,
            _drive_paths(n.get("drives", [])),
            human_bytes(n.get("capacity")),
            human_bytes(n.get("free")),
        )
    live_count = sum(1 for n in nodes if n.get("live"))
    # Totals count each filesystem once; a gateway from before they were reported gives only the nodes'.
    capacity = doc.get("capacity", sum(n.get("capacity", 0) for n in nodes))
    free = doc.get("free", sum(n.get("free", 0) for n in nodes))
    table.caption = (
        f"{len(nodes)} node(s), {live_count} live; capacity {human_bytes(capacity)}, free {human_bytes(free)}"
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

    if doc.get("workers"):  # a gateway from before workers were reported has none
        console.print(workers_table(doc["workers"], now))

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


def _drive_paths(drives: list[Doc]) -> Text:
    """One line per drive: its path, or its id when the node did not say where it is, and its state
    when the gateway says it ("ok", "adopted, rebuilding", "offline: why")."""
    out = Text()
    for i, d in enumerate(drives):
        out.append(("\n" if i else "") + str(d.get("path") or d.get("id", "")))
        state = d.get("state")
        if state:
            out.append(f"  {state}", "green" if state == "ok" else "yellow" if state.startswith("adopted") else "red")
    return out if drives else Text("-")


def workers_table(workers: list[Doc], now: float | None = None) -> Table:
    """The gateway's background workers: what each is doing, when it last ran, and how its last run went."""
    wt = Table(title="Workers", title_justify="left")
    for name in ("Name", "State", "Last run", "Runs", "Failed", "Progress", "Last error"):
        wt.add_column(name)
    for w in workers:
        progress = w.get("progress") or {}
        unit = progress.get("unit", "")
        wt.add_row(
            styled(w.get("name")),
            styled(w.get("state")),
            ago(w.get("last_start"), now),
            str(int(w.get("runs", 0))),
            styled(w.get("failures", 0), "failed" if w.get("failures") else "ok"),
            f"{amount(progress.get('done'), unit)} / {amount(progress.get('total'), unit)}" if progress else "",
            styled(w.get("last_error", ""), "failed"),
        )
    return wt


def render_inspect(console: Console, doc: Doc) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Object", styled(f"{doc.get('bucket', '')}/{doc.get('key', '')}"))
    head.add_row("Version", styled(doc.get("version_id")))
    if doc.get("s3_version_id") not in (None, "null"):
        head.add_row("S3 version id", styled(doc.get("s3_version_id")))
    if doc.get("delete_marker"):
        head.add_row("Delete marker", "yes")
    head.add_row("Size", f"{human_bytes(doc.get('size'))} ({int(doc.get('size', 0))} bytes)")
    head.add_row("ETag", styled(doc.get("etag")))
    head.add_row("Last modified", timestamp(doc.get("last_modified")))
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
            "in the manifest" if inline else f"{int(p.get('healthy', 0))}/{ec_width(p.get('ec', '')) or '?'}",
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
    table.add_column("Policy")
    for u in doc.get("users", []):
        row = (styled(u.get("name")), styled(u.get("access_key")), timestamp(u.get("created")))
        table.add_row(*row, styled(u.get("policy", "readwrite")))
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
    verb = BYTES_VERB.get(job.get("kind", ""), "done")
    message = job.get("message") or job.get("phase", "")
    return (
        f"{job.get('kind', 'job')} {job.get('phase', '')}: {message} "
        f"({amount(job.get('completed'), unit)} of {amount(job.get('total'), unit)}, "
        f"{human_bytes(job.get('bytes'))} {verb}, {int(job.get('failed', 0))} failed)"
    )


def job_failed(job: Doc) -> bool:
    return job.get("phase") == "failed" or int(job.get("failed", 0)) > 0
