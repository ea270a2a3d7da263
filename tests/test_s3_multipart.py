"""Multipart uploads against a real `tessera server`: boto3's low-level API and its transfer manager."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.s3_helpers import MiB, checksum, data, expect_error, md5_b64, unique

PART = 5 * MiB


def multipart_etag(parts: list[bytes]) -> str:
    """S3's ETag of a completed multipart upload: MD5 of the parts' binary MD5s, then -<count>."""
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"'


def upload(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> tuple[str, list[dict[str, Any]]]:
    """Create an upload and send its parts; returns the upload id and the parts list Complete wants."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done = []
    for number, body in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
        assert etag == f'"{hashlib.md5(body).hexdigest()}"'
        done.append({"PartNumber": number, "ETag": etag})
    return upload_id, done


def complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], **kw: Any) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **kw
    )


@pytest.fixture(scope="module")
def two_parts() -> list[bytes]:
    return [data(PART, seed=1), data(MiB + 3, seed=2)]


def test_multipart_upload(s3: Any, bucket: str, two_parts: list[bytes]) -> None:
    upload_id, parts = upload(
        s3, bucket, "mp/obj", two_parts, ContentType="video/mp4", Metadata={"k": "v"}, CacheControl="max-age=5"
    )
    resp = complete(s3, bucket, "mp/obj", upload_id, parts)
    assert resp["ETag"] == multipart_etag(two_parts)
    assert (resp["Bucket"], resp["Key"]) == (bucket, "mp/obj")
    whole = b"".join(two_parts)
    got = s3.get_object(Bucket=bucket, Key="mp/obj")
    assert got["Body"].read() == whole
    assert got["ETag"] == multipart_etag(two_parts)
    head = s3.head_object(Bucket=bucket, Key="mp/obj")
    assert head["ContentLength"] == len(whole)
    assert (head["ContentType"], head["Metadata"], head["CacheControl"]) == ("video/mp4", {"k": "v"}, "max-age=5")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="mp/")["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("mp/obj", len(whole), multipart_etag(two_parts))]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="mp/obj", UploadId=upload_id)


def test_get_part_number_and_ranges(s3: Any, bucket: str, two_parts: list[bytes]) -> None:
    upload_id, parts = upload(s3, bucket, "obj", two_parts)
    complete(s3, bucket, "obj", upload_id, parts)
    first = s3.get_object(Bucket=bucket, Key="obj", PartNumber=1)
    assert first["PartsCount"] == 2
    assert first["ContentLength"] == PART
    assert first["Body"].read() == two_parts[0]
    second = s3.get_object(Bucket=bucket, Key="obj", PartNumber=2)
    assert second["Body"].read() == two_parts[1]
    assert s3.head_object(Bucket=bucket, Key="obj", PartNumber=2)["ContentLength"] == len(two_parts[1])
    expect_error(s3.get_object, "InvalidPartNumber", 416, Bucket=bucket, Key="obj", PartNumber=3)
    whole = b"".join(two_parts)
    rng = s3.get_object(Bucket=bucket, Key="obj", Range=f"bytes={PART - 10}-{PART + 9}")
    assert rng["ContentRange"] == f"bytes {PART - 10}-{PART + 9}/{len(whole)}"
    assert rng["Body"].read() == whole[PART - 10 : PART + 10]
    assert s3.get_object(Bucket=bucket, Key="obj", Range="bytes=-5")["Body"].read() == whole[-5:]


def test_single_small_part(s3: Any, bucket: str) -> None:
    body = b"only part, may be small"
    upload_id, parts = upload(s3, bucket, "one", [body])
    assert complete(s3, bucket, "one", upload_id, parts)["ETag"] == multipart_etag([body])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == body


def test_reuploaded_part_replaces(s3: Any, bucket: str) -> None:
    upload_id, _ = upload(s3, bucket, "re", [b"first version"])
    etag = s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=b"second")["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="re", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [(1, etag, 6)]
    complete(s3, bucket, "re", upload_id, [{"PartNumber": 1, "ETag": etag}])
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == b"second"


def test_list_parts_pagination(s3: Any, bucket: str) -> None:
    bodies = [f"part {i}".encode() * (i + 1) for i in range(5)]
    upload_id, parts = upload(s3, bucket, "lp", bodies)
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True
    assert page["NextPartNumberMarker"] == 2
    assert page["MaxParts"] == 2
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=2, PartNumberMarker=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [3, 4]
    assert page["PartNumberMarker"] == 2
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=2, PartNumberMarker=4)
    assert [p["PartNumber"] for p in page["Parts"]] == [5]
    assert page["IsTruncated"] is False
    pages = s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key="lp", UploadId=upload_id, PaginationConfig={"PageSize": 2}
    )
    walked = [p for pg in pages for p in pg["Parts"]]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in walked] == [
        (d["PartNumber"], d["ETag"], len(b)) for d, b in zip(parts, bodies, strict=True)
    ]


