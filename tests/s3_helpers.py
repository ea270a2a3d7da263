"""Helpers for the S3 API tests: unique names, error assertions, raw SigV4-signed HTTP requests and
aws-chunked bodies built by hand (chunk and trailer signatures per the AWS SigV4 streaming spec)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import random
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.crt.auth
from awscrt import checksums as crt
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess

MiB = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def unique(prefix: str = "b") -> str:
    """A bucket name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def get_body(s3: Any, bucket: str, key: str, **kwargs: Any) -> bytes:
    """An object's bytes, read whole with boto3."""
    body: bytes = s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
    return body


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def expect_error(fn: Callable[..., Any], code: str, status: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call fn; it must fail with the S3 error `code` and HTTP `status`. Returns the error response."""
    try:
        fn(*args, **kwargs)
    except ClientError as exc:
        resp: dict[str, Any] = exc.response
        got = (resp["Error"].get("Code"), resp["ResponseMetadata"]["HTTPStatusCode"])
        assert got == (code, status), f"expected {code} {status}, got {got}: {resp['Error']}"
        return resp
    raise AssertionError(f"expected {code} {status}, but the call succeeded")


def _trailer_checksums(model: Any, params: dict[str, Any], **_: Any) -> None:
    algorithm = params["context"].get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict) and model.has_streaming_input:
        algorithm["in"] = "trailer"


def chunked_client(server: ServerProcess, **config: Any) -> Any:
    """A boto3 client that sends what boto3 sends to AWS over https: aws-chunked bodies
    (STREAMING-UNSIGNED-PAYLOAD-TRAILER) with the checksum in a trailer. Over plain http botocore
    would put the checksum in a header and sign the payload instead."""
    client = server.client(**config)
    client.meta.events.register("before-call.s3.*", _trailer_checksums)
    return client


# -- checksums as S3 clients compute them -----------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum(algorithm: str, body: bytes) -> str:
    """base64 of the big-endian digest, as x-amz-checksum-* carries it."""
    algo = algorithm.upper()
    if algo == "CRC32":
        return b64(crt.crc32(body).to_bytes(4, "big"))
    if algo == "CRC32C":
        return b64(crt.crc32c(body).to_bytes(4, "big"))
    if algo == "CRC64NVME":
        return b64(crt.crc64nvme(body).to_bytes(8, "big"))
    return b64(hashlib.new(algo.lower(), body).digest())


def md5_b64(body: bytes) -> str:
    return b64(hashlib.md5(body).digest())


# -- raw signed requests -----------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error(self) -> dict[str, str]:
        """The S3 XML error document as {tag: text}."""
        root = ET.fromstring(self.body)
        assert root.tag == "Error", self.body
        return {child.tag: child.text or "" for child in root}


class _Signer(S3SigV4Auth):
    """botocore's S3 SigV4 signer with the x-amz-content-sha256 value chosen by the test."""

    def __init__(self, payload_hash: str, secret: str, access_key: str) -> None:
        super().__init__(Credentials(access_key, secret), "s3", "us-east-1")
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@dataclass
class Signed:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]
    signature: str
    amz_date: str


@contextmanager
def botocore_clock(when: datetime) -> Iterator[None]:
    """Make botocore's signers (its own and the CRT ones it prefers when awscrt is installed) sign at `when`."""
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

    def now(remove_tzinfo: bool = True) -> datetime:
        return aware.replace(tzinfo=None) if remove_tzinfo else aware

    with mock.patch.object(botocore.auth, "get_current_datetime", now):
        with mock.patch.object(botocore.crt.auth, "get_current_datetime", now):
            yield


