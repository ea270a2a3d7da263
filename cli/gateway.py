"""`tessera gateway`: a stateless S3 endpoint over the cluster's metadata service and storage nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import click

from cli import event_loop
from cli.addresses import StartupError, index_client, meta_urls, parse_listen, url
from cli.console import ConsoleSpec, console_options, console_spec, start_console
from cli.maintenance_options import maintenance_options, settings
from cli.malloc_tuning import tune_malloc
from cli.s3_options import FrontDoor, front_door_options, s3_endpoint_options
from cli.service_run import configure_logging, start_site, until_stopped
from cli.tls import ServerTls, cluster_ca_option, reload_on_sighup, server_tls, url_scheme, use_cluster_ca
from cluster.auth import ClusterAuthError, secret_from_env
from gateway.accounts.credentials import Credentials, CredentialsError, credentials_from_env
from gateway.accounts.users import UserDirectory
from gateway.app import make_app
from gateway.care.maintenance import Maintenance, Settings
from gateway.care.scrub_control import NodeScrubs
from gateway.context import Gateway
from gateway.objects.erasure import Scheme, SchemeError
from gateway.objects.layer import ObjectLayer
from gateway.objects.membership import ClusterDrives

log = logging.getLogger("tessera.gateway")
MEMBERSHIP_WAIT = 15.0  # seconds to reach the metadata service at start


async def run_gateway(
    creds: Credentials,
    host: str,
    port: int,
    meta: list[str],
    scheme: Scheme,
    domains: tuple[str, ...],
    secret: bytes,
    care: Settings,
    tls: ServerTls | None = None,
    door: FrontDoor | None = None,
    console_at: ConsoleSpec | None = None,
) -> None:
    door = door or FrontDoor()
    index = index_client(meta, secret)
    drives = ClusterDrives(index, secret, reserve=care.min_free)
    try:
        await asyncio.wait_for(drives.start(), MEMBERSHIP_WAIT)
    except Exception as exc:
        await drives.close()
        await index.close()
        raise StartupError(f"cannot reach the metadata service at {', '.join(meta)}: {exc!r}") from None

    layer = ObjectLayer(drives, scheme)

    async def readiness() -> str | None:
        return drives.problem(scheme.k)

    users = UserDirectory(index, creds)
    gw = Gateway(
        index=index,
        layer=layer,
        users=users,
        domains=domains,
        readiness=readiness,
        meta_addresses=tuple(meta),
        limits=door.limits(scheme.segment_size),
    )
    others = [users.refresher, drives.refresher]
    gw.maintenance = Maintenance(index, layer, care, scrub=NodeScrubs(drives, secret), busy=gw.busy, others=others)
    app = make_app(gw)
    context = tls.context if tls else None
    runner, bound = await start_site(app, host, port, ssl_context=context, timeouts=door.timeouts)
    console = await start_console(console_at, gw, app, host, bound, context) if console_at else None
    reload_on_sighup(tls)
    await gw.maintenance.start()
    click.echo(f"Tessera gateway: EC {scheme}, {drives.live_nodes()} storage node(s) up")
    click.echo(f"Endpoint:  {url(host, bound, url_scheme(tls))}")
    if console:
        click.echo(f"Console:   {console[1]}")
    click.echo(f"export AWS_ACCESS_KEY_ID={creds.access_key}  AWS_SECRET_ACCESS_KEY={creds.secret_key}")
    sys.stdout.flush()

    async def cleanup() -> None:
        if console:
            await console[0].cleanup()
        await runner.cleanup()
        await gw.maintenance.close()  # type: ignore[union-attr]
        await layer.drain()
        await drives.close()
        await index.close()

    await until_stopped(cleanup)


@click.command()
@click.option("--meta", required=True, help="The metadata service(s): [https://]HOST:PORT[,...].")
@s3_endpoint_options
@front_door_options
@cluster_ca_option
@maintenance_options
@console_options("off")
def gateway(
    listen: str,
    meta: str,
    ec: str,
    domains: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    front_door: FrontDoor,
    cluster_ca: str | None,
    console: str,
    console_session: float,
    **care: Any,
) -> None:
    """Serve S3 over the cluster (root credentials from TESSERA_ACCESS_KEY / TESSERA_SECRET_KEY)."""
    configure_logging()
    tune_malloc()
    try:
        secret = secret_from_env()
        creds = credentials_from_env()
        if creds is None:
            raise StartupError("set TESSERA_ACCESS_KEY and TESSERA_SECRET_KEY (the same on every gateway)")
        scheme = Scheme.parse(ec)
        host, port = parse_listen(listen)
        urls = meta_urls(meta)
        tls = server_tls(tls_cert, tls_key)
        use_cluster_ca(cluster_ca)
        with contextlib.suppress(KeyboardInterrupt):
            care_settings = settings(**care)
            at = console_spec(console, console_session, port)
            event_loop.run(
                run_gateway(creds, host, port, urls, scheme, tuple(domains), secret, care_settings, tls, front_door, at)
            )
    except (StartupError, SchemeError, ClusterAuthError, CredentialsError) as exc:
        click.echo(f"tessera gateway: error: {exc}", err=True)
        sys.exit(2)
