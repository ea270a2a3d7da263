"""The console's flags and its listener, for `tessera server` and `tessera gateway` (gateway/console)."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import click
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from cli.addresses import StartupError, parse_listen, url
from cli.service_run import start_site
from cluster.service import SERVICE
from cluster.service.connection import Timeouts
from gateway.console.app import make_console_app
from gateway.console.history import History, Totals, totals_of
from gateway.console.sessions import DEFAULT_TTL
from gateway.console.upstream import Upstream
from gateway.context import Gateway

log = logging.getLogger("tessera.console")
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class ConsoleSpec:
    host: str
    port: int
    given: bool  # said on the command line: a port that cannot be had is an error, not a warning
    ttl: float  # seconds a session lasts


def console_options(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--console HOST:PORT|off and --console-session SECONDS, handed on as one `console` argument."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--console-session",
            type=click.FloatRange(1, 30 * 86400),
            default=DEFAULT_TTL,
            show_default=True,
            help="Seconds a console sign-in lasts.",
        )(f)
        return click.option(
            "--console",
            default=default,
            show_default=True,
            help="HOST:PORT of the web console, or 'off'.",
        )(f)

    return decorate


def console_spec(text: str, ttl: float, listen_port: int) -> ConsoleSpec | None:
    """The console to serve, or None for 'off'. Left at its default while the S3 port is 0 (any free port,
    as tests ask), the console takes any free port too."""
    if text.strip().lower() == "off":
        return None
    host, port = parse_listen(text, "--console")
    given = click.get_current_context().get_parameter_source("console") != click.core.ParameterSource.DEFAULT
    if not given and listen_port == 0:
        port = 0
    return ConsoleSpec(host, port, given, ttl)


async def start_console(
    spec: ConsoleSpec, gw: Gateway, s3_app: web.Application, s3_host: str, s3_port: int, tls: ssl.SSLContext | None
) -> tuple[web.AppRunner, str] | None:
    """Serve the console beside the S3 listener (s3_port: the one really bound); its runner and URL.

    A console left at its default whose port is taken is skipped with a warning: a second server on one
    machine still starts."""
    scheme = "https" if tls else "http"
    upstream = Upstream(url(_WILDCARD.get(s3_host, s3_host), s3_port, scheme), gw.region)
    history = History(_totals(gw, s3_app))
    app = make_console_app(
        gw.users, upstream, history, s3_port=s3_port, s3_scheme=scheme, secure=tls is not None, ttl=spec.ttl
    )
    try:
        runner, bound = await start_site(app, spec.host, spec.port, ssl_context=tls, timeouts=Timeouts())
    except StartupError as exc:
        if spec.given:
            raise
        log.warning("console not started: %s (give --console HOST:PORT, or --console off)", exc)
        return None
    return runner, url(spec.host, bound, scheme)


def _totals(gw: Gateway, s3_app: web.Application) -> Callable[[], Awaitable[Totals]]:
    """The S3 front's counters now: this process's, plus its sibling workers' when it has any."""
    registry = s3_app[SERVICE].registry

    async def read() -> Totals:
        now = time.time()
        totals = totals_of(registry.collect(), now)
        if gw.siblings is not None:
            for text in (await gw.siblings.metrics()).values():
                totals = totals.plus(totals_of(text_string_to_metric_families(text.decode()), now))
        return totals

    return read
