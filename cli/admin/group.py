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
from cli.admin.profile import Identity, ProfileError, identity
from gateway.admin.client import AdminClient, AdminError

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"

T = TypeVar("T")


@dataclass(frozen=True)
class _Target:
    endpoint: str | None  # None: the profile's endpoint_url, else DEFAULT_ENDPOINT
    ca_bundle: str | None
    profile: str | None


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"tessera admin: error: {message}", err=True)
    sys.exit(code)


def _identity(profile: str | None) -> Identity:
    try:
        found = identity(profile)
    except ProfileError as exc:
        fail(str(exc))
    if not found.access_key or not found.secret_key:
        fail(
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the gateway's root credentials, "
            "or name a profile of ~/.aws/credentials with --profile or AWS_PROFILE"
        )
    return found


def run(ctx: click.Context, call: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run one admin conversation; every failure becomes one line on stderr and exit 1."""
    target = ctx.find_object(_Target)
    assert target is not None
    who = _identity(target.profile)
    endpoint = target.endpoint or who.endpoint or DEFAULT_ENDPOINT

    async def conversation() -> T:
        async with AdminClient(
            endpoint, who.access_key, who.secret_key, who.region, ca_bundle=target.ca_bundle
        ) as client:
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
    default=None,
    help=f"The gateway's URL (else AWS_ENDPOINT_URL, else the profile's endpoint_url, else {DEFAULT_ENDPOINT}).",
)
@click.option(
    "--ca-bundle",
    envvar="AWS_CA_BUNDLE",
    default=None,
    metavar="FILE",
    help="PEM file of the CAs to check an https gateway's certificate against (else AWS_CA_BUNDLE).",
)
@click.option(
    "--profile",
    default=None,
    help="A profile of ~/.aws/credentials and ~/.aws/config to sign with (else AWS_PROFILE), as aws-cli.",
)
@click.pass_context
def admin(ctx: click.Context, endpoint: str | None, ca_bundle: str | None, profile: str | None) -> None:
    """Operate a cluster through a gateway with its root credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    or a profile of ~/.aws/credentials as aws-cli finds them)."""
    ctx.obj = _Target(endpoint or None, ca_bundle or None, profile or None)
