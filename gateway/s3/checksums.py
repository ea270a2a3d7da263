"""The checksums S3 clients send (x-amz-checksum-*), and how S3 derives them for multipart uploads.

Values travel as base64 of the big-endian digest: 4 bytes for CRC32/CRC32C, 8 for CRC64NVME, 20 for SHA1,
32 for SHA256. A completed multipart upload gets either a composite checksum (the checksum of the
concatenated part digests, rendered "<base64>-<part count>") or, for the CRC types only, a full-object
checksum (the part CRCs combined with their lengths, as if computed over the whole object).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import zlib
from collections.abc import Callable, Iterable

from awscrt import checksums as _crt

from cluster import isal
from gateway.s3.errors import S3Error

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")
# S3 offers COMPOSITE multipart checksums for these; CRC64NVME is FULL_OBJECT only.
COMPOSITE_ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256")
FULL_OBJECT_ALGORITHMS = CRC_ALGORITHMS

DIGEST_SIZES: dict[str, int] = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}
HEADER_PREFIX = "x-amz-checksum-"

Buffer = bytes | bytearray | memoryview

# CRC32 (zlib's polynomial): boto3 and aws-cli send it with every PUT and part. awscrt and zlib compute it
# in software (about 3 and 4 GB/s here); ISA-L's crc32_gzip_refl folds with carry-less multiplies (about
# 21 GB/s), without the GIL. Small pieces and buffers that are not bytes (whose address ctypes cannot take
# without a copy) go to zlib, which gives the same values.
_ISAL_CRC32 = isal.library("crc32_gzip_refl")
if _ISAL_CRC32 is not None:
    _ISAL_CRC32.crc32_gzip_refl.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint64]
    _ISAL_CRC32.crc32_gzip_refl.restype = ctypes.c_uint32
_ISAL_CRC32_FROM = 4096  # bytes; below this a ctypes call costs more than it saves


def crc32(data: Buffer, crc: int = 0) -> int:
    """zlib.crc32(data, crc), faster for large bytes."""
    if _ISAL_CRC32 is not None and type(data) is bytes and len(data) >= _ISAL_CRC32_FROM:
        return int(_ISAL_CRC32.crc32_gzip_refl(crc, data, len(data)))
    return zlib.crc32(data, crc)


_CRC_FUNCS: dict[str, Callable[[Buffer, int], int]] = {
    "CRC32": crc32,
    "CRC32C": _crt.crc32c,
    "CRC64NVME": _crt.crc64nvme,
}
_CRC_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    "CRC32": _crt.combine_crc32,
    "CRC32C": _crt.combine_crc32c,
    "CRC64NVME": _crt.combine_crc64nvme,
}
_HASH_NAMES = {"SHA1": "sha1", "SHA256": "sha256"}
# base64 text length of each digest (with padding): a quick, exact shape check before decoding.
_B64_LENGTHS = {algo: 4 * ((size + 2) // 3) for algo, size in DIGEST_SIZES.items()}


class Checksum:
    """A running checksum: update() any number of times, then digest() / b64()."""

    __slots__ = ("_crc", "_crc_func", "_hash", "algorithm")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = None
        self._crc = 0
        crc_func = _CRC_FUNCS.get(algorithm)
        self._crc_func = crc_func
        if crc_func is None:
            self._hash = hashlib.new(_HASH_NAMES[algorithm])

    def update(self, data: Buffer) -> None:
        if self._crc_func is not None:
            self._crc = self._crc_func(data, self._crc)
        else:
            self._hash.update(data)  # type: ignore[union-attr]

    def digest(self) -> bytes:
        if self._crc_func is not None:
            return self._crc.to_bytes(DIGEST_SIZES[self.algorithm], "big")
        return self._hash.digest()  # type: ignore[union-attr]

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")

    def copy(self) -> Checksum:
        other = Checksum.__new__(Checksum)
        other.algorithm = self.algorithm
        other._crc_func = self._crc_func
        other._crc = self._crc
        other._hash = self._hash.copy() if self._hash is not None else None
        return other


def normalize_algorithm(name: str) -> str:
    """'crc32c' / 'CRC32C' -> 'CRC32C'; anything else is the error S3 gives for an unknown algorithm."""
    algo = name.strip().upper()
    if algo not in DIGEST_SIZES:
        raise S3Error(
            "InvalidRequest",
            "Checksum algorithm provided is unsupported. Please try again with any of the valid types: "
            "[CRC32, CRC32C, CRC64NVME, SHA1, SHA256]",
        )
    return algo


def new_checksum(algorithm: str) -> Checksum:
    return Checksum(normalize_algorithm(algorithm))


def compute(algorithm: str, data: Buffer) -> bytes:
    """One-shot raw digest of `data`."""
    checksum = new_checksum(algorithm)
    checksum.update(data)
    return checksum.digest()


def header_name(algorithm: str) -> str:
    """'CRC32' -> 'x-amz-checksum-crc32'."""
    return HEADER_PREFIX + normalize_algorithm(algorithm).lower()


def algorithm_from_header(name: str) -> str | None:
    """'x-amz-checksum-crc32' (any case) -> 'CRC32'; None for names that are not checksum headers.

    x-amz-checksum-type and x-amz-checksum-algorithm share the prefix but are not values: they give None.
    """
    lname = name.strip().lower()
    if not lname.startswith(HEADER_PREFIX):
        return None
    algo = lname[len(HEADER_PREFIX) :].upper()
    return algo if algo in DIGEST_SIZES else None


HEADER_NAMES: dict[str, str] = {algo: HEADER_PREFIX + algo.lower() for algo in ALGORITHMS}


def checksum_headers(headers: Iterable[str]) -> dict[str, str]:
    """The x-amz-checksum-<algo> header names among `headers`, keyed by algorithm."""
    found: dict[str, str] = {}
    for name in headers:
        algo = algorithm_from_header(name)
        if algo is not None:
            found[algo] = name
    return found


def decode_b64(algorithm: str, value: str, *, trailer: bool = False) -> bytes:
    """The raw digest a client sent as base64, validated as S3 does (InvalidRequest when malformed)."""
    algo = normalize_algorithm(algorithm)
    value = value.strip()
    if len(value) == _B64_LENGTHS[algo]:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == DIGEST_SIZES[algo]:
            return raw
    kind = "trailing header" if trailer else "header"
    raise S3Error("InvalidRequest", f"Value for {HEADER_PREFIX}{algo.lower()} {kind} is invalid.")


def composite(algorithm: str, part_digests: list[bytes]) -> str:
    """COMPOSITE checksum of a completed multipart upload: checksum of the concatenated raw part
    digests, as base64 followed by "-<number of parts>"."""
    algo = normalize_algorithm(algorithm)
    size = DIGEST_SIZES[algo]
    checksum = Checksum(algo)
    for digest in part_digests:
        if len(digest) != size:
            raise ValueError(f"{algo} part digest must be {size} bytes, got {len(digest)}")
        checksum.update(digest)
    return f"{checksum.b64()}-{len(part_digests)}"


def combine_full_object(algorithm: str, parts: list[tuple[bytes, int]]) -> str:
    """FULL_OBJECT checksum of a multipart upload: the CRC of the whole object, from each part's
    (raw CRC digest, part length in bytes), in part order. Base64, no suffix."""
    algo = normalize_algorithm(algorithm)
    combine = _CRC_COMBINE.get(algo)
    if combine is None:
        raise S3Error(
            "InvalidRequest",
            f"The FULL_OBJECT checksum type cannot be used with the {algo.lower()} checksum algorithm.",
        )
    size = DIGEST_SIZES[algo]
    crc = 0
    for digest, length in parts:
        if len(digest) != size:
            raise ValueError(f"{algo} part digest must be {size} bytes, got {len(digest)}")
        if length < 0:
            raise ValueError("part length must be >= 0")
        # combine(crc(A), crc(B), len(B)) == crc(A || B); crc of nothing is 0, so start from 0.
        crc = combine(crc, int.from_bytes(digest, "big"), length)
    return base64.b64encode(crc.to_bytes(size, "big")).decode("ascii")
