"""`tessera server`: the embedded store on local drives, in one process (or `--workers N`)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from cli import event_loop
from cli.addresses import StartupError, parse_listen, url
from cli.console import ConsoleSpec, console_options, console_spec, start_console
from cli.embedded_index import Copies, has_copies, open_index, plan, prepare, system_files
from cli.maintenance_options import maintenance_options, scrub_options, settings
from cli.malloc_tuning import tune_malloc
from cli.node import scrub_reporter
from cli.processes import Supervisor, Worker, reserve_port
from cli.s3_options import FrontDoor, front_door_options, s3_endpoint_options
from cli.service_run import configure_logging, open_local_drives, prepare_local_drives, start_site, until_stopped
from cli.tls import ServerTls, reload_on_sighup, server_tls, url_scheme
from gateway.accounts.credentials import Credentials, CredentialsError, root_credentials
from gateway.accounts.users import UserDirectory
from gateway.app import make_app
from gateway.care.maintenance import Maintenance, Settings
from gateway.context import Gateway
from gateway.objects.drive_set import LocalDrives
from gateway.objects.erasure import Scheme, SchemeError
from gateway.objects.layer import ObjectLayer
from gateway.siblings import PRIMARY, Siblings, socket_path
from metadata.index import Index
from metadata.local.store import LocalIndex
from metadata.replicated.on_drives import EmbeddedIndex
from storage_node.drive_format import FORMAT_FILE, SYSTEM_DIR, SetRefused, assemble, read_format
from storage_node.drive_watch import DriveWatch
from storage_node.protocol import ScrubStatus
from storage_node.scrubber import Scrubber

DEFAULT_DATA = Path("tessera-data")
DEFAULT_DRIVES = 6


def layout(
    drives: tuple[str, ...], scheme: Scheme, index: str | None, ec_given: bool
) -> tuple[list[Path], Path, Scheme, Copies | None, tuple[Path, ...]]:
    """The drive directories in set order, the system directory (index and credentials), the EC scheme
    the drives were formatted with, recognised by their format records (storage_node/drive_format.py),
    where the index's copies are on the drives (None with --index: one copy in that directory), and the
    empty drives adopted into lost members' places."""
    if drives:
        paths = [Path(d) for d in drives]
        if len(set(p.resolve() for p in paths)) != len(paths):
            raise StartupError("the same drive is given twice")
    else:
        paths = [DEFAULT_DATA / f"drive{i + 1}" for i in range(max(DEFAULT_DRIVES, scheme.width))]
    # No drive is special once the index has copies on several (cli/embedded_index.py), nor in a new set.
    # Drives formatted before copies keep the checks on the one drive holding the index until it is moved.
    external = (
        index is not None or not drives or has_copies(paths) or not any((p / FORMAT_FILE).exists() for p in paths)
    )
    try:
        found = assemble(paths, str(scheme), ec_given, external)
    except SetRefused as exc:
        raise StartupError(str(exc)) from None
    formatted = Scheme.parse(found.format.ec, scheme.segment_size)
    if index:
        system = Path(index)
        _check_origin(system, found.format.deployment, found.new)
        return found.paths, system, formatted, None, found.adopted
    # A single-copy index of before: in the drive the format records name, or the default layout's directory.
    legacy = found.system / SYSTEM_DIR if found.system is not None else None if drives else DEFAULT_DATA / "system"
    copies = plan(found, formatted.m, legacy)
    return found.paths, copies.systems[0], formatted, copies, found.adopted


ORIGIN = "origin.json"  # in the system directory: {"deployment": ..., "created": epoch seconds of the index}


def _check_origin(system: Path, deployment: str, new_drives: bool) -> None:
    """Refuse an index of another deployment; record a new index's deployment and birth (the GC guard).
    An index created with its drives has seen every fragment on them: its birth is recorded as 0."""
    path = system / ORIGIN
    try:
        origin = json.loads(path.read_text())
    except FileNotFoundError:
        # An index from before origin records is as old as its data: 0. A new one over old drives is born now.
        created = 0.0 if new_drives or (system / "index").exists() else time.time()
        try:
            system.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"deployment": deployment, "created": created}) + "\n")
        except OSError as exc:
            raise StartupError(f"cannot use {system}: {exc.strerror or exc}") from None
        return
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read {path}: {exc}") from None
    if origin.get("deployment") != deployment:
        raise StartupError(f"the index in {system} is of deployment {origin.get('deployment')}, not {deployment}")


def _deployment(drive: Path) -> str:
    fmt = read_format(drive)
    assert fmt is not None  # assemble() formatted every drive of the set
    return fmt.deployment


