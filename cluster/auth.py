"""How Tessera's services prove to each other that a request comes from the cluster.

Every internal request carries `X-Tessera-Auth: t=<unix seconds>,h=<body>,s=<signature>` where
<body> is the hex SHA-256 of the body, or "STREAMING" for a streamed body (fragment chunks carry
their own checksums), and the signature is HMAC-SHA256 over method, path with query, t and h,
keyed by TESSERA_CLUSTER_SECRET. A request without a valid one is refused (403) before it does anything.

This module is the one place that signs (cluster/client.py calls sign_headers) and verifies
(cluster/service's authenticator calls verify_headers and the body checks): a change to the format
is made here once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from typing import Any

HEADER = "X-Tessera-Auth"
STREAMING = "STREAMING"
MAX_SKEW = 300  # seconds; replay within this window can only repeat an idempotent internal request
ENV = "TESSERA_CLUSTER_SECRET"
MIN_SECRET = 16


class ClusterAuthError(Exception):
    pass


def secret_from_env() -> bytes:
    value = os.environ.get(ENV, "")
    if len(value) < MIN_SECRET:
        raise ClusterAuthError(f"set {ENV} to the same secret (at least {MIN_SECRET} characters) on every service")
    return value.encode()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(secret: bytes, method: str, path_qs: str, t: str, h: str) -> str:
    msg = f"{method.upper()}\n{path_qs}\n{t}\n{h}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, path_qs: str, body: bytes | None = None, now: float | None = None) -> str:
    """The header value for a request; body None means a streamed body."""
    t = str(int(time.time() if now is None else now))
    h = STREAMING if body is None else body_hash(body)
    return f"t={t},h={h},s={_mac(secret, method, path_qs, t, h)}"


def verify(secret: bytes, method: str, path_qs: str, header: str | None, now: float | None = None) -> str:
    """Check a request's header; return its body claim (a hex hash the body must match, or STREAMING)."""
    if not header:
        raise ClusterAuthError("missing cluster signature")
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t, h, s = fields["t"], fields["h"], fields["s"]
        age = abs((time.time() if now is None else now) - int(t))
    except (ValueError, KeyError):
        raise ClusterAuthError("malformed cluster signature") from None
    if age > MAX_SKEW:
        raise ClusterAuthError("cluster signature too old or from the future")
    if not hmac.compare_digest(_mac(secret, method, path_qs, t, h), s):
        raise ClusterAuthError("bad cluster signature")
    return h


def sign_headers(secret: bytes, method: str, path_qs: str, body: bytes | None) -> dict[str, str]:
    """The headers that authenticate a request for `path_qs` exactly as sent; body None: streamed."""
    return {HEADER: sign(secret, method, path_qs, body)}


def verify_headers(secret: bytes, method: str, path_qs: str, headers: Mapping[str, str]) -> str:
    """verify() on a request's headers: its body claim, or ClusterAuthError."""
    return verify(secret, method, path_qs, headers.get(HEADER))


def body_hasher(claim: str) -> Any:
    """What to feed a streamed body through, to check it against a hash claim; None for STREAMING."""
    return None if claim == STREAMING else hashlib.sha256()


def check_body(claim: str, body: bytes | None = None, hasher: Any = None) -> None:
    """Raise ClusterAuthError unless the body (whole, or as fed through hasher) is the one signed."""
    digest = hasher.hexdigest() if hasher is not None else body_hash(body or b"")
    if not hmac.compare_digest(digest, claim):
        raise ClusterAuthError("the body does not match its signature")
