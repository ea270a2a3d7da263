"""Client of the gateway's admin API (docs/admin-api.md): what `tessera admin` talks through.

Every call is SigV4-signed with the root credentials and bounded by a timeout; every failure, whether the
gateway answered with an error or could not be reached at all, surfaces as one AdminError.
"""

from __future__ import annotations

import json
import os
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from gateway.admin.errors import AdminError
from gateway.s3.signer import Signer, encode_query, encode_segment

BASE_PATH = "/_tessera/admin/v1/"
DEFAULT_TIMEOUT = 30.0


class AdminClient:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
    ) -> None:
        """ca_bundle: a PEM file of the CAs an https endpoint's certificate is checked against, instead of
        the system's (aws-cli's --ca-bundle / AWS_CA_BUNDLE)."""
        # aws-cli wants a scheme; accept a bare HOST:PORT too, as that is what `tessera` prints for --listen.
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AdminError(0, "InvalidEndpoint", f"not an http(s) URL: {endpoint!r}")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self._signer = Signer(access_key, secret_key, region, parts.netloc)
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = True  # aiohttp's default: the system's CAs
        if ca_bundle:
            try:
                self._ssl = ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                reason = "no PEM certificate in it" if isinstance(exc, ssl.SSLError) else exc.strerror or str(exc)
                raise AdminError(0, "InvalidCABundle", f"cannot use the CA bundle {ca_bundle}: {reason}") from None

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API ---------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "status")

    async def inspect(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
        version = [("versionId", version_id)] if version_id is not None else []
        return await self._call("GET", "inspect", [("bucket", bucket), ("key", key), *version])

    async def start_repair(self) -> dict[str, Any]:
        """{"job": JOB}"""
        return await self._call("POST", "repair")

    async def start_scrub(self) -> dict[str, Any]:
        """{"job": JOB}"""
        return await self._call("POST", "scrub")

    async def drain(self, node: str) -> dict[str, Any]:
        """{"job": JOB}"""
        return await self._call("POST", f"nodes/{encode_segment(node)}/drain")

    async def run_lifecycle(self, bucket: str = "") -> dict[str, Any]:
        """{"job": JOB}: apply lifecycle rules now (to one bucket, or to every bucket with rules)."""
        return await self._call("POST", "lifecycle/run", [("bucket", bucket)] if bucket else [])

    async def list_nodes(self) -> dict[str, Any]:
        """{"nodes": [NODE]}"""
        return await self._call("GET", "nodes")

    async def remove_node(self, node: str) -> dict[str, Any]:
        """{"removed": NODE}"""
        return await self._call("DELETE", f"nodes/{encode_segment(node)}")

    async def rebalance(self) -> dict[str, Any]:
        """{"job": JOB}"""
        return await self._call("POST", "rebalance")

    async def job(self, job_id: str) -> dict[str, Any]:
        """{"job": JOB}"""
        return await self._call("GET", f"jobs/{encode_segment(job_id)}")

    async def list_users(self) -> dict[str, Any]:
        return await self._call("GET", "users")

    async def add_user(self, name: str, policy: str = "", document: bytes = b"") -> dict[str, Any]:
        """{"name", "access_key", "secret_key", "created", "policy"}: the only time the secret is shown.
        policy: a built-in policy's name; document: a policy's JSON (docs/access.md)."""
        query = [("name", name)] + ([("policy", policy)] if policy else [])
        return await self._call("POST", "users", query, document)

    async def set_policy(self, name: str, policy: str = "", document: bytes = b"") -> dict[str, Any]:
        """{"name", "policy", "document"}: a built-in policy by name, or a JSON document."""
        query = [("policy", policy)] if policy else []
        return await self._call("PUT", f"users/{encode_segment(name)}/policy", query, document)

    async def show_policy(self, name: str) -> dict[str, Any]:
        return await self._call("GET", f"users/{encode_segment(name)}/policy")

    async def remove_user(self, name: str) -> dict[str, Any]:
        return await self._call("DELETE", f"users/{encode_segment(name)}")

    async def bucket_info(self, bucket: str) -> dict[str, Any]:
        return await self._call("GET", f"buckets/{encode_segment(bucket)}")

    async def set_bucket_quota(self, bucket: str, max_size: int | None, max_objects: int | None) -> dict[str, Any]:
        """Set the quota (None leaves that limit out: none); clear_bucket_quota() removes it."""
        return await self._call("PUT", f"buckets/{encode_segment(bucket)}/quota", _limits(max_size, max_objects))

    async def clear_bucket_quota(self, bucket: str) -> dict[str, Any]:
        return await self._call("DELETE", f"buckets/{encode_segment(bucket)}/quota")

    async def user_info(self, name: str) -> dict[str, Any]:
        return await self._call("GET", f"users/{encode_segment(name)}")

    async def set_user_quota(self, name: str, max_size: int | None, max_objects: int | None) -> dict[str, Any]:
        return await self._call("PUT", f"users/{encode_segment(name)}/quota", _limits(max_size, max_objects))

    async def clear_user_quota(self, name: str) -> dict[str, Any]:
        return await self._call("DELETE", f"users/{encode_segment(name)}/quota")

    async def list_notify_targets(self) -> dict[str, Any]:
        return await self._call("GET", "notify")

    async def add_notify_target(self, name: str, webhook: str, auth_token: str = "") -> dict[str, Any]:
        query = [("name", name), ("webhook", webhook)] + ([("auth-token", auth_token)] if auth_token else [])
        return await self._call("POST", "notify", query)

    async def remove_notify_target(self, name: str) -> dict[str, Any]:
        return await self._call("DELETE", f"notify/{encode_segment(name)}")

    # -- plumbing --------------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 10.0)),
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(ssl=self._ssl),
            )
        return self._session

    async def _call(
        self, method: str, rel_path: str, query: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> dict[str, Any]:
        path = BASE_PATH + rel_path  # already encoded: the segments we interpolate went through encode_segment
        qs = encode_query(query)
        # encoded=True: yarl must send exactly the bytes we signed.
        url = URL(self.endpoint + path + ("?" + qs if qs else ""), encoded=True)
        headers = self._signer.headers(method, path, query)
        try:
            # The body (a policy document) goes unsigned (UNSIGNED-PAYLOAD), as the headers say.
            async with self._open().request(method, url, headers=headers, data=body or None) as resp:
                status, body = resp.status, await resp.read()
        except TimeoutError:  # asyncio's and aiohttp's timeouts are TimeoutError since 3.11
            raise AdminError(
                0, "Timeout", f"the gateway at {self.endpoint} did not answer within {self.timeout:g}s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AdminError(0, "Unreachable", f"cannot reach the gateway at {self.endpoint}: {_reason(exc)}") from None
        if status >= 300:
            raise error_from_response(status, body)
        if status == 204 or not body:
            return {}
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise AdminError(
                status, "InvalidResponse", f"expected a JSON object from {self.endpoint}, got {_snippet(body)!r}"
            )
        return doc


def _limits(max_size: int | None, max_objects: int | None) -> list[tuple[str, str]]:
    pairs = (("max-size", max_size), ("max-objects", max_objects))
    return [(name, str(value)) for name, value in pairs if value is not None]


def error_from_response(status: int, body: bytes) -> AdminError:
    """The API's JSON error, or the S3 XML error the auth layer sends, or whatever else came back."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "code" in doc:
            return AdminError(status, str(doc["code"]), str(doc.get("message", "")))
    except ValueError:
        pass
    try:
        root = ET.fromstring(body)
        # Tolerate a namespaced document: match on local names.
        fields = {el.tag.rpartition("}")[2]: (el.text or "") for el in root}
        if root.tag.rpartition("}")[2] == "Error" and fields.get("Code"):
            return AdminError(status, fields["Code"], fields.get("Message", ""))
    except ET.ParseError:
        pass
    return AdminError(status, f"HTTP{status}", _snippet(body) or "no error document")


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()


def _reason(exc: BaseException) -> str:
    """The root cause in a few words: aiohttp wraps 'Connection refused' two levels deep."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        detail = getattr(cause, "verify_message", None) or str(cause)
        return f"its TLS certificate is not trusted ({detail}); --ca-bundle names the CA that signed it"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS failed: {getattr(exc.os_error, 'reason', None) or exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        # asyncio puts "Connect call failed (addr)" in strerror; the errno's own text is what people know.
        # (getaddrinfo errors have negative errnos and a good strerror already).
        return os.strerror(err.errno) if err.errno and err.errno > 0 else (err.strerror or str(err))
    return str(exc) or type(exc).__name__
