"""SigV4's arithmetic, shared by the gateway's verifier and our own clients' signer: the canonical
request, the string to sign, the signing key and the signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from multidict import CIMultiDict

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"


@lru_cache(maxsize=1024)
def derive_signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """HMAC chain "AWS4"+secret -> date -> region -> service -> "aws4_request" (cached: it changes daily)."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def sign(signing_key: bytes, string_to_sign: str) -> str:
    return hmac.new(signing_key, string_to_sign.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def canonical_uri(raw_path: str) -> str:
    """S3's canonical URI: the path as sent, percent-decoded then re-encoded with only A-Za-z0-9-_.~/ kept.

    Decoding to bytes (not str) keeps keys that are not valid UTF-8 byte-exact.
    """
    if not raw_path:
        return "/"
    raw = unquote_to_bytes(raw_path.encode("utf-8", "surrogateescape"))
    return quote(raw, safe="/~")


def canonical_query(query: Sequence[tuple[str, str]], *, exclude: str | None = None) -> str:
    """Pairs URI-encoded (unreserved kept), sorted by encoded key then encoded value."""
    pairs = sorted((_encode(key), _encode(value)) for key, value in query if key != exclude)
    return "&".join(f"{key}={value}" for key, value in pairs)


def _encode(text: str) -> str:
    return quote(text, safe="-_.~", errors="surrogateescape")


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: CIMultiDict[str] | Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    lines = [method.upper(), uri, query]
    getall = getattr(headers, "getall", None)
    for name in signed_headers:
        values = getall(name, ()) if getall is not None else _single(headers, name)
        # Trimall: strip, and collapse inner runs of whitespace to one space; repeated headers join with ",".
        lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values))
    lines.append("")
    lines.append(";".join(signed_headers))
    lines.append(payload_hash)
    return "\n".join(lines)


def _single(headers: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = headers.get(name)
    return () if value is None else (value,)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
