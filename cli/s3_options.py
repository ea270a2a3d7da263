"""The flags every S3 endpoint takes (the embedded server and cluster gateways)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from cluster.service.connection import Timeouts
from gateway.context import DEFAULT_MAX_REQUESTS, Limits


def s3_endpoint_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--listen, --ec, --domain, --tls-cert and --tls-key, in that order in --help."""
    f = click.option("--tls-key", default=None, metavar="FILE", help="The certificate's private key (PEM).")(f)
    f = click.option(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="Serve HTTPS with this certificate chain (PEM); both files are read again on SIGHUP.",
    )(f)
    f = click.option(
        "--domain",
        "domains",
        multiple=True,
        default=("localhost",),
        show_default=True,
        help="Domain for virtual-hosted-style requests (BUCKET.DOMAIN); repeatable.",
    )(f)
    f = click.option("--ec", "ec", default="4+2", show_default=True, help="Erasure code K+M for new objects.")(f)
    return click.option("--listen", default="127.0.0.1:9000", show_default=True, help="HOST:PORT of the S3 endpoint.")(
        f
    )


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """How an S3 endpoint treats slow, idle and too many clients (docs/security.md, Limits and timeouts)."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    max_requests: int = 0  # 0: Limits' default
    max_body_mib: int = 0  # 0: derived from the machine's memory

    def limits(self, segment_size: int) -> Limits:
        return Limits.derive(segment_size, self.max_requests, self.max_body_mib << 20)


def front_door_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The timeout and in-flight flags, handed to the command as one `front_door` argument."""
    defaults = Timeouts()
    timeouts = [
        (
            "--header-timeout",
            defaults.header,
            "Seconds a client has to send a complete request head (after "
            "connecting, or after the first byte of a keep-alive request).",
        ),
        ("--idle-timeout", defaults.idle, "Seconds an idle keep-alive connection is kept open."),
        (
            "--body-timeout",
            defaults.body,
            "Seconds an upload may send no bytes before it is cut off (and nothing of it stored).",
        ),
    ]
    options = [
        *(
            click.option(name, type=click.FloatRange(min=0.1), default=default, show_default=True, help=text)
            for name, default, text in timeouts
        ),
        click.option(
            "--max-requests",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_REQUESTS,
            show_default=True,
            help="S3 requests in flight per process; past it, new ones get 503 SlowDown at once.",
        ),
        click.option(
            "--max-body-mib",
            type=click.IntRange(min=0),
            default=0,
            help="MiB of request bodies in flight per process (each counted up to 4 segments); past it, "
            "new requests get 503 SlowDown. [default: an eighth of RAM, 64 MiB to 2 GiB]",
        ),
    ]

    @functools.wraps(f)
    def command(
        *args: Any,
        header_timeout: float,
        idle_timeout: float,
        body_timeout: float,
        max_requests: int,
        max_body_mib: int,
        **kwargs: Any,
    ) -> Any:
        door = FrontDoor(Timeouts(header_timeout, idle_timeout, body_timeout), max_requests, max_body_mib)
        return f(*args, front_door=door, **kwargs)

    wrapped: Callable[..., Any] = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped
