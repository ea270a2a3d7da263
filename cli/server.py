"""`tessera server`: the embedded, single-process store on local drives."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from cli.addresses import StartupError, parse_listen, url
from cli.maintenance_options import maintenance_options, scrub_options, settings
from cli.malloc_tuning import tune_malloc
from cli.node import scrub_reporter
from cli.s3_options import s3_endpoint_options
from cli.service_run import configure_logging, open_local_drives, start_site, until_stopped
from gateway.app import make_app
from gateway.context import Gateway
from gateway.credentials import Credentials, CredentialsError, root_credentials
from gateway.drive_set import LocalDrives
from gateway.erasure import Scheme, SchemeError
from gateway.maintenance import Maintenance, Settings
from gateway.object_layer import ObjectLayer
from gateway.scrub_control import LocalScrub
from gateway.users import UserDirectory
from metadata.lmdb_store import LocalIndex
from storage_node.scrubber import Scrubber

DEFAULT_DATA = Path("tessera-data")
DEFAULT_DRIVES = 6


def layout(drives: tuple[str, ...], scheme: Scheme, index: str | None) -> tuple[list[Path], Path]:
    """The drive directories and the system directory (index and credentials)."""
    if drives:
        paths = [Path(d) for d in drives]
        if len(set(p.resolve() for p in paths)) != len(paths):
            raise StartupError("the same drive is given twice")
        if len(paths) < scheme.width:
            raise StartupError(f"EC {scheme} needs {scheme.width} drives, but {len(paths)} were given")
        system = paths[0] / ".tessera-system"
    else:
        paths = [DEFAULT_DATA / f"drive{i + 1}" for i in range(max(DEFAULT_DRIVES, scheme.width))]
        system = DEFAULT_DATA / "system"
    return paths, Path(index) if index else system


def system_credentials(system: Path) -> Credentials:
    try:
        system.mkdir(parents=True, exist_ok=True)
        return root_credentials(system / "credentials.json")
    except OSError as exc:
        raise StartupError(f"cannot use {system}: {exc.strerror or exc}") from None
    except CredentialsError as exc:
        raise StartupError(str(exc)) from None


async def serve(
    creds: Credentials,
    paths: list[Path],
    system: Path,
    scheme: Scheme,
    host: str,
    port: int,
    domains: tuple[str, ...],
    care: Settings,
    scrub_rate: float,
    scrub_interval: float,
) -> None:
    drives = await open_local_drives(paths)
    try:
        index = LocalIndex.open(system / "index")
    except Exception as exc:  # lmdb raises its own error types for a bad or locked environment
        raise StartupError(f"cannot open the index in {system / 'index'}: {exc}") from None

    layer = ObjectLayer(LocalDrives(drives), scheme)
    scrubber = Scrubber(drives, scrub_reporter(index), rate=scrub_rate, interval=scrub_interval)
    gw = Gateway(index=index, layer=layer, users=UserDirectory(index, creds), domains=domains)
    gw.maintenance = Maintenance(index, layer, care, scrub=LocalScrub(scrubber), busy=gw.busy)
    runner, bound = await start_site(make_app(gw), host, port)
    await gw.maintenance.start()
    scrubber.open()
    _announce(creds, host, bound, scheme, len(drives))

    async def cleanup() -> None:
        await runner.cleanup()
        await gw.maintenance.close()  # type: ignore[union-attr]
        await scrubber.close()
        await layer.drain()
        await index.close()

    await until_stopped(cleanup)


def _announce(creds: Credentials, host: str, port: int, scheme: Scheme, drives: int) -> None:
    click.echo(f"Tessera: EC {scheme} over {drives} drives")
    click.echo(f"Endpoint:  {url(host, port)}")
    click.echo(f"export AWS_ACCESS_KEY_ID={creds.access_key}  AWS_SECRET_ACCESS_KEY={creds.secret_key}")
    sys.stdout.flush()


@click.command()
@click.argument("drives", nargs=-1)
@click.option("--index", default=None, help="Directory of the index and credentials [DRIVE1/.tessera-system].")
@s3_endpoint_options
@maintenance_options
@scrub_options
def server(
    drives: tuple[str, ...],
    listen: str,
    ec: str,
    index: str | None,
    domains: tuple[str, ...],
    scrub_rate: float,
    scrub_interval: float,
    **care: Any,
) -> None:
    """Run an erasure-coded S3 endpoint on local DRIVE directories (six under ./tessera-data by default)."""
    configure_logging()
    tune_malloc()
    try:
        scheme = Scheme.parse(ec)
        host, port = parse_listen(listen)
        paths, system = layout(drives, scheme, index)
        creds = system_credentials(system)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(
                    creds,
                    paths,
                    system,
                    scheme,
                    host,
                    port,
                    tuple(domains),
                    settings(**care),
                    scrub_rate * 1e6,
                    scrub_interval,
                )
            )
    except (StartupError, SchemeError) as exc:
        click.echo(f"tessera server: error: {exc}", err=True)
        sys.exit(2)
