"""`tessera meta`: a metadata replica, the LMDB index served to the cluster over HTTP.

One replica for now: --peers is accepted in the form the manual gives, but it may name no replica
other than this one until replication across replicas exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import click

from cli.addresses import StartupError, parse_listen, url
from cli.service_run import start_site, until_stopped
from cluster.auth import ClusterAuthError, secret_from_env
from metadata.lmdb_store import LocalIndex
from metadata.service import make_meta_app


def other_peers(peers: str, own: tuple[str, int]) -> list[tuple[str, int]]:
    """The replicas --peers names besides this one (the manual lists every replica, this one included)."""
    others = []
    for item in (p.strip() for p in peers.split(",")):
        if item:
            addr = parse_listen(item, "--peers")
            if addr != own and addr not in others:
                others.append(addr)
    return others


def open_index(data: Path) -> LocalIndex:
    try:
        return LocalIndex.open(data / "index")
    except Exception as exc:  # OSError for the directory; lmdb raises its own types for a bad or locked env
        raise StartupError(f"cannot open the index in {data / 'index'}: {exc}") from None


async def serve(data: Path, host: str, port: int, secret: bytes) -> None:
    index = open_index(data)
    try:
        runner, bound = await start_site(make_meta_app(index, secret), host, port)
    except BaseException:
        await index.close()
        raise
    click.echo(f"Tessera metadata service: a single replica, index in {data / 'index'}")
    click.echo(f"Endpoint:  {url(host, bound)}")
    sys.stdout.flush()

    async def cleanup() -> None:
        await runner.cleanup()  # waits for requests in flight, so the index is idle when it closes
        await index.close()

    await until_stopped(cleanup)


@click.command()
@click.option("--data", required=True, help="Directory of this replica's index (created if missing).")
@click.option("--listen", default="127.0.0.1:9300", show_default=True, help="HOST:PORT to serve on.")
@click.option("--peers", default="", help="Every metadata replica, HOST:PORT,... (this one only, for now).")
def meta(data: str, listen: str, peers: str) -> None:
    """Serve the cluster's metadata index (buckets, objects, uploads, nodes) to gateways and nodes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        secret = secret_from_env()
        host, port = parse_listen(listen)
        if other_peers(peers, (host, port)):
            raise StartupError("replication across several replicas is not available yet")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(Path(data), host, port, secret))
    except (StartupError, ClusterAuthError) as exc:
        click.echo(f"tessera meta: error: {exc}", err=True)
        sys.exit(2)
