"""`tessera admin user add|list|remove`: S3 users."""

from __future__ import annotations

import click

from cli.admin.group import admin, print_json, run, show
from cli.admin.render import new_user_lines, render_users


@admin.group()
def user() -> None:
    """S3 users (each sees only the buckets they created)."""


@user.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON document.")
@click.pass_context
def user_add(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create a user; prints its access key and secret (shown only this once)."""
    doc = run(ctx, lambda c: c.add_user(name))
    if as_json:
        print_json(doc)
    else:
        for line in new_user_lines(doc):
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
