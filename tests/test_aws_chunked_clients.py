"""gateway.s3.aws_chunked decodes what botocore / boto3 themselves send."""

from __future__ import annotations

import base64
import io
import os
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore import httpchecksum
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from multidict import CIMultiDict

from gateway.s3 import checksums, payload, sigv4
from gateway.s3.aws_chunked import AwsChunkedReader
from tests.aws_chunked_helpers import (
    ACCESS_KEY,
    DATA,
    SECRET_KEY,
    FakeStream,
    b64_crc32,
    decode,
    encode,
    has_trailer,
    signed_chunks,
    signer_for,
)


@pytest.mark.parametrize(
    ("algo", "cls"),
    [
        ("CRC32", httpchecksum.Crc32Checksum),
        ("CRC32C", httpchecksum.CrtCrc32cChecksum),
        ("CRC64NVME", httpchecksum.CrtCrc64NvmeChecksum),
        ("SHA1", httpchecksum.Sha1Checksum),
        ("SHA256", httpchecksum.Sha256Checksum),
    ],
)
async def test_botocore_aws_chunked_wrapper(algo: str, cls: type) -> None:
    name = checksums.header_name(algo)
    data = os.urandom(2 * 1024 * 1024 + 5)  # the wrapper cuts 1 MiB chunks
    body = httpchecksum.AwsChunkedWrapper(io.BytesIO(data), checksum_cls=cls, checksum_name=name).read()
    reader = AwsChunkedReader(FakeStream(body), payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER, trailer=name)
    assert await decode(reader, limit=1024 * 1024) == data
    expected = cls()
    expected.update(data)
    assert reader.checksum_b64 == expected.b64digest()


def capture_boto3_put(data: bytes, **params: object) -> AWSRequest:
    """The request boto3's put_object sends to an https endpoint (where it uses aws-chunked by default)."""
    client = boto3.client(
        "s3",
        endpoint_url="https://127.0.0.1:9000",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    captured: list[AWSRequest] = []

    def before_send(request: AWSRequest, **_: object) -> AWSResponse:
        captured.append(request)
        raw = mock.Mock()
        raw.stream.return_value = iter([b""])
        return AWSResponse(request.url, 200, {"ETag": '"x"'}, raw)

    client.meta.events.register("before-send", before_send)
    client.put_object(Bucket="bucket", Key="dir/ünï code+.bin", Body=data, **params)
    return captured[0]


@pytest.mark.parametrize("algo", [None, "CRC32C", "SHA256", "CRC64NVME"])
async def test_boto3_put_object_end_to_end(algo: str | None) -> None:
    data = os.urandom(1024 * 1024 * 2 + 333)
    request = capture_boto3_put(data, **({"ChecksumAlgorithm": algo} if algo else {}))
    parts = urlsplit(request.url)
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        headers.add(key, value.decode() if isinstance(value, bytes) else value)
    assert headers["x-amz-content-sha256"] == payload.STREAMING_UNSIGNED_PAYLOAD_TRAILER
    assert headers["content-encoding"] == "aws-chunked"
    body = request.body.read()

    auth = sigv4.verify(request.method, parts.path, parse_qsl(parts.query), headers, lambda _: SECRET_KEY)
    assert auth.streaming and has_trailer(auth) and not signed_chunks(auth)
    reader = AwsChunkedReader.from_request(FakeStream(body), auth, headers)
    assert await decode(reader) == data
    assert reader.checksum_algorithm == (algo or "CRC32")
    assert reader.checksum_b64 == base64.b64encode(checksums.compute(algo or "CRC32", data)).decode()


async def test_botocore_signed_request_then_signed_chunks() -> None:
    """Seed signature from botocore's own signer, chunks signed by the encoder above."""

    class Streaming(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return payload.STREAMING_PAYLOAD_TRAILER

    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(DATA)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    request = AWSRequest(method="PUT", url="http://127.0.0.1:9000/bucket/key", headers=headers)
    Streaming(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "eu-west-3").add_auth(request)
    received = CIMultiDict({k: v for k, v in request.headers.items()})
    received["Host"] = "127.0.0.1:9000"
    auth = sigv4.verify("PUT", "/bucket/key", [], received, lambda _: SECRET_KEY)

    body = encode(DATA, 65536, signer=signer_for(auth), trailers=[("x-amz-checksum-crc32", b64_crc32(DATA))])
    reader = AwsChunkedReader.from_request(FakeStream(body), auth, received)
    assert await decode(reader) == DATA
