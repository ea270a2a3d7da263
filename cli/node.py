"""`tessera node`: a storage node serving its drives to the cluster, registered with the metadata service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from cli import event_loop
from cli.addresses import StartupError, index_client, meta_urls, parse_listen, parse_peer, url
from cli.maintenance_options import scrub_options
from cli.service_run import configure_logging, open_local_drives, start_site, until_stopped
from cli.tls import ServerTls, reload_on_sighup, service_tls, service_tls_options, serving_context, url_scheme
from cluster.auth import ClusterAuthError, secret_from_env
from cluster.workers import Finished, Periodic
from metadata.index import DriveClaimed, Index
from metadata.records import DriveRecord, NodeRecord, RepairEntry
from storage_node.drive import OFFLINE, FragmentId
from storage_node.drive_watch import DriveWatch
from storage_node.local_drive import LocalDrive
from storage_node.scrubber import Scrubber
from storage_node.service import make_node_app

log = logging.getLogger("tessera.node")
HEARTBEAT_EVERY = 2.0  # seconds; gateways count a node down after a few missed beats
FIRST_REGISTRATION = 15.0  # seconds to reach the metadata service before serving anyway
QUEUE_TIMEOUT = 30.0  # seconds to queue a scrubbed fragment's repair before giving up on it for this pass


def node_id(data: list[Path], known: str = "") -> str:
    """The node's id, made once and kept in every data directory: the node is found whatever the order of
    its --data directories, and with one of them replaced by an empty directory. `known`: the running
    node's id, written back into a directory that lost it (a drive adopted after a wipe)."""
    found: dict[str, Path] = {}
    for d in data:
        path = d / "node.json"
        try:
            found.setdefault(str(json.loads(path.read_text())["id"]), path)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            raise StartupError(f"{path} is damaged ({exc})") from None
    if len(found) > 1 and not known:
        raise StartupError(f"the data directories belong to different nodes: {', '.join(map(str, found.values()))}")
    nid = known or next(iter(found), None) or uuid.uuid4().hex[:16]
    for d in data:
        path = d / "node.json"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"id": nid}))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    return nid


def describe(nid: str, address: str, zone: str, drives: list[LocalDrive], started: float) -> NodeRecord:
    return NodeRecord(nid, address, zone, [_drive_record(d) for d in drives], started, 0.0)


def _drive_record(d: LocalDrive) -> DriveRecord:
    """The drive with its space and its state as the drive watch last saw it."""
    try:
        record = DriveRecord.measure(d.drive_id, d.root)
    except OSError:  # the directory is gone: the drive is offline, with no space to report
        record = DriveRecord(d.drive_id, 0, 0, str(d.root))
    record.state = f"offline: {d.health.detail}" if d.health.state == OFFLINE else ""
    record.adopted = d.health.adopted
    return record


def heartbeat(index: Index, make_record: Callable[[], NodeRecord], first: asyncio.Future[None]) -> Periodic:
    """A worker that registers, then beats forever; the first outcome (registered, or a claimed drive)
    settles `first`. A failed beat (metadata service down or restarting) is logged; it keeps trying."""

    async def beat() -> None:
        try:
            await index.upsert_node(make_record())
            if not first.done():
                first.set_result(None)
        except DriveClaimed as exc:
            if not first.done():
                first.set_exception(StartupError(f"a drive of this node is registered to another node: {exc}"))
                raise Finished from None  # the node does not start
            log.error("drive claimed by another node: %s", exc)

    return Periodic("heartbeat", beat, HEARTBEAT_EVERY, at_once=True, what="heartbeat to the metadata service")


