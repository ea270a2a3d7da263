"""What a SigV4 signature says about the request body: the x-amz-content-sha256 modes, the AuthContext
the body readers get, and the check of a signed payload hash while the body streams."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from gateway.s3.errors import S3Error

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOADS = (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who signed the request and what the body-level checks need (chunk signatures, payload hash)."""

    access_key: str
    region: str
    date: str  # YYYYMMDD, from the credential scope
    amz_date: str  # YYYYMMDDTHHMMSSZ, the request timestamp that was signed
    scope: str  # date/region/s3/aws4_request
    signing_key: bytes = field(repr=False)
    seed_signature: str  # the request's signature: first link of a chunk-signature chain
    payload_hash: str  # the x-amz-content-sha256 value (UNSIGNED-PAYLOAD for presigned URLs)
    presigned: bool
    signed_headers: tuple[str, ...] = ()

    @property
    def streaming(self) -> bool:
        """The body is aws-chunked (gateway.s3.aws_chunked.AwsChunkedReader decodes it)."""
        return self.payload_hash in STREAMING_PAYLOADS

    @property
    def content_sha256(self) -> str | None:
        """The hex SHA-256 the body must have, or None when the payload is not signed that way."""
        if len(self.payload_hash) == 64 and self.payload_hash not in STREAMING_PAYLOADS:
            return self.payload_hash.lower()
        return None


class PayloadHashVerifier:
    """Checks a body against its x-amz-content-sha256 while the gateway streams it.

    Feed every body byte to update(); call verify() at the end, before acknowledging the write.
    """

    __slots__ = ("_hash", "expected")

    def __init__(self, expected_hex: str) -> None:
        self.expected = expected_hex.lower()
        self._hash = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def verify(self) -> None:
        computed = self._hash.hexdigest()
        if not hmac.compare_digest(computed, self.expected):
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                ClientComputedContentSHA256=self.expected,
                S3ComputedContentSHA256=computed,
            )
