"""The `tessera` command."""

from __future__ import annotations

import click

from cli.meta import meta
from cli.server import server


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tessera")
def main() -> None:
    """Tessera: an S3-compatible, erasure-coded object store."""


main.add_command(server)
main.add_command(meta)

if __name__ == "__main__":
    main()