def index_created(system: Path) -> float:
    """When the index was created (0: before anyone recorded it); GC never collects fragments older than that."""
    return float(json.loads((system / ORIGIN).read_text())["created"])


class LocalScrub:
    """The embedded server's own scrubber, over its local drives, as the gateway's care drives scrubbers
    (gateway/care/maintenance.py ScrubControl): the gateway never imports a node's server code."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber

    async def start(self) -> list[ScrubStatus]:
        return [self._scrubber.start()]

    async def status(self) -> list[ScrubStatus]:
        return [self._scrubber.status()]


def system_credentials(system: Path) -> Credentials:
    try:
        system.mkdir(parents=True, exist_ok=True)
        return root_credentials(system / "credentials.json")
    except OSError as exc:
        raise StartupError(f"cannot use {system}: {exc.strerror or exc}") from None
    except CredentialsError as exc:
        raise StartupError(str(exc)) from None


@dataclass(frozen=True)
class ServerConfig:
    creds: Credentials
    paths: list[Path]  # the drives
    system: Path  # the index and the credentials
    scheme: Scheme
    host: str
    port: int
    domains: tuple[str, ...]
    care: Settings
    scrub_rate: float  # bytes/s
    scrub_interval: float
    tls: ServerTls | None = None  # HTTPS, its certificate reloaded on SIGHUP
    door: FrontDoor = field(default_factory=FrontDoor)  # timeouts and in-flight caps
    console: ConsoleSpec | None = None  # the web console, served by the primary worker
    copies: Copies | None = None  # the index's copies on the drives; None: one LocalIndex in system (--index)
    adopted: tuple[Path, ...] = ()  # drives adopted into lost members' places at this start (repair fills them)

    @property
    def index(self) -> Path:
        return self.system / "index"


def _index_error(cfg: ServerConfig, exc: Exception) -> StartupError:
    return StartupError(f"cannot open the index in {cfg.index}: {exc}")


async def serve(cfg: ServerConfig, worker: Worker | None = None) -> None:
    """Serve until SIGINT/SIGTERM: the whole server, or one of its `--workers` processes."""
    drives = await open_local_drives(cfg.paths, keep_tmp=worker is not None)
    started = time.time()
    for d in drives:
        if d.root in cfg.adopted:  # shown as rebuilding, and scanned for at once, like one adopted while serving
            d.adopted_at_start(started)
    # Background repair, scans, scrubbing, admin jobs and rebuilding index copies run in one process.
    primary = worker is None or worker.number == PRIMARY
    index: Index
    if cfg.copies is not None:
        index = await open_index(cfg.copies, heal=primary, alone=worker is None)
    else:
        try:
            index = LocalIndex.open(cfg.index)
        except Exception as exc:  # lmdb raises its own error types for a bad or locked environment
            raise _index_error(cfg, exc) from None

    layer = ObjectLayer(LocalDrives(drives, reserve=cfg.care.min_free), cfg.scheme)
    scrubber = Scrubber(drives, scrub_reporter(index), rate=cfg.scrub_rate, interval=cfg.scrub_interval)
    users = UserDirectory(index, cfg.creds)
    limits = cfg.door.limits(cfg.scheme.segment_size)
    gw = Gateway(index=index, layer=layer, users=users, domains=cfg.domains, limits=limits)
    scrub = LocalScrub(scrubber) if primary else None
    watch = DriveWatch(drives, adopt=primary)  # an empty drive in a member's place is adopted (by one process)
    others = [users.refresher, scrubber.worker, watch.worker]
    if isinstance(index, EmbeddedIndex) and primary:
        others.append(index.worker)  # the copies' rebuilding shows in `admin status`
    if isinstance(index, EmbeddedIndex):
        gw.index_copies = index.copy_states
    gw.maintenance = Maintenance(index, layer, cfg.care, scrub=scrub, busy=gw.busy, others=others)
    if worker is not None:
        gw.siblings = Siblings(worker.run_dir, worker.number, worker.count)
    tls = cfg.tls.context if cfg.tls else None
    app = make_app(gw)
    runner, bound = await start_site(
        app, cfg.host, cfg.port, reuse_port=worker is not None, ssl_context=tls, timeouts=cfg.door.timeouts
    )
    console = None
    if cfg.console is not None and primary:
        console = await start_console(cfg.console, gw, app, cfg.host, bound, tls)
    reload_on_sighup(cfg.tls, catch_up=worker is not None)
    if worker is not None:
        internal = socket_path(worker.run_dir, worker.number)
        internal.unlink(missing_ok=True)  # left by this worker's previous life
        await web.UnixSite(runner, str(internal)).start()
    watch.start()
    if primary:
        await gw.maintenance.start()
        scrubber.open()
    if worker is None:
        _announce(cfg, bound, console=console[1] if console else "")
    else:
        if console:
            click.echo(f"Console:   {console[1]}")
        worker.ready()

    async def cleanup() -> None:
        if console:
            await console[0].cleanup()
        await runner.cleanup()
        await watch.stop()
        await gw.maintenance.close()  # type: ignore[union-attr]
        await scrubber.close()
        if gw.siblings is not None:
            await gw.siblings.close()
        await layer.drain()
        await index.close()

    await until_stopped(cleanup)


def serve_workers(cfg: ServerConfig, count: int) -> int:
    """Prepare once what every worker would otherwise redo, then run `count` processes of serve()
    on one port; returns the exit status."""
    prepare_local_drives(cfg.paths)
    try:
        if cfg.copies is None:
            LocalIndex.prepare(cfg.index)
    except Exception as exc:  # as in serve()
        raise _index_error(cfg, exc) from None
    # This process reloads too, quietly (each worker logs its own): a restarted worker is forked with its context.
    reload = partial(cfg.tls.reload, quiet=True) if cfg.tls else None
    supervisor = Supervisor(count, reserve_port(cfg.host, cfg.port), lambda w: _worker(cfg, w), on_hangup=reload)
    return supervisor.run(lambda: _announce(cfg, supervisor.port, count))


def _worker(cfg: ServerConfig, worker: Worker) -> int:
    try:
        event_loop.run(serve(replace(cfg, port=worker.port), worker))
    except StartupError as exc:
        click.echo(f"tessera server: error: {exc}", err=True)
        return 2
    return 0


def _announce(cfg: ServerConfig, port: int, workers: int = 1, console: str = "") -> None:
    processes = f", {workers} worker processes" if workers > 1 else ""
    click.echo(f"Tessera: EC {cfg.scheme} over {len(cfg.paths)} drives{processes}")
    click.echo(f"Endpoint:  {url(cfg.host, port, url_scheme(cfg.tls))}")
    if console:
        click.echo(f"Console:   {console}")
    click.echo(f"export AWS_ACCESS_KEY_ID={cfg.creds.access_key}  AWS_SECRET_ACCESS_KEY={cfg.creds.secret_key}")
    sys.stdout.flush()


@click.command()
@click.argument("drives", nargs=-1)
@click.option("--index", default=None, help="Directory of the index and credentials [DRIVE1/.tessera-system].")
@s3_endpoint_options
@front_door_options
@maintenance_options
@scrub_options
@console_options("127.0.0.1:9001")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes serving the port (SO_REUSEPORT): more than one uses more cores.",
)
def server(
    drives: tuple[str, ...],
    listen: str,
    ec: str,
    index: str | None,
    domains: tuple[str, ...],
    scrub_rate: float,
    scrub_interval: float,
    workers: int,
    tls_cert: str | None,
    tls_key: str | None,
    front_door: FrontDoor,
    console: str,
    console_session: float,
    **care: Any,
) -> None:
    """Run an erasure-coded S3 endpoint on local DRIVE directories (six under ./tessera-data by default)."""
    configure_logging()
    tune_malloc()
    try:
        host, port = parse_listen(listen)
        tls = server_tls(tls_cert, tls_key)
        ec_given = click.get_current_context().get_parameter_source("ec") != click.core.ParameterSource.DEFAULT
        paths, system, scheme, copies, adopted = layout(drives, Scheme.parse(ec), index, ec_given)
        if copies is not None:
            prepare(copies)  # checks every copy, migrates an index of before; refuses without a quorum
            creds, created = system_files(copies, _deployment(paths[0]))
        else:
            creds, created = system_credentials(system), index_created(system)
        cfg = ServerConfig(
            creds,
            paths,
            system,
            scheme,
            host,
            port,
            tuple(domains),
            replace(settings(**care), gc_not_before=created),
            scrub_rate * 1e6,
            scrub_interval,
            tls,
            front_door,
            console_spec(console, console_session, port),
            copies,
            adopted,
        )
        if workers > 1:
            sys.exit(serve_workers(cfg, workers))
        with contextlib.suppress(KeyboardInterrupt):
            event_loop.run(serve(cfg))
    except (StartupError, SchemeError) as exc:
        click.echo(f"tessera server: error: {exc}", err=True)
        sys.exit(2)
