"""gateway.s3.checksums against published check values, zlib/hashlib, and botocore's own implementations."""

from __future__ import annotations

import base64
import hashlib
import itertools
import zlib

import pytest
from botocore import httpchecksum
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.s3 import checksums
from gateway.s3.errors import S3Error

# The CRC catalogue's check values: the checksum of b"123456789".
CHECK_VALUES = {
    "CRC32": 0xCBF43926,
    "CRC32C": 0xE3069283,
    "CRC64NVME": 0xAE8B14860A799888,
}

BOTOCORE = {
    "CRC32": httpchecksum.Crc32Checksum,
    "CRC32C": httpchecksum.CrtCrc32cChecksum,
    "CRC64NVME": httpchecksum.CrtCrc64NvmeChecksum,
    "SHA1": httpchecksum.Sha1Checksum,
    "SHA256": httpchecksum.Sha256Checksum,
}


def reference_digest(algo: str, data: bytes) -> bytes:
    """Independent of gateway.s3.checksums: zlib / hashlib where they exist, else botocore."""
    if algo == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algo == "SHA1":
        return hashlib.sha1(data).digest()
    if algo == "SHA256":
        return hashlib.sha256(data).digest()
    ref = BOTOCORE[algo]()
    ref.update(data)
    return ref.digest()


@pytest.mark.parametrize("algo", sorted(CHECK_VALUES))
def test_crc_check_values(algo: str) -> None:
    size = checksums.DIGEST_SIZES[algo]
    assert checksums.compute(algo, b"123456789") == CHECK_VALUES[algo].to_bytes(size, "big")


@pytest.mark.parametrize("algo", checksums.ALGORITHMS)
def test_empty_input(algo: str) -> None:
    assert checksums.compute(algo, b"") == reference_digest(algo, b"")


@pytest.mark.parametrize("algo", checksums.ALGORITHMS)
def test_matches_botocore_incrementally(algo: str) -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    ours = checksums.new_checksum(algo)
    theirs = BOTOCORE[algo]()
    for start in range(0, len(data), 7919):  # uneven pieces: the running state must carry over
        ours.update(data[start : start + 7919])
        theirs.update(data[start : start + 7919])
    assert ours.digest() == theirs.digest()
    assert ours.b64() == theirs.b64digest()
    assert len(ours.digest()) == checksums.DIGEST_SIZES[algo]


@pytest.mark.parametrize("algo", checksums.ALGORITHMS)
def test_accepts_bytearray_and_memoryview(algo: str) -> None:
    data = b"hello, tessera" * 100
    a, b, c = (checksums.new_checksum(algo) for _ in range(3))
    a.update(data)
    b.update(bytearray(data))
    c.update(memoryview(data))
    assert a.digest() == b.digest() == c.digest() == reference_digest(algo, data)


def test_crc32_through_isal_and_zlib_alike() -> None:
    # Pieces below and above the size where ISA-L takes over, and views (zlib's), in one running value.
    assert checksums._ISAL_CRC32 is not None, "pyeclib's wheel no longer bundles ISA-L's crc32_gzip_refl"
    data = bytes(range(251)) * 4000
    cuts = [0, 1, 4095, 4096, 4097, 70000, 70001, 200000, len(data)]
    ours = checksums.new_checksum("CRC32")
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        ours.update(data[a:b] if i % 2 == 0 else memoryview(data)[a:b])
    assert ours.digest() == zlib.crc32(data).to_bytes(4, "big")
    for size in (0, 1, 4095, 4096, 1 << 20):
        assert checksums.crc32(data[:size], 0xDEADBEEF) == zlib.crc32(data[:size], 0xDEADBEEF)


def test_copy_is_independent() -> None:
    a = checksums.new_checksum("crc32c")
    a.update(b"abc")
    b = a.copy()
    b.update(b"def")
    assert a.digest() == reference_digest("CRC32C", b"abc")
    assert b.digest() == reference_digest("CRC32C", b"abcdef")
    s = checksums.new_checksum("sha256")
    s.update(b"abc")
    t = s.copy()
    t.update(b"def")
    assert s.digest() == hashlib.sha256(b"abc").digest()
    assert t.digest() == hashlib.sha256(b"abcdef").digest()


def test_header_names() -> None:
    assert checksums.header_name("crc32") == "x-amz-checksum-crc32"
    assert checksums.header_name("CRC64NVME") == "x-amz-checksum-crc64nvme"
    assert checksums.HEADER_NAMES["SHA256"] == "x-amz-checksum-sha256"
    assert checksums.algorithm_from_header("X-Amz-Checksum-CRC32C") == "CRC32C"
    assert checksums.algorithm_from_header("x-amz-checksum-type") is None
    assert checksums.algorithm_from_header("x-amz-checksum-algorithm") is None
    assert checksums.algorithm_from_header("content-md5") is None
    found = checksums.checksum_headers(["Host", "x-amz-checksum-sha1", "x-amz-checksum-mode"])
    assert found == {"SHA1": "x-amz-checksum-sha1"}


