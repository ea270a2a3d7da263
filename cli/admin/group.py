"""The `tessera admin` group and what every command shares: the gateway's endpoint and credentials, one
admin conversation per command, and how failures and documents are printed."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import click
from rich.console import Console

from cli import event_loop
from cli.admin.formatting import Doc
from gateway.admin.client import AdminClient, AdminError

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"

T = TypeVar("T")


@dataclass(frozen=True)
class _Target:
    endpoint: str
    ca_bundle: str | None


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"tessera admin: error: {message}", err=True)
    sys.exit(code)


def _credentials() -> tuple[str, str]:
    ak, sk = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not ak or not sk:
        fail("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the gateway's root credentials")
    return ak, sk


def run(ctx: click.Context, call: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run one admin conversation; every failure becomes one line on stderr and exit 1."""
    target = ctx.find_object(_Target)
    assert target is not None
    ak, sk = _credentials()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    async def conversation() -> T:
        async with AdminClient(target.endpoint, ak, sk, region, ca_bundle=target.ca_bundle) as client:
            return await call(client)

    try:
        return event_loop.run(conversation())
    except AdminError as exc:
        hint = ""
        if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            hint = "; the admin API wants the gateway's root credentials"
        fail(f"{exc}{hint}")
    except KeyboardInterrupt:
        fail("interrupted (a job already started goes on at the gateway: see tessera admin status)", 130)


def make_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or logged: no screen to fit, so no wrapping or cropping at rich's default of 80 columns.
        console = Console(width=512)
    return console


def print_json(doc: Doc) -> None:
    click.echo(json.dumps(doc, indent=2))


def show(doc: Doc, as_json: bool, render: Callable[[Console, Doc], None]) -> None:
    """A document as --json asks for it, or rendered for people."""
    if as_json:
        print_json(doc)
    else:
        render(make_console(), doc)


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
@click.option(
    "--ca-bundle",
    envvar="AWS_CA_BUNDLE",
    default=None,
    metavar="FILE",
    help="PEM file of the CAs to check an https gateway's certificate against (else AWS_CA_BUNDLE).",
)
@click.pass_context
def admin(ctx: click.Context, endpoint: str, ca_bundle: str | None) -> None:
    """Operate a cluster through a gateway (root credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."""
    ctx.obj = _Target(endpoint, ca_bundle or None)
