"""SigV4 signing for our own clients (bench, `tessera admin`), built on the primitives the gateway verifies with.

Header signing only, with UNSIGNED-PAYLOAD: clients stream bodies and never hash them. Encoding helpers live
here too because a signature is only good if the bytes sent are exactly the bytes signed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from gateway.s3.canonical import (
    ALGORITHM,
    SERVICE,
    TERMINATOR,
    canonical_query,
    derive_signing_key,
    sign,
    string_to_sign,
)
from gateway.s3.payload import UNSIGNED_PAYLOAD

_SIGNED = "host;x-amz-content-sha256;x-amz-date"


def encode_path(path: str) -> str:
    """Percent-encode a path the way the server canonicalises it (A-Za-z0-9-_.~/ kept), so what we sign is what
    we send; '/' stays literal as S3 clients send it."""
    return quote(path.encode("utf-8", "surrogateescape"), safe="/~")


def encode_segment(text: str) -> str:
    """One path segment: like encode_path, but '/' is encoded too."""
    return quote(text.encode("utf-8", "surrogateescape"), safe="~")


def encode_query(query: Sequence[tuple[str, str]]) -> str:
    """The query string to send for decoded (name, value) pairs (without '?'), encoded as the signer assumes."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)


class Signer:
    """Signs requests for one (access key, secret, region, host).

    The signing key and timestamp are recomputed at most once a second: deriving the key is four HMACs, a third
    of the cost of signing, and the bench signs tens of thousands of requests a second.
    """

    __slots__ = ("_cache", "access_key", "host", "region", "secret_key")

    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1", host: str = "") -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.host = host
        self._cache: tuple[int, str, str, bytes] | None = None

    def _clock(self) -> tuple[str, str, bytes]:
        """amz-date, scope and signing key for the current second."""
        second = int(time.time())
        cached = self._cache
        if cached is None or cached[0] != second:
            amz_date = datetime.fromtimestamp(second, UTC).strftime("%Y%m%dT%H%M%SZ")
            date = amz_date[:8]
            key = derive_signing_key(self.secret_key, date, self.region)
            scope = f"{date}/{self.region}/{SERVICE}/{TERMINATOR}"
            cached = self._cache = (second, amz_date, scope, key)
        return cached[1], cached[2], cached[3]

    def headers(
        self,
        method: str,
        encoded_path: str,
        query: Sequence[tuple[str, str]] = (),
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Headers for a request whose path is already encoded (encode_path) and query is decoded pairs.

        `extra` headers are added unsigned: they must not be Host or x-amz-* (the server refuses those unsigned).
        """
        amz_date, scope, key = self._clock()
        headers = {"Host": self.host, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": amz_date}
        # The three signed headers in canonical order; the values never need trimming.
        canonical = (
            f"{method}\n{encoded_path}\n{canonical_query(query) if query else ''}\n"
            f"host:{self.host}\nx-amz-content-sha256:{UNSIGNED_PAYLOAD}\nx-amz-date:{amz_date}\n\n"
            f"{_SIGNED}\n{UNSIGNED_PAYLOAD}"
        )
        signature = sign(key, string_to_sign(amz_date, scope, canonical))
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={self.access_key}/{scope}, SignedHeaders={_SIGNED}, Signature={signature}"
        )
        if extra:
            headers.update(extra)
        return headers