def test_unknown_algorithm() -> None:
    with pytest.raises(S3Error) as exc:
        checksums.new_checksum("MD5")
    assert exc.value.code == "InvalidRequest"
    assert exc.value.status == 400


@pytest.mark.parametrize("algo", checksums.ALGORITHMS)
def test_decode_b64_roundtrip(algo: str) -> None:
    digest = reference_digest(algo, b"data")
    assert checksums.decode_b64(algo, base64.b64encode(digest).decode()) == digest


@pytest.mark.parametrize(
    ("algo", "value"),
    [
        ("CRC32", "AAAAAAA="),  # 5 bytes
        ("CRC32", "AAA="),  # 2 bytes
        ("CRC32", "AAAA"),  # 3 bytes
        ("CRC32", "!!!!!!=="),  # not base64
        ("CRC32", ""),
        ("CRC64NVME", "AAAAAA=="),  # a CRC32-sized value
        ("SHA256", base64.b64encode(b"\0" * 20).decode()),  # a SHA1-sized value
        ("SHA1", base64.b64encode(b"\0" * 20).decode()[:-1] + "*"),
    ],
)
def test_decode_b64_rejects_malformed(algo: str, value: str) -> None:
    with pytest.raises(S3Error) as exc:
        checksums.decode_b64(algo, value)
    assert exc.value.code == "InvalidRequest"
    assert exc.value.message == f"Value for x-amz-checksum-{algo.lower()} header is invalid."
    with pytest.raises(S3Error) as exc:
        checksums.decode_b64(algo, value, trailer=True)
    assert "trailing header" in exc.value.message


PARTS = [b"first part " * 1000, b"second", b"", b"\xff" * 5000]


@pytest.mark.parametrize("algo", checksums.COMPOSITE_ALGORITHMS)
def test_composite(algo: str) -> None:
    digests = [reference_digest(algo, part) for part in PARTS]
    expected = base64.b64encode(reference_digest(algo, b"".join(digests))).decode()
    assert checksums.composite(algo, digests) == f"{expected}-{len(PARTS)}"


def test_composite_known_value() -> None:
    # Two parts, CRC32: the checksum of the 8 bytes of the two part CRCs, with "-2".
    d1, d2 = zlib.crc32(b"a").to_bytes(4, "big"), zlib.crc32(b"b").to_bytes(4, "big")
    expected = base64.b64encode(zlib.crc32(d1 + d2).to_bytes(4, "big")).decode() + "-2"
    assert checksums.composite("CRC32", [d1, d2]) == expected


def test_composite_rejects_wrong_digest_size() -> None:
    with pytest.raises(ValueError):
        checksums.composite("CRC32", [b"\0" * 8])


@pytest.mark.parametrize("algo", checksums.CRC_ALGORITHMS)
def test_full_object(algo: str) -> None:
    parts = [(reference_digest(algo, part), len(part)) for part in PARTS]
    expected = base64.b64encode(reference_digest(algo, b"".join(PARTS))).decode()
    assert checksums.combine_full_object(algo, parts) == expected


@pytest.mark.parametrize("algo", checksums.CRC_ALGORITHMS)
def test_full_object_edge_cases(algo: str) -> None:
    empty = base64.b64encode(reference_digest(algo, b"")).decode()
    assert checksums.combine_full_object(algo, []) == empty
    single = [(reference_digest(algo, b"only"), 4)]
    assert checksums.combine_full_object(algo, single) == base64.b64encode(single[0][0]).decode()


@pytest.mark.parametrize("algo", ["SHA1", "SHA256"])
def test_full_object_refuses_sha(algo: str) -> None:
    with pytest.raises(S3Error) as exc:
        checksums.combine_full_object(algo, [(reference_digest(algo, b"x"), 1)])
    assert exc.value.code == "InvalidRequest"


@settings(max_examples=60, deadline=None)
@given(
    algo=st.sampled_from(checksums.CRC_ALGORITHMS),
    parts=st.lists(st.binary(max_size=300), max_size=6),
)
def test_full_object_property(algo: str, parts: list[bytes]) -> None:
    combined = checksums.combine_full_object(algo, [(reference_digest(algo, p), len(p)) for p in parts])
    assert combined == base64.b64encode(reference_digest(algo, b"".join(parts))).decode()