def _upload_keys(page: dict[str, Any]) -> list[str]:
    return [u["Key"] for u in page.get("Uploads", [])]


def test_list_multipart_uploads(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/2", "a/b/3", "b/1", "c", "c"]
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"] for k in keys]
    everything = s3.list_multipart_uploads(Bucket=bucket)
    assert _upload_keys(everything) == keys
    assert sorted(u["UploadId"] for u in everything["Uploads"]) == sorted(ids)
    assert everything["IsTruncated"] is False
    assert _upload_keys(s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")) == ["a/1", "a/2", "a/b/3"]
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert _upload_keys(rolled) == ["c", "c"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/", "b/"]
    nested = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert _upload_keys(nested) == ["a/1", "a/2"]
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["a/b/"]
    assert _upload_keys(s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a/2")) == ["a/b/3", "b/1", "c", "c"]


def test_list_multipart_uploads_pagination(s3: Any, bucket: str) -> None:
    keys = ["k1", "k2", "k2", "k2", "k3"]
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"] for k in keys]
    seen: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    for _ in range(10):
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **markers)
        assert len(page.get("Uploads", [])) <= 2
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert [k for k, _ in seen] == keys
    assert sorted(i for _, i in seen) == sorted(ids)
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [(u["Key"], u["UploadId"]) for pg in pages for u in pg.get("Uploads", [])] == seen


def test_abort(s3: Any, bucket: str) -> None:
    upload_id, parts = upload(s3, bucket, "ab", [b"some data"])
    assert (
        s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=upload_id)["ResponseMetadata"]["HTTPStatusCode"]
        == 204
    )
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="ab", UploadId=upload_id)
    expect_error(
        s3.upload_part, "NoSuchUpload", 404, Bucket=bucket, Key="ab", UploadId=upload_id, PartNumber=2, Body=b"x"
    )
    expect_error(complete, "NoSuchUpload", 404, s3, bucket, "ab", upload_id, parts)
    expect_error(s3.abort_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="ab", UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="ab")


def test_upload_id_belongs_to_its_key(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mine")["UploadId"]
    expect_error(
        s3.upload_part, "NoSuchUpload", 404, Bucket=bucket, Key="other", UploadId=upload_id, PartNumber=1, Body=b"x"
    )
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="mine", UploadId="0" * 32)


@pytest.mark.parametrize("number", [0, 10001])
def test_part_number_out_of_range(s3: Any, bucket: str, number: int) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    expect_error(
        s3.upload_part,
        "InvalidArgument",
        400,
        Bucket=bucket,
        Key="pn",
        UploadId=upload_id,
        PartNumber=number,
        Body=b"x",
    )


def test_entity_too_small(s3: Any, bucket: str) -> None:
    upload_id, parts = upload(s3, bucket, "small", [b"a" * 1024, b"b" * 1024])
    resp = expect_error(complete, "EntityTooSmall", 400, s3, bucket, "small", upload_id, parts)
    assert resp["Error"]["PartNumber"] == "1"
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="small")
    # The upload survives a refused completion: fix part 1 and complete.
    big = data(PART, seed=5)
    etag = s3.upload_part(Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=1, Body=big)["ETag"]
    parts[0]["ETag"] = etag
    complete(s3, bucket, "small", upload_id, parts)
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == big + b"b" * 1024


def test_invalid_part(s3: Any, bucket: str) -> None:
    upload_id, parts = upload(s3, bucket, "ip", [b"one"])
    wrong = [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]
    expect_error(complete, "InvalidPart", 400, s3, bucket, "ip", upload_id, wrong)
    missing = [{"PartNumber": 2, "ETag": parts[0]["ETag"]}]
    expect_error(complete, "InvalidPart", 400, s3, bucket, "ip", upload_id, missing)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="ip")
    complete(s3, bucket, "ip", upload_id, parts)


def test_invalid_part_order(s3: Any, bucket: str) -> None:
    upload_id, parts = upload(s3, bucket, "po", [b"one", b"two"])
    expect_error(complete, "InvalidPartOrder", 400, s3, bucket, "po", upload_id, [parts[1], parts[0]])
    expect_error(complete, "InvalidPartOrder", 400, s3, bucket, "po", upload_id, [parts[0], parts[0]])
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="po")


