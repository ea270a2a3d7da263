"""The `tessera` command: each subcommand composes the services out of the other packages."""
