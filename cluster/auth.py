"""How Tessera's services prove to each other that a request comes from the cluster, once.

Every internal request carries `X-Tessera-Auth: t=<unix seconds>,n=<nonce>,h=<body>,s=<signature>`:
n is 16 random bytes in hex, unique to the request; <body> is the hex SHA-256 of the body, or
"STREAMING" for a frame stream whose frames are each authenticated (FrameChain below); the
signature is HMAC-SHA256 over method, path with query, t, n and h, keyed by TESSERA_CLUSTER_SECRET.
A request is refused (403) before it does anything unless its signature is valid, its t is within
MAX_SKEW of the verifier's clock, and its nonce was not seen before (NonceCache): a captured request
cannot be sent again, and a retry is a new request with a new nonce and signature.

A streamed body is a chain starting from the request's signature: each frame carries a MAC of its
payload keyed by the chain so far, and the end of the stream a MAC over the frame count (FrameChain).
A frame changed, dropped, reordered or moved to another request breaks the chain.

This module is the one place that signs (cluster/client.py calls sign_headers and FrameChain) and
verifies (cluster/service's authenticator calls verify_headers, NonceCache and the body checks).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.poly1305 import Poly1305

HEADER = "X-Tessera-Auth"
STREAMING = "STREAMING"
# Seconds a signature stays valid either side of the verifier's clock: the services of a cluster
# run NTP, which keeps clocks within milliseconds; a minute allows for a slow request and a bad day.
MAX_SKEW = 60
# Nonces a verifier remembers at most (each until its signature expires): 2 * MAX_SKEW seconds of
# traffic at ~4,000 requests/s. When full it refuses new requests (403) rather than grow or forget
# one still valid (forgetting would open a replay).
MAX_NONCES = 500_000
NONCE_BYTES = 16
TAG_BYTES = 16  # a frame's MAC (Poly1305), and the end's
ENV = "TESSERA_CLUSTER_SECRET"
# During a rotation, the secret being replaced: accepted (never used to sign) until every service
# signs with the new one; then unset it (docs/security.md, "Rotating the cluster secret").
PREVIOUS_ENV = "TESSERA_CLUSTER_SECRET_PREVIOUS"
MIN_SECRET = 16


class ClusterAuthError(Exception):
    pass


def secret_from_env() -> bytes:
    value = os.environ.get(ENV, "")
    if len(value) < MIN_SECRET:
        raise ClusterAuthError(f"set {ENV} to the same secret (at least {MIN_SECRET} characters) on every service")
    previous_from_env()  # a bad previous secret is refused at start, not at the first request
    return value.encode()


def previous_from_env() -> bytes | None:
    """The secret being rotated out, if TESSERA_CLUSTER_SECRET_PREVIOUS is set."""
    value = os.environ.get(PREVIOUS_ENV, "")
    if not value:
        return None
    if len(value) < MIN_SECRET:
        raise ClusterAuthError(f"{PREVIOUS_ENV} must be at least {MIN_SECRET} characters")
    return value.encode()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _mac(secret: bytes, method: str, path_qs: str, t: str, n: str, h: str) -> str:
    msg = f"{method.upper()}\n{path_qs}\n{t}\n{n}\n{h}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Signed:
    """A verified signature: its time, nonce, body claim (a hex hash or STREAMING), MAC, and the
    secret it was made with (a streamed body's frames are chained under the same one)."""

    t: int
    nonce: str
    claim: str
    signature: str
    secret: bytes


def sign(
    secret: bytes,
    method: str,
    path_qs: str,
    body: bytes | None = None,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """The header value for a request; body None means a streamed (frame-chained) body."""
    t = str(int(time.time() if now is None else now))
    n = secrets.token_hex(NONCE_BYTES) if nonce is None else nonce
    h = STREAMING if body is None else body_hash(body)
    return f"t={t},n={n},h={h},s={_mac(secret, method, path_qs, t, n, h)}"


def signature_of(header: str) -> str:
    """The s= field of a header value (the start of a streamed body's chain)."""
    return header.rpartition("s=")[2]


def verify(
    secret: bytes,
    method: str,
    path_qs: str,
    header: str | None,
    now: float | None = None,
    *,
    previous: bytes | None = None,
) -> Signed:
    """Check a request's header (not its nonce's freshness: NonceCache does that). `previous`: a
    secret being rotated out, also accepted."""
    if not header:
        raise ClusterAuthError("missing cluster signature")
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t, n, h, s = fields["t"], fields["n"], fields["h"], fields["s"]
        age = abs((time.time() if now is None else now) - int(t))
    except (ValueError, KeyError):
        raise ClusterAuthError("malformed cluster signature") from None
    if age > MAX_SKEW:
        raise ClusterAuthError("cluster signature too old or from the future")
    mac = _mac(secret, method, path_qs, t, n, h)
    if not hmac.compare_digest(mac, s):
        if previous is None or not hmac.compare_digest(_mac(previous, method, path_qs, t, n, h), s):
            raise ClusterAuthError("bad cluster signature")
        secret = previous
    if len(n) != 2 * NONCE_BYTES:
        raise ClusterAuthError("malformed cluster nonce")
    return Signed(int(t), n, h, s, secret)


class NonceCache:
    """The nonces of the signatures accepted and still valid: a second request with one is a replay.

    Each nonce is kept until its signature expires (t + MAX_SKEW), so memory is bounded by the
    traffic of one validity window, and by `limit` beyond that: when full, new requests are refused.
    """

    def __init__(self, limit: int = MAX_NONCES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []  # a heap: the next to forget first

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, signed: Signed, now: float | None = None) -> None:
        now = time.time() if now is None else now
        while self._expiry and self._expiry[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiry)[1])
        if signed.nonce in self._seen:
            raise ClusterAuthError("replayed cluster request (nonce already used)")
        if len(self._seen) >= self._limit:
            raise ClusterAuthError("too many cluster requests in the signature window; try again")
        self._seen.add(signed.nonce)
        heapq.heappush(self._expiry, (signed.t + MAX_SKEW + 1, signed.nonce))


def sign_headers(secret: bytes, method: str, path_qs: str, body: bytes | None) -> dict[str, str]:
    """The headers that authenticate a request for `path_qs` exactly as sent; body None: streamed.
    Each call makes a new nonce: sign every attempt of a request anew."""
    return {HEADER: sign(secret, method, path_qs, body)}


def verify_headers(
    secret: bytes,
    method: str,
    path_qs: str,
    headers: Mapping[str, str],
    seen: NonceCache | None = None,
    *,
    previous: bytes | None = None,
) -> Signed:
    """verify() on a request's headers, and its nonce admitted to `seen`: the signature, or ClusterAuthError."""
    signed = verify(secret, method, path_qs, headers.get(HEADER), previous=previous)
    if seen is not None:
        seen.admit(signed)
    return signed


def body_hasher(claim: str) -> Any:
    """What to feed a streamed body through, to check it against a hash claim; None for STREAMING."""
    return None if claim == STREAMING else hashlib.sha256()


def check_body(claim: str, body: bytes | None = None, hasher: Any = None) -> None:
    """Raise ClusterAuthError unless the body (whole, or as fed through hasher) is the one signed."""
    digest = hasher.hexdigest() if hasher is not None else body_hash(body or b"")
    if not hmac.compare_digest(digest, claim):
        raise ClusterAuthError("the body does not match its signature")


class FrameChain:
    """The MACs of a streamed body's frames, chained from the request's signature: the sender
    calls tag() and end_tag(), the receiver check() and check_end(), each in frame order.

    Frame i's payload is MACed with Poly1305 under a one-time key derived from the chain so far
    (HMAC(secret, state || "key")), and the chain moves on over its tag (state = HMAC(secret,
    state || tag)): a frame changed, dropped, reordered or moved from another request breaks it.
    Poly1305 runs at several GB/s where SHA-256 (an HMAC over the payload) runs at 1-2: over a
    64 MiB fragment PUT, that is the difference between a cost one can and cannot measure.
    """

    def __init__(self, secret: bytes, signature: str) -> None:
        self._secret = secret
        self._state = signature.encode()
        self.count = 0

    def _hmac(self, msg: bytes) -> bytes:
        return hmac.digest(self._secret, self._state + msg, "sha256")  # one-shot: the fast C path

    def tag(self, payload: bytes | memoryview) -> bytes:
        tag = Poly1305.generate_tag(self._hmac(b"key"), payload)
        self._state = self._hmac(tag)
        self.count += 1
        return tag

    def end_tag(self) -> bytes:
        return self._hmac(b"end" + self.count.to_bytes(8, "big"))[:TAG_BYTES]

    def check(self, payload: bytes | memoryview, tag: bytes) -> None:
        if not hmac.compare_digest(self.tag(payload), tag):
            raise ClusterAuthError(f"frame {self.count - 1} does not match the request's signature")

    def check_end(self, tag: bytes) -> None:
        if not hmac.compare_digest(self.end_tag(), tag):
            raise ClusterAuthError("the end of the stream does not match the request's signature")