def test_complete_malformed_xml(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mx")["UploadId"]
    expect_error(complete, "MalformedXML", 400, s3, bucket, "mx", upload_id, [])


def test_upload_part_copy_with_range(s3: Any, bucket: str) -> None:
    source_bucket = unique("src")
    s3.create_bucket(Bucket=source_bucket)
    source = data(PART + MiB + 100, seed=9)
    s3.put_object(Bucket=source_bucket, Key="src obj+", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    ranges = [(0, PART - 1), (PART, len(source) - 1)]
    parts = []
    for number, (start, end) in enumerate(ranges, 1):
        resp = s3.upload_part_copy(
            Bucket=bucket,
            Key="copied",
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": source_bucket, "Key": "src obj+"},
            CopySourceRange=f"bytes={start}-{end}",
        )
        etag = resp["CopyPartResult"]["ETag"]
        assert etag == f'"{hashlib.md5(source[start : end + 1]).hexdigest()}"'
        parts.append({"PartNumber": number, "ETag": etag})
    resp = complete(s3, bucket, "copied", upload_id, parts)
    assert resp["ETag"] == multipart_etag([source[:PART], source[PART:]])
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == source


@pytest.mark.parametrize("rng", ["bytes=5-", "bytes=-5", "bytes=9-3", "items=0-1", "bytes=0-1,3-4"])
def test_upload_part_copy_bad_range(s3: Any, bucket: str, rng: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    expect_error(
        s3.upload_part_copy,
        "InvalidArgument",
        400,
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=1,
        CopySource=f"{bucket}/src",
        CopySourceRange=rng,
    )
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id)


def test_upload_part_integrity(s3: Any, s3_once: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pi")["UploadId"]
    common = {"Bucket": bucket, "Key": "pi", "UploadId": upload_id, "PartNumber": 1, "Body": b"part body"}
    expect_error(s3_once.upload_part, "BadDigest", 400, ContentMD5=md5_b64(b"other"), **common)
    expect_error(s3_once.upload_part, "BadDigest", 400, ChecksumSHA256=checksum("SHA256", b"other"), **common)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="pi", UploadId=upload_id)
    resp = s3.upload_part(ChecksumSHA256=checksum("SHA256", b"part body"), **common)
    assert resp["ChecksumSHA256"] == checksum("SHA256", b"part body")


def test_upload_part_copy_source_condition(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    expect_error(
        s3.upload_part_copy,
        "PreconditionFailed",
        412,
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=1,
        CopySource=f"{bucket}/src",
        CopySourceIfMatch='"0123456789abcdef0123456789abcdef"',
    )
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id)


def _crc_digest(algorithm: str, body: bytes) -> bytes:
    return base64.b64decode(checksum(algorithm, body))


def test_composite_crc32(s3: Any, bucket: str, two_parts: list[bytes]) -> None:
    created = s3.create_multipart_upload(Bucket=bucket, Key="comp", ChecksumAlgorithm="CRC32")
    assert created["ChecksumAlgorithm"] == "CRC32"
    assert created["ChecksumType"] == "COMPOSITE"
    upload_id, parts = created["UploadId"], []
    for number, body in enumerate(two_parts, 1):
        resp = s3.upload_part(
            Bucket=bucket, Key="comp", UploadId=upload_id, PartNumber=number, Body=body, ChecksumAlgorithm="CRC32"
        )
        assert resp["ChecksumCRC32"] == checksum("CRC32", body)
        parts.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": resp["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=bucket, Key="comp", UploadId=upload_id)
    assert [p["ChecksumCRC32"] for p in listed["Parts"]] == [p["ChecksumCRC32"] for p in parts]
    resp = complete(s3, bucket, "comp", upload_id, parts)
    digests = b"".join(_crc_digest("CRC32", p) for p in two_parts)
    want = f"{checksum('CRC32', digests)}-2"
    assert resp["ChecksumCRC32"] == want
    assert resp["ChecksumType"] == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key="comp", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (want, "COMPOSITE")
    got = s3.get_object(Bucket=bucket, Key="comp", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(two_parts)


def test_composite_wrong_part_checksum(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="cw", ChecksumAlgorithm="CRC32")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="cw", UploadId=upload_id, PartNumber=1, Body=b"abc")["ETag"]
    wrong = [{"PartNumber": 1, "ETag": etag, "ChecksumCRC32": checksum("CRC32", b"xyz")}]
    expect_error(complete, "InvalidPart", 400, s3, bucket, "cw", upload_id, wrong)


@pytest.mark.parametrize("algorithm", ["CRC64NVME", "CRC32", "CRC32C"])
def test_full_object_checksum(s3: Any, s3_once: Any, bucket: str, two_parts: list[bytes], algorithm: str) -> None:
    field = f"Checksum{algorithm}"
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="full", ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT"
    )
    assert created["ChecksumType"] == "FULL_OBJECT"
    upload_id, parts = created["UploadId"], []
    for number, body in enumerate(two_parts, 1):
        resp = s3.upload_part(
            Bucket=bucket, Key="full", UploadId=upload_id, PartNumber=number, Body=body, ChecksumAlgorithm=algorithm
        )
        parts.append({"PartNumber": number, "ETag": resp["ETag"], field: resp[field]})
    whole = b"".join(two_parts)
    want = checksum(algorithm, whole)
    expect_error(
        complete,
        "BadDigest",
        400,
        s3_once,
        bucket,
        "full",
        upload_id,
        parts,
        ChecksumType="FULL_OBJECT",
        **{field: checksum(algorithm, b"not the object")},
    )
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="full")
    resp = complete(s3, bucket, "full", upload_id, parts, ChecksumType="FULL_OBJECT", **{field: want})
    assert (resp[field], resp["ChecksumType"]) == (want, "FULL_OBJECT")
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert (head[field], head["ChecksumType"]) == (want, "FULL_OBJECT")
    # botocore verifies a FULL_OBJECT checksum against the body it reads.
    assert s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")["Body"].read() == whole


