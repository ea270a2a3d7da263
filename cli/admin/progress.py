"""Following a job to its end: a progress bar on a terminal, a line per phase elsewhere."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from cli.admin.formatting import BYTES_VERB, Doc, amount, human_bytes
from gateway.admin.client import AdminClient, AdminError

POLL_INTERVAL = 0.5  # seconds between GET jobs/ID while waiting
POLL_GRACE = 15.0  # how long a wait rides out an unreachable gateway before giving up


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

    verb = BYTES_VERB.get(job.get("kind", ""), "")
    with progress:
        task = progress.add_task(
            describe(job),
            total=_task_total(job),
            completed=job.get("completed", 0),
            unit=job.get("unit", "parts"),
            bytes=job.get("bytes", 0),
            verb=verb,
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
            fields = {"unit": new.get("unit", "parts"), "bytes": new.get("bytes", 0), "verb": verb}
            if new.get("unit") != job.get("unit"):
                # Scrub switches from bytes verified to parts repaired: a new bar, a new rate. The new
                # unit goes in with the reset, or the bar draws the new numbers in the old unit.
                progress.reset(
                    task,
                    total=_task_total(new),
                    completed=new.get("completed", 0),
                    description=describe(new),
                    **fields,
                )
            progress.update(
                task, description=describe(new), total=_task_total(new), completed=new.get("completed", 0), **fields
            )
            job = new
    return job
