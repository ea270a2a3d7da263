"""`tessera meta`: a metadata replica, the LMDB index served to the cluster over HTTP.

With --peers naming three replicas (this one among them), it is one of three replicas of a
leaderless replicated index (metadata/replicated/index.py): it serves the replica protocol to
gateways, nodes and its peers, runs anti-entropy against its peers, and also serves the plain
Index API (/v1) as a coordinator over all three, for clients given only its address. Without
--peers (or with only itself), it is a single, unreplicated index, as before.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from cli import event_loop
from cli.addresses import StartupError, parse_listen, parse_peer, url
from cli.service_run import configure_logging, start_site, until_stopped
from cli.tls import ServerTls, reload_on_sighup, service_tls, service_tls_options, serving_context, url_scheme
from cluster.auth import ClusterAuthError, secret_from_env
from cluster.service import SERVICE
from metadata.local.store import LocalIndex
from metadata.remote.service import make_meta_app
from metadata.replica.anti_entropy import TOMBSTONE_GRACE, AntiEntropy
from metadata.replica.client import ReplicaClient
from metadata.replica.store import ReplicaStore
from metadata.replicated.index import ReplicatedIndex

REPLICAS = 3


Peer = tuple[str, int, str]  # host, port, scheme ("https": TLS, trusting the cluster's CA)


def other_peers(peers: str, own: tuple[str, int]) -> list[Peer]:
    """The replicas --peers names besides this one (the manual lists every replica, this one included)."""
    others: list[Peer] = []
    for item in (p.strip() for p in peers.split(",")):
        if item:
            addr = parse_peer(item, "--peers")
            if addr[:2] != own and addr[:2] not in [o[:2] for o in others]:
                others.append(addr)
    return others


def check_peers(peers: str, own: tuple[str, int]) -> list[Peer]:
    """The two other replicas of a replica set, or [] for a single replica; StartupError if --peers is wrong."""
    others = other_peers(peers, own)
    if not others:
        return []
    named = {parse_peer(p.strip(), "--peers")[:2] for p in peers.split(",") if p.strip()}
    if own not in named:
        raise StartupError(f"--peers must list this replica's own address {own[0]}:{own[1]} (as given to --listen)")
    if len(others) != REPLICAS - 1:
        raise StartupError(f"--peers must name three replicas, this one included (got {len(others) + 1})")
    if own[1] == 0:
        raise StartupError("a replica of a set needs a fixed --listen port: its peers name it")
    return others


def open_index(data: Path) -> LocalIndex:
    try:
        return LocalIndex.open(data / "index")
    except Exception as exc:  # OSError for the directory; lmdb raises its own types for a bad or locked env
        raise StartupError(f"cannot open the index in {data / 'index'}: {exc}") from None


def open_replica(data: Path) -> ReplicaStore:
    try:
        return ReplicaStore.open(data / "replica")
    except Exception as exc:
        raise StartupError(f"cannot open the replica in {data / 'replica'}: {exc}") from None


async def serve(data: Path, host: str, port: int, secret: bytes, tls: ServerTls | None = None) -> None:
    index = open_index(data)
    try:
        runner, bound = await start_site(make_meta_app(index, secret), host, port, ssl_context=serving_context(tls))
    except BaseException:
        await index.close()
        raise
    reload_on_sighup(tls)
    click.echo(f"Tessera metadata service: a single replica, index in {data / 'index'}")
    click.echo(f"Endpoint:  {url(host, bound, url_scheme(tls))}")
    sys.stdout.flush()

    async def cleanup() -> None:
        await runner.cleanup()  # waits for requests in flight, so the index is idle when it closes
        await index.close()

    await until_stopped(cleanup)


async def serve_replica(
    data: Path,
    host: str,
    port: int,
    peers: list[Peer],
    secret: bytes,
    interval: float,
    grace: float,
    tls: ServerTls | None = None,
) -> None:
    store = open_replica(data)
    store.name = url(host, port)
    clients = [ReplicaClient(url(*p), secret) for p in peers]
    coordinator = ReplicatedIndex([store, *clients], closers=clients)
    app = make_meta_app(coordinator, secret, replica=store)
    ae_peers = [ReplicaClient(url(*p), secret) for p in peers]
    anti_entropy = AntiEntropy(store, list(ae_peers), interval, app[SERVICE].registry, tombstone_grace=grace)
    try:
        runner, bound = await start_site(app, host, port, ssl_context=serving_context(tls))
    except BaseException:
        await store.close()
        raise
    reload_on_sighup(tls)
    anti_entropy.start()
    state = "initialized" if store.initialized else "rebuilding from its peers"
    click.echo(f"Tessera metadata replica ({state}), peers {', '.join(url(*p) for p in peers)}")
    click.echo(f"Endpoint:  {url(host, bound, url_scheme(tls))}")
    sys.stdout.flush()

    async def cleanup() -> None:
        await anti_entropy.close()
        await runner.cleanup()
        await coordinator.close()
        await store.close()

    await until_stopped(cleanup)


@click.command()
@click.option("--data", required=True, help="Directory of this replica's index (created if missing).")
@click.option("--listen", default="127.0.0.1:9300", show_default=True, help="HOST:PORT to serve on.")
@click.option("--peers", default="", help="Every metadata replica, HOST:PORT,HOST:PORT,HOST:PORT (this one included).")
@click.option("--anti-entropy-interval", default=30.0, show_default=True, help="Seconds between anti-entropy rounds.")
@click.option(
    "--tombstone-grace", default=TOMBSTONE_GRACE, show_default=True, help="Seconds before deletes are forgotten."
)
@service_tls_options
def meta(
    data: str,
    listen: str,
    peers: str,
    anti_entropy_interval: float,
    tombstone_grace: float,
    tls_cert: str | None,
    tls_key: str | None,
    cluster_ca: str | None,
) -> None:
    """Serve the cluster's metadata index (buckets, objects, uploads, nodes) to gateways and nodes."""
    configure_logging()
    try:
        secret = secret_from_env()
        host, port = parse_listen(listen)
        others = check_peers(peers, (host, port))
        tls = service_tls(tls_cert, tls_key, cluster_ca)
        with contextlib.suppress(KeyboardInterrupt):
            if others:
                args = (anti_entropy_interval, tombstone_grace, tls)
                event_loop.run(serve_replica(Path(data), host, port, others, secret, *args))
            else:
                event_loop.run(serve(Path(data), host, port, secret, tls))
    except (StartupError, ClusterAuthError) as exc:
        click.echo(f"tessera meta: error: {exc}", err=True)
        sys.exit(2)
