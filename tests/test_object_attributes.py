"""GetObjectAttributes through boto3 (default settings) against a real embedded server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.s3_helpers import MiB, checksum, expect_error, signed_request
from tests.server_process import ServerProcess

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def attributes(s3: Any, bucket: str, key: str, wanted: list[str] = ALL, **kwargs: Any) -> dict[str, Any]:
    resp: dict[str, Any] = s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=wanted, **kwargs)
    return resp


def test_single_part_object(s3: Any, bucket: str) -> None:
    body = b"attributes of a small object"
    put = s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="SHA256")
    got = attributes(s3, bucket, "one")
    assert got["ETag"] == put["ETag"].strip('"')
    assert got["ObjectSize"] == len(body)
    assert got["StorageClass"] == "STANDARD"
    assert got["Checksum"]["ChecksumSHA256"] == checksum("SHA256", body)
    assert got["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert "ObjectParts" not in got  # only multipart objects have parts
    assert got["LastModified"] == s3.head_object(Bucket=bucket, Key="one")["LastModified"]


def test_only_what_was_asked(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="some", Body=b"12345")
    got = attributes(s3, bucket, "some", ["ObjectSize"])
    assert got["ObjectSize"] == 5
    assert not {"ETag", "Checksum", "ObjectParts", "StorageClass"} & got.keys()
    got = attributes(s3, bucket, "some", ["ETag", "StorageClass"])
    assert got["ETag"] and got["StorageClass"] == "STANDARD" and "ObjectSize" not in got


@pytest.fixture
def multipart(s3: Any, bucket: str) -> tuple[str, list[int]]:
    """An object of five parts with CRC32 checksums (composite), part sizes 5 MiB x4 + 3 bytes."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")["UploadId"]
    sizes = [5 * MiB] * 4 + [3]
    parts = []
    for n, size in enumerate(sizes, start=1):
        r = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=bytes([n]) * size, ChecksumAlgorithm="CRC32"
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    return bucket, sizes


def test_multipart_object_parts(s3: Any, multipart: tuple[str, list[int]]) -> None:
    bucket, sizes = multipart
    got = attributes(s3, bucket, "mp")
    assert got["ETag"].endswith("-5") and got["ObjectSize"] == sum(sizes)
    assert got["Checksum"]["ChecksumType"] == "COMPOSITE" and got["Checksum"]["ChecksumCRC32"]
    parts = got["ObjectParts"]
    assert parts["TotalPartsCount"] == 5 and parts["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == list(enumerate(sizes, start=1))
    assert parts["Parts"][4]["ChecksumCRC32"] == checksum("CRC32", bytes([5]) * 3)


def test_parts_pagination(s3: Any, multipart: tuple[str, list[int]]) -> None:
    bucket, _ = multipart
    seen: list[int] = []
    marker = 0
    for _ in range(5):
        page = attributes(s3, bucket, "mp", ["ObjectParts"], MaxParts=2, PartNumberMarker=marker)["ObjectParts"]
        assert page["MaxParts"] == 2 and page["PartNumberMarker"] == marker
        seen += [p["PartNumber"] for p in page["Parts"]]
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
        assert marker == seen[-1]
    assert seen == [1, 2, 3, 4, 5]
    empty = attributes(s3, bucket, "mp", ["ObjectParts"], PartNumberMarker=5)["ObjectParts"]
    assert empty.get("Parts", []) == [] and empty["IsTruncated"] is False


def test_missing_or_bad_attributes_header(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    resp = signed_request(server, "GET", f"/{bucket}/k?attributes")
    assert (resp.status, resp.error()["Code"]) == (400, "InvalidArgument")
    resp = signed_request(server, "GET", f"/{bucket}/k?attributes", headers={"x-amz-object-attributes": " , "})
    assert (resp.status, resp.error()["Code"]) == (400, "InvalidArgument")
    expect_error(s3.get_object_attributes, "InvalidArgument", 400, Bucket=bucket, Key="k", ObjectAttributes=["Size"])
    for name, value in (("x-amz-max-parts", "-1"), ("x-amz-max-parts", "1e3"), ("x-amz-part-number-marker", "9" * 40)):
        headers = {"x-amz-object-attributes": "ObjectParts", name: value}
        resp = signed_request(server, "GET", f"/{bucket}/k?attributes", headers=headers)
        # A single-part object lists no parts, but the numbers are judged all the same.
        assert (resp.status, resp.error()["Code"]) == (400, "InvalidArgument"), (name, value)


def test_missing_objects(s3: Any, bucket: str) -> None:
    expect_error(s3.get_object_attributes, "NoSuchKey", 404, Bucket=bucket, Key="ghost", ObjectAttributes=["ETag"])
    s3.put_object(Bucket=bucket, Key="v", Body=b"x")
    assert attributes(s3, bucket, "v", ["ObjectSize"], VersionId="null")["ObjectSize"] == 1
    expect_error(
        s3.get_object_attributes, "NoSuchVersion", 404, Bucket=bucket, Key="v", VersionId="0" * 32, ObjectAttributes=ALL
    )
    expect_error(
        s3.get_object_attributes, "InvalidArgument", 400, Bucket=bucket, Key="v", VersionId="abc", ObjectAttributes=ALL
    )