def sign(
    server: ServerProcess,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    payload_hash: str = EMPTY_SHA256,
    when: datetime | None = None,
    secret: str = SECRET_KEY,
    access_key: str = ACCESS_KEY,
) -> Signed:
    """Sign a request for `target` (path?query) with botocore's S3SigV4Auth, at `when` (UTC, naive) or now."""
    request = AWSRequest(method=method, url=server.endpoint + target, headers=dict(headers or {}))
    signer = _Signer(payload_hash, secret, access_key)
    with botocore_clock(when) if when is not None else nullcontext():
        signer.add_auth(request)
    auth = request.headers["Authorization"]
    return Signed(
        method,
        target,
        {k: v for k, v in request.headers.items()},
        auth.rsplit("Signature=", 1)[1],
        request.headers["X-Amz-Date"],
    )


def send(server: ServerProcess, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> RawResponse:
    """One HTTP request over a fresh loopback connection."""
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def send_headers_only(server: ServerProcess, method: str, target: str, headers: dict[str, str]) -> RawResponse:
    """Send a request's headers (say, a huge Content-Length) and read the answer without sending a body."""
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def signed_request(
    server: ServerProcess,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    payload_hash: str | None = None,
    **sign_options: Any,
) -> RawResponse:
    h = dict(headers or {})
    h.setdefault("Content-Length", str(len(body)))
    signed = sign(
        server,
        method,
        target,
        h,
        hashlib.sha256(body).hexdigest() if payload_hash is None else payload_hash,
        **sign_options,
    )
    return send(server, method, target, signed.headers, body)


# -- aws-chunked bodies -------------------------------------------------------------------------------------


def signing_key(secret: str, date: str, region: str = "us-east-1") -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


class ChunkSigner:
    """The chain of chunk signatures that follows a request's seed signature."""

    def __init__(self, signed: Signed, secret: str = SECRET_KEY) -> None:
        self.key = signing_key(secret, signed.amz_date[:8])
        self.scope = f"{signed.amz_date[:8]}/us-east-1/s3/aws4_request"
        self.amz_date = signed.amz_date
        self.previous = signed.signature

    def chunk(self, data: bytes) -> str:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                self.previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        self.previous = _hmac_hex(self.key, to_sign)
        return self.previous

    def trailer(self, trailer_lines: str) -> str:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                self.amz_date,
                self.scope,
                self.previous,
                hashlib.sha256(trailer_lines.encode()).hexdigest(),
            ]
        )
        return _hmac_hex(self.key, to_sign)


def split_chunks(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def signed_chunked_body(
    chunks: list[bytes], signer: ChunkSigner | None, trailer: tuple[str, str] | None = None, tamper: int = -1
) -> bytes:
    """aws-chunked framing with chunk signatures (signer None: placeholders of the same length).

    `trailer` (name, value) makes it the -TRAILER variant; `tamper` flips one hex digit of that chunk's signature.
    """
    out = bytearray()
    for i, piece in enumerate([*chunks, b""]):
        sig = signer.chunk(piece) if signer else "0" * 64
        if i == tamper:
            sig = ("1" if sig[0] == "0" else "0") + sig[1:]
        out += f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece
        if piece:
            out += b"\r\n"
    if trailer is None:
        return bytes(out + b"\r\n")
    lines = f"{trailer[0]}:{trailer[1]}\n"
    tsig = signer.trailer(lines) if signer else "0" * 64
    return bytes(out + f"{trailer[0]}:{trailer[1]}\r\nx-amz-trailer-signature:{tsig}\r\n\r\n".encode())


def unsigned_trailer_body(chunks: list[bytes], trailer: tuple[str, str]) -> bytes:
    out = bytearray()
    for piece in chunks:
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += f"0\r\n{trailer[0]}:{trailer[1]}\r\n\r\n".encode()
    return bytes(out)


def dev_client(c: DevCluster, gateway: int = 1, **config: Any) -> Any:
    """boto3 (root credentials) against one gateway of a DevCluster; config as botocore's Config takes it."""
    return boto3.client(
        "s3",
        endpoint_url=c.endpoint(gateway),
        aws_access_key_id=c.env["TESSERA_ACCESS_KEY"],
        aws_secret_access_key=c.env["TESSERA_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(**config) if config else None,
    )
