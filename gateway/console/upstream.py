"""The console's way to act: real S3 and admin requests, signed as the signed-in user, to this gateway's own
S3 listener. Each is authenticated and authorised by the S3 front exactly as any client's would be, so the
console can never do more than the user could with aws-cli. Bodies stream through in both directions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from cluster.service import ErrorAnswer
from gateway.s3.canonical import (
    ALGORITHM,
    SERVICE,
    TERMINATOR,
    canonical_query,
    canonical_request,
    derive_signing_key,
    sign,
)
from gateway.s3.canonical import string_to_sign as _string_to_sign
from gateway.s3.payload import UNSIGNED_PAYLOAD
from gateway.s3.signer import encode_path, encode_query, encode_segment

ADMIN_PATH = "/_tessera/admin/v1/"
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=120.0)
CHUNK = 256 << 10


def object_path(bucket: str, key: str = "") -> str:
    """The encoded path of a bucket or object, as the signer signs it."""
    path = "/" + encode_segment(bucket)
    return path + "/" + encode_path(key) if key else path


class Upstream:
    """A client of this gateway's own S3 listener (on loopback), shared by every session."""

    def __init__(self, endpoint: str, region: str = "us-east-1") -> None:
        url = URL(endpoint)
        self.endpoint = f"{url.scheme}://{url.raw_authority}"
        self.netloc = url.raw_authority
        self.region = region
        # Our own listener, reached by address: its certificate names the public host, not this one.
        self._ssl: ssl.SSLContext | bool = False if url.scheme == "http" else _unverified()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=TIMEOUT,
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def request(
        self,
        user: tuple[str, str],
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> Any:
        """An aiohttp request context for an encoded path and decoded query pairs, signed as user
        (access key, secret). x-amz-* headers among `headers` are signed; the others are sent unsigned."""
        qs = encode_query(query)
        url = URL(self.endpoint + path + ("?" + qs if qs else ""), encoded=True)
        return self.session().request(
            method, url, headers=self._sign(user, method, path, query, headers or {}), data=data, allow_redirects=False
        )

    def _sign(
        self, user: tuple[str, str], method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> dict[str, str]:
        amz_date, scope, key = self._clock(user[1])
        signed = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-")}
        signed |= {"host": self.netloc, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": amz_date}
        names = sorted(signed)
        canonical = canonical_request(method, path, canonical_query(query), signed, names, UNSIGNED_PAYLOAD)
        signature = sign(key, _string_to_sign(amz_date, scope, canonical))
        out = {k: v for k, v in headers.items() if not k.lower().startswith("x-amz-")} | signed
        out["Authorization"] = (
            f"{ALGORITHM} Credential={user[0]}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        out["Host"] = out.pop("host")
        return out

    def _clock(self, secret: str) -> tuple[str, str, bytes]:
        """amz-date, scope and signing key for now (the key derivation is cached by day)."""
        amz_date = datetime.fromtimestamp(int(time.time()), UTC).strftime("%Y%m%dT%H%M%SZ")
        scope = f"{amz_date[:8]}/{self.region}/{SERVICE}/{TERMINATOR}"
        return amz_date, scope, derive_signing_key(secret, amz_date[:8], self.region)

    async def call(
        self, user: tuple[str, str], method: str, path: str, *args: Any, **kw: Any
    ) -> tuple[int, Any, bytes]:
        """request() for an answer that is small: (status, headers, body); an S3 or admin error is raised as
        the console's ErrorAnswer with the same status and code."""
        try:
            async with self.request(user, method, path, *args, **kw) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise error_answer(resp.status, body)
                return resp.status, resp.headers, body
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ErrorAnswer(502, "Unreachable", f"the S3 endpoint did not answer: {reason}") from None

    def presign(self, user: tuple[str, str], netloc: str, scheme: str, path: str, expires: int) -> str:
        """A presigned GET URL of an encoded object path, for a browser elsewhere to fetch at scheme://netloc."""
        amz_date, scope, key = self._clock(user[1])
        query = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{user[0]}/{scope}"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        canonical = f"GET\n{path}\n{canonical_query(query)}\nhost:{netloc}\n\nhost\n{UNSIGNED_PAYLOAD}"
        signature = sign(key, _string_to_sign(amz_date, scope, canonical))
        return f"{scheme}://{netloc}{path}?{encode_query([*query, ('X-Amz-Signature', signature)])}"


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


async def body_chunks(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """A request body handed on piece by piece, never whole."""
    async for chunk in content.iter_chunked(CHUNK):
        yield chunk


def parse_xml(body: bytes) -> ET.Element:
    """An S3 answer's XML, its namespace dropped from every tag."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise ErrorAnswer(502, "InvalidResponse", "the S3 endpoint answered with malformed XML") from None
    for el in root.iter():
        el.tag = el.tag.rpartition("}")[2]
    return root


def error_answer(status: int, body: bytes) -> ErrorAnswer:
    """An S3 XML error or an admin JSON error, as the console's own JSON error with the same status."""
    text = body[:4096].decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
            return ErrorAnswer(status, str(doc.get("code", f"HTTP{status}")), str(doc.get("message", "")))
        except ValueError:
            pass
    try:
        root = ET.fromstring(body)
        fields = {el.tag.rpartition("}")[2]: el.text or "" for el in root}
        if fields.get("Code"):
            return ErrorAnswer(status, fields["Code"], fields.get("Message", ""))
    except ET.ParseError:
        pass
    return ErrorAnswer(status, f"HTTP{status}", text[:200] or "no error document")


def content_md5(body: bytes) -> str:
    """The Content-MD5 header of a body: S3 wants it on its small configuration PUTs."""
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def admin_path(rel: str) -> str:
    return ADMIN_PATH + rel
