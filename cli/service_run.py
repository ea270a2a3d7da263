"""Running a long-lived service: serve an aiohttp app until SIGINT/SIGTERM, then clean up."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from cli.addresses import StartupError
from cluster.service.connection import INTERNAL, Runner, Timeouts
from storage_node.drive import DriveError
from storage_node.drive_dir import prepare_drive
from storage_node.local_drive import LocalDrive

# A request body is buffered up to twice this before the socket is paused: a segment, so a PUT
# reads whole segments without a pause-and-resume of the socket every 128 KiB.
READ_BUFSIZE = 1 << 20


def configure_logging() -> None:
    """Log to stderr at TESSERA_LOG_LEVEL (default info; debug adds a JSON line per S3 request)."""
    level = os.environ.get("TESSERA_LOG_LEVEL", "info").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    reuse_port: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    timeouts: Timeouts | None = None,
) -> tuple[web.AppRunner, int]:
    """Listen; return the runner and the port really bound (the OS picks one for port 0).

    reuse_port: the port is shared with sibling processes (SO_REUSEPORT), the kernel spreading
    connections over them. ssl_context: serve HTTPS only (cli/tls.py makes it). timeouts: for slow
    or idle clients (cluster/service/connection.py); an internal service's by default."""
    runner = Runner(
        app, timeouts=timeouts or INTERNAL, access_log=None, handle_signals=False, read_bufsize=READ_BUFSIZE
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server = runner.server and site._server  # aiohttp keeps the asyncio server private
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port


async def until_stopped(cleanup: Callable[[], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await cleanup()


async def open_local_drives(paths: list[Path], keep_tmp: bool = False) -> list[LocalDrive]:
    try:
        drives = [await LocalDrive.open(p, keep_tmp=keep_tmp) for p in paths]
    except DriveError as exc:
        raise StartupError(str(exc)) from None
    _distinct([d.drive_id for d in drives])
    return drives


def prepare_local_drives(paths: list[Path]) -> None:
    """What open_local_drives checks and clears, blocking, before sibling processes open the drives."""
    try:
        _distinct([prepare_drive(p) for p in paths])
    except DriveError as exc:
        raise StartupError(str(exc)) from None


def _distinct(drive_ids: list[str]) -> None:
    if len(set(drive_ids)) != len(drive_ids):
        raise StartupError("two drive directories carry the same drive id (was one copied from another?)")