def test_full_object_checksum_without_part_checksums(s3: Any, bucket: str) -> None:
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="np", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )
    body = b"part without a client checksum"
    etag = s3.upload_part(Bucket=bucket, Key="np", UploadId=created["UploadId"], PartNumber=1, Body=body)["ETag"]
    resp = complete(s3, bucket, "np", created["UploadId"], [{"PartNumber": 1, "ETag": etag}])
    assert resp["ChecksumCRC64NVME"] == checksum("CRC64NVME", body)


def test_mpu_object_size(s3: Any, bucket: str) -> None:
    upload_id, parts = upload(s3, bucket, "size", [b"12345"])
    expect_error(complete, "InvalidRequest", 400, s3, bucket, "size", upload_id, parts, MpuObjectSize=6)
    complete(s3, bucket, "size", upload_id, parts, MpuObjectSize=5)
    assert s3.head_object(Bucket=bucket, Key="size")["ContentLength"] == 5


@pytest.mark.parametrize(("algorithm", "kind"), [("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")])
def test_unsupported_checksum_type(s3: Any, bucket: str, algorithm: str, kind: str) -> None:
    expect_error(
        s3.create_multipart_upload,
        "InvalidRequest",
        400,
        Bucket=bucket,
        Key="bad",
        ChecksumAlgorithm=algorithm,
        ChecksumType=kind,
    )
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_conditional_complete(s3: Any, bucket: str) -> None:
    upload_id, parts = upload(s3, bucket, "cc", [b"first"])
    complete(s3, bucket, "cc", upload_id, parts, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="cc")["Body"].read() == b"first"
    upload_id, parts = upload(s3, bucket, "cc", [b"second"])
    expect_error(complete, "PreconditionFailed", 412, s3, bucket, "cc", upload_id, parts, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="cc")["Body"].read() == b"first"
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload_id]
    current = s3.head_object(Bucket=bucket, Key="cc")["ETag"]
    expect_error(
        complete,
        "PreconditionFailed",
        412,
        s3,
        bucket,
        "cc",
        upload_id,
        parts,
        IfMatch='"0123456789abcdef0123456789abcdef"',
    )
    complete(s3, bucket, "cc", upload_id, parts, IfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="cc")["Body"].read() == b"second"


def test_upload_file_and_download(s3: Any, bucket: str, tmp_path: Path) -> None:
    body = data(2 * PART + MiB, seed=12)
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(body)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=2)
    s3.upload_file(str(src), bucket, "transfer/big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="transfer/big.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == multipart_etag([body[:PART], body[PART : 2 * PART], body[2 * PART :]])
    s3.download_file(bucket, "transfer/big.bin", str(dst), Config=config)
    assert dst.read_bytes() == body


def test_upload_fileobj_default_config(s3: Any, bucket: str, tmp_path: Path) -> None:
    body = data(9 * MiB, seed=13)
    src = tmp_path / "default.bin"
    src.write_bytes(body)
    s3.upload_file(str(src), bucket, "default.bin")
    head = s3.head_object(Bucket=bucket, Key="default.bin", ChecksumMode="ENABLED")
    chunk = TransferConfig().multipart_chunksize
    parts = [body[:chunk], body[chunk:]]
    assert head["ETag"] == multipart_etag(parts)
    # s3transfer asks for CRC32 at CreateMultipartUpload: a COMPOSITE checksum of the two parts.
    assert head["ChecksumType"] == "COMPOSITE"
    assert head["ChecksumCRC32"] == checksum("CRC32", b"".join(_crc_digest("CRC32", p) for p in parts)) + "-2"
    assert s3.get_object(Bucket=bucket, Key="default.bin")["Body"].read() == body