def scrub_reporter(index: Index) -> Callable[[str, FragmentId, list[int]], Awaitable[None]]:
    """Queue each corrupt fragment the scrubber finds for repair. surviving=0: the node does not know
    the object, the repairer resolves it. A failure is logged, not fatal: the next pass reports again."""

    async def report(drive_id: str, fid: FragmentId, bad: list[int]) -> None:
        entry = RepairEntry(
            surviving=0,
            data_id=fid.version,
            part=fid.part,
            index=fid.index,
            reason="scrub",
            drive_id=drive_id,
            queued=time.time(),
        )
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT):
                await index.queue_repairs([entry])
        except Exception as exc:
            log.error("cannot queue the repair of corrupt fragment %s on drive %s: %r", fid.name, drive_id, exc)

    return report


async def run_node(
    data: list[Path],
    host: str,
    port: int,
    meta: list[str],
    zone: str,
    advertise: str | None,
    secret: bytes,
    scrub_rate: float = 50e6,
    scrub_interval: float = 0.0,
    tls: ServerTls | None = None,
) -> None:
    drives = await open_local_drives(data)
    nid = await asyncio.to_thread(node_id, data)

    def adopted(drive: LocalDrive) -> None:
        node_id(data, nid)  # the node's id is kept in every directory: written back after the wipe

    watch = DriveWatch(drives, on_adopt=adopted)
    index = index_client(meta, secret)
    scrubber = Scrubber(drives, scrub_reporter(index), rate=scrub_rate, interval=scrub_interval)
    app = make_node_app(drives, secret, scrubber=scrubber)
    runner, bound = await start_site(app, host, port, ssl_context=serving_context(tls))
    reload_on_sighup(tls)
    scheme = url_scheme(tls)  # registered with the address: gateways connect with TLS to an https one
    address = url(*parse_peer(advertise, "--advertise", scheme)) if advertise else url(host, bound, scheme)
    started = time.time()
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    beat = heartbeat(index, lambda: describe(nid, address, zone, drives, started), first)
    beat.start()
    watch.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(first), FIRST_REGISTRATION)
    if first.done() and first.exception():
        await beat.stop()
        await watch.stop()
        await runner.cleanup()
        await scrubber.close()
        await index.close()
        raise first.exception()  # type: ignore[misc]
    scrubber.open()
    if not first.done():
        log.warning("metadata service not reachable yet; serving and retrying")
    click.echo(f"Tessera node {nid}: zone {zone}, {len(drives)} drive(s)")
    click.echo(f"Endpoint:  {address}")
    sys.stdout.flush()

    async def cleanup() -> None:
        await beat.stop()
        await watch.stop()
        await runner.cleanup()  # no more requests: no on-demand pass can start after this
        await scrubber.close()
        await index.close()
        for d in drives:
            await d.close()

    await until_stopped(cleanup)


@click.command()
@click.option("--data", "data", multiple=True, required=True, help="A drive directory; repeat for each drive.")
@click.option("--listen", default="127.0.0.1:9100", show_default=True, help="HOST:PORT to serve on.")
@click.option("--meta", required=True, help="The metadata service(s): [https://]HOST:PORT[,...].")
@click.option("--zone", default="default", show_default=True, help="Failure zone (rack, room, site).")
@click.option("--advertise", default=None, help="HOST:PORT others reach this node at [the listen address].")
@scrub_options
@service_tls_options
def node(
    data: tuple[str, ...],
    listen: str,
    meta: str,
    zone: str,
    advertise: str | None,
    scrub_rate: float,
    scrub_interval: float,
    tls_cert: str | None,
    tls_key: str | None,
    cluster_ca: str | None,
) -> None:
    """Serve DATA directories as drives to the cluster's gateways."""
    configure_logging()
    try:
        secret = secret_from_env()
        host, port = parse_listen(listen)
        urls = meta_urls(meta)
        paths = [Path(d) for d in data]
        tls = service_tls(tls_cert, tls_key, cluster_ca)
        scrub = (scrub_rate * 1e6, scrub_interval)
        with contextlib.suppress(KeyboardInterrupt):
            event_loop.run(run_node(paths, host, port, urls, zone, advertise, secret, *scrub, tls))
    except (StartupError, ClusterAuthError) as exc:
        click.echo(f"tessera node: error: {exc}", err=True)
        sys.exit(2)
