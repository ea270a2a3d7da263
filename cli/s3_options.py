"""The flags every S3 endpoint takes (the embedded server and cluster gateways)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


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
