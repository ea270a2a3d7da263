"""A lean async S3 client for load generation: aiohttp, SigV4 with UNSIGNED-PAYLOAD, one shared pool.

Why not boto3: measured against bench.limits' trivial server, boto3 spends 1.6-2.1 ms of CPU per 4 KiB
request, this client ~0.2-0.25 ms (signing ~12 us of it; the rest is aiohttp), so on a 2-core machine
boto3 would be the bottleneck long before the server is.
Bodies are always streamed in pieces of at most 1 MiB: aiohttp handed one big buffer copies and stalls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.s3.signer import Signer, encode_query
from gateway.s3.signer import encode_path as encode_key

PIECE = 1 << 20
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

Body = bytes | Iterable[bytes | memoryview] | None


class S3RequestError(Exception):
    """A response with an unexpected status: carries the S3 error code when the body had one."""

    def __init__(self, method: str, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{method} {status} {code}: {message}".rstrip(": "))
        self.status, self.code = status, code


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = "us-east-1"


class S3Client:
    def __init__(
        self,
        endpoint: str,
        creds: Credentials,
        connections: int = 64,
        timeout: float = 300,
        ca_bundle: str | None = None,
    ) -> None:
        """ca_bundle: a PEM file of the CAs an https endpoint's certificate is checked against (else the system's)."""
        parts = urlsplit(endpoint.rstrip("/"))
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.creds = creds
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None
        self.signer = Signer(creds.access_key, creds.secret_key, creds.region, self.host)
        # True is aiohttp's own default (the system's CAs), so plain http runs are configured as before.
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True

    async def __aenter__(self) -> S3Client:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._connections, limit_per_host=self._connections, ttl_dns_cache=None, ssl=self._ssl
        )
        # No compression, no cookie jar, no default User-Agent: less work per request on both sides.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- signing ---------------------------------------------------------------------------------

    def sign_headers(
        self, method: str, path: str, query: Sequence[tuple[str, str]], extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Headers for a request whose path is already encoded (encode_key) and query is decoded pairs."""
        return self.signer.headers(method, path, query, extra)

    # -- raw requests ----------------------------------------------------------------------------

    def _url(self, path: str, query: Sequence[tuple[str, str]]) -> URL:
        qs = encode_query(query)
        # encoded=True: yarl must send exactly the bytes we signed (no re-quoting, no dot-segment removal).
        return URL(self.base + path + ("?" + qs if qs else ""), encoded=True)

    def _path(self, bucket: str, key: str | None = None) -> str:
        return f"/{bucket}" if key is None else f"/{bucket}/{encode_key(key)}"

    async def request(
        self,
        method: str,
        bucket: str,
        key: str | None = None,
        query: Sequence[tuple[str, str]] = (),
        body: Body = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        sink: Callable[[bytes], None] | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One signed request. The response body is passed piecewise to sink when given (not kept)."""
        assert self._session is not None, "open() the client first"
        path = self._path(bucket, key)
        hdrs = self.sign_headers(method, path, query, headers)
        data: object = body
        if body is not None and not isinstance(body, bytes):
            data = _stream(body)
        async with self._session.request(method, self._url(path, query), headers=hdrs, data=data) as resp:
            if resp.status not in expect:
                raise _error(method, resp.status, await resp.read())
            if sink is None:
                payload = await resp.read()
            else:
                payload = b""
                async for piece in resp.content.iter_any():
                    sink(piece)
            return resp.status, resp.headers, payload

    # -- S3 operations ---------------------------------------------------------------------------

    async def create_bucket(self, bucket: str) -> None:
        body = None
        if self.creds.region != "us-east-1":  # AWS wants the region spelled out everywhere else
            root = ET.Element("CreateBucketConfiguration", xmlns=_S3_NS[1:-1])
            ET.SubElement(root, "LocationConstraint").text = self.creds.region
            body = ET.tostring(root)
        try:
            await self.request("PUT", bucket, body=body)
        except S3RequestError as exc:
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    async def delete_bucket(self, bucket: str) -> None:
        await self.request("DELETE", bucket, expect=(204, 200))

    async def put_object(self, bucket: str, key: str, body: Body, size: int) -> str:
        _, headers, _ = await self.request(
            "PUT", bucket, key, body=body, headers={"Content-Length": str(size)}, expect=(200,)
        )
        return headers.get("ETag", "")

    async def put_many(self, bucket: str, keys: Iterable[str], body: bytes, concurrency: int = 32) -> None:
        """PUT `body` under each of `keys`, `concurrency` writes in flight (filling a bucket for a benchmark)."""
        todo = iter(keys)

        async def worker() -> None:
            for key in todo:
                await self.put_object(bucket, key, body, len(body))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def get_object(self, bucket: str, key: str, sink: Callable[[bytes], None]) -> None:
        await self.request("GET", bucket, key, sink=sink)

    async def head_object(self, bucket: str, key: str) -> CIMultiDictProxy[str]:
        _, headers, _ = await self.request("HEAD", bucket, key)
        return headers

    async def delete_object(self, bucket: str, key: str) -> None:
        await self.request("DELETE", bucket, key, expect=(204, 200))

    async def list_objects(
        self, bucket: str, prefix: str = "", max_keys: int = 1000, token: str | None = None
    ) -> tuple[list[str], str | None]:
        """One ListObjectsV2 page: keys and the continuation token for the next page (None when done)."""
        query = [("list-type", "2"), ("max-keys", str(max_keys)), ("prefix", prefix)]
        if token:
            query.append(("continuation-token", token))
        _, _, payload = await self.request("GET", bucket, query=query)
        root = ET.fromstring(payload)
        keys = [el.text or "" for el in root.iter(f"{_S3_NS}Key")]
        truncated = root.findtext(f"{_S3_NS}IsTruncated") == "true"
        return keys, (root.findtext(f"{_S3_NS}NextContinuationToken") if truncated else None)

    async def list_all(self, bucket: str, prefix: str = "") -> AsyncIterator[str]:
        token: str | None = None
        while True:
            keys, token = await self.list_objects(bucket, prefix, token=token)
            for key in keys:
                yield key
            if token is None:
                return

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> None:
        """DeleteObjects in batches of 1000 (S3's limit). Content-MD5 is required by S3 for this call."""
        for i in range(0, len(keys), 1000):
            root = ET.Element("Delete")
            ET.SubElement(root, "Quiet").text = "true"
            for key in keys[i : i + 1000]:
                ET.SubElement(ET.SubElement(root, "Object"), "Key").text = key
            body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
            md5 = _b64(hashlib.md5(body).digest())
            _, _, payload = await self.request(
                "POST", bucket, query=[("delete", "")], body=body, headers={"Content-MD5": md5}
            )
            errors = ET.fromstring(payload).findall(f"{_S3_NS}Error") if payload else []
            if errors:
                raise S3RequestError("POST", 200, errors[0].findtext(f"{_S3_NS}Code") or "", "DeleteObjects")

    async def create_multipart_upload(self, bucket: str, key: str) -> str:
        _, _, payload = await self.request("POST", bucket, key, query=[("uploads", "")])
        upload_id = ET.fromstring(payload).findtext(f"{_S3_NS}UploadId")
        if not upload_id:
            raise S3RequestError("POST", 200, "NoUploadId", "CreateMultipartUpload")
        return upload_id

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: Body, size: int) -> str:
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        _, headers, _ = await self.request(
            "PUT", bucket, key, query=query, body=body, headers={"Content-Length": str(size)}
        )
        return headers.get("ETag", "")

    async def complete_multipart_upload(self, bucket: str, key: str, upload_id: str, etags: Sequence[str]) -> None:
        root = ET.Element("CompleteMultipartUpload")
        for number, etag in enumerate(etags, 1):
            part = ET.SubElement(root, "Part")
            ET.SubElement(part, "PartNumber").text = str(number)
            ET.SubElement(part, "ETag").text = etag
        body = ET.tostring(root, encoding="utf-8")
        _, _, payload = await self.request("POST", bucket, key, query=[("uploadId", upload_id)], body=body)
        # S3 may answer 200 with an error document when completion fails late.
        if payload and ET.fromstring(payload).tag.endswith("Error"):
            raise S3RequestError("POST", 200, ET.fromstring(payload).findtext("Code") or "", "Complete")

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self.request("DELETE", bucket, key, query=[("uploadId", upload_id)], expect=(204, 200))


async def _stream(pieces: Iterable[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
    for piece in pieces:
        yield piece


def _error(method: str, status: int, payload: bytes) -> S3RequestError:
    code, message = f"HTTP{status}", ""
    if payload:
        try:
            root = ET.fromstring(payload)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
        except ET.ParseError:
            message = payload[:200].decode(errors="replace")
    return S3RequestError(method, status, code, message)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
