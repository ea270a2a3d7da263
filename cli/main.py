"""The `tessera` command."""

from __future__ import annotations

import click

from cli.admin import admin
from cli.config import config_group, configurable
from cli.dev import dev
from cli.gateway import gateway
from cli.meta import meta
from cli.node import node
from cli.server import server


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tessera")
def main() -> None:
    """Tessera: an S3-compatible, erasure-coded object store."""


for service in (server, meta, node, gateway, dev):
    main.add_command(configurable(service))
main.add_command(admin)
main.add_command(config_group)

if __name__ == "__main__":
    main()
