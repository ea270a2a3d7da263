"""`tessera admin user add|list|remove` and `tessera admin policy set|show`: S3 users and their policies."""

from __future__ import annotations

from pathlib import Path

import click

from cli.admin.group import admin, fail, print_json, run, show
from cli.admin.render import new_user_lines, render_users

_BUILTIN = ("readonly", "readwrite")
_POLICY_HELP = "readwrite (the default: their own buckets), readonly, or a JSON policy FILE (docs/access.md)."


def _policy(value: str) -> tuple[str, bytes]:
    """(built-in name, "") or ("", the document FILE holds)."""
    if value in _BUILTIN:
        return value, b""
    try:
        return "", Path(value).read_bytes()
    except OSError as exc:
        fail(f"cannot read the policy file {value}: {exc.strerror or exc}")


@admin.group()
def user() -> None:
    """S3 users (each owns the buckets they create; a policy may widen or narrow that)."""


@user.command("add")
@click.argument("name")
@click.option("--policy", "policy", default="", metavar="POLICY", help=_POLICY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def user_add(ctx: click.Context, name: str, policy: str, as_json: bool) -> None:
    """Create a user; prints its access key and secret (shown only this once)."""
    builtin, document = _policy(policy) if policy else ("", b"")
    doc = run(ctx, lambda c: c.add_user(name, builtin, document))
    if as_json:
        print_json(doc)
    else:
        lines = new_user_lines(doc)
        lines.insert(1, f"Policy: {doc.get('policy', 'readwrite')}")  # the export line stays last
        for line in lines:
            click.echo(line)


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """Every user, by name."""
    show(run(ctx, lambda c: c.list_users()), as_json, render_users)


@user.command("remove")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Delete a user: its access key stops working at once."""
    run(ctx, lambda c: c.remove_user(name))
    click.echo(f"User {name} removed.")


@admin.group("policy")
def policy_group() -> None:
    """A user's policy: what they may do beyond (or short of) their own buckets."""


@policy_group.command("set")
@click.argument("name")
@click.argument("policy", metavar="POLICY")
@click.pass_context
def policy_set(ctx: click.Context, name: str, policy: str) -> None:
    """Give user NAME a POLICY: readwrite, readonly, or a JSON policy file. Takes effect at once."""
    builtin, document = _policy(policy)
    doc = run(ctx, lambda c: c.set_policy(name, builtin, document))
    click.echo(f"User {name} now has the {doc.get('policy')} policy.")


@policy_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def policy_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Print user NAME's policy: its name, and the document of a custom or readonly one."""
    doc = run(ctx, lambda c: c.show_policy(name))
    if as_json:
        print_json(doc)
        return
    click.echo(f"Policy: {doc.get('policy')}")
    if doc.get("document"):
        click.echo(doc["document"])
