"""The `tessera` command."""

from __future__ import annotations

import click

from cli.admin import admin
from cli.dev import dev
from cli.gateway import gateway
from cli.meta import meta
from cli.node import node
from cli.server import server


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tessera")
def main() -> None:
    """Tessera: an S3-compatible, erasure-coded object store."""


main.add_command(server)
main.add_command(meta)
main.add_command(node)
main.add_command(gateway)
main.add_command(dev)
main.add_command(admin)

if __name__ == "__main__":
    main()
