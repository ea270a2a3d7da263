"""Loss on disk: corrupt bytes inside fragment files, whole drives emptied, more loss than parity.

A read returns the bytes that were written or an error, never other bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ResponseStreamingError
from urllib3.exceptions import ProtocolError

from gateway.objects.layer import INLINE_MAX
from storage_node.drive import FragmentId
from storage_node.fragment_format import HEADER_SIZE, parse_header
from tests.server_process import ServerProcess

MiB = 1 << 20
# Up to INLINE_MAX an object lives in its manifest, not on the drives: those must survive any drive loss.
SIZES = {
    "empty": 0,
    "tiny": 100,
    "inline-max": INLINE_MAX,
    "just-on-drives": INLINE_MAX + 1,
    "one-segment": MiB,
    "seg-plus-one": MiB + 1,
    "several": 5 * MiB + 3,
}
ON_DRIVES = {name for name, size in SIZES.items() if size > INLINE_MAX} | {"multipart"}
CHUNK_CRC = 4


def _payload(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size] if size < 64 else os.urandom(size)


def _fill(s3: Any, bucket: str) -> dict[str, bytes]:
    s3.create_bucket(Bucket=bucket)
    objects = {name: _payload(name, size) for name, size in SIZES.items()}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    # a multipart object: parts of 5 MiB and 2 MiB+9
    parts = [os.urandom(5 * MiB), os.urandom(2 * MiB + 9)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="multipart")
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="multipart", UploadId=up["UploadId"], PartNumber=n, Body=data)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="multipart", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    objects["multipart"] = b"".join(parts)
    return objects


def _fragment_files(drive: Path) -> list[Path]:
    return sorted(p for p in (drive / "fragments").rglob("*") if p.is_file())


def _flip_chunk(path: Path, chunk: int) -> None:
    """Flip one byte in the payload of chunk `chunk` (counted from the end when negative)."""
    raw = bytearray(path.read_bytes())
    layout = parse_header(FragmentId.parse(path.name), bytes(raw[:HEADER_SIZE]))
    j = chunk % layout.chunks
    offset = layout.chunk_offset(j) + layout.payload_len(j) // 2
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def _read_all(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == data, f"{key}: {len(got)} bytes differ from the {len(data)} written"
    big = objects["multipart"]
    for start, end in [(0, 0), (MiB - 1, MiB + 1), (5 * MiB - 3, 5 * MiB + 3), (len(big) - 10, len(big) - 1)]:
        got = s3.get_object(Bucket=bucket, Key="multipart", Range=f"bytes={start}-{end}")["Body"].read()
        assert got == big[start : end + 1]


def _data_drives(server: ServerProcess) -> list[Path]:
    # The first drive also holds the index (.tessera-system); loss tests take fragments from the others.
    return server.drives[1:]


def test_corrupt_chunks_on_two_drives_read_back_identical(fresh_server: ServerProcess) -> None:
    s3 = fresh_server.client()
    objects = _fill(s3, "rot")
    a, b = _data_drives(fresh_server)[:2]
    corrupted = 0
    for path in _fragment_files(a):
        _flip_chunk(path, 0)
        corrupted += 1
    for path in _fragment_files(b):
        _flip_chunk(path, -1)
        corrupted += 1
    assert corrupted == 2 * (len(ON_DRIVES) + 1)  # 4+2 over 6: a fragment of each part on every drive
    _read_all(s3, "rot", objects)


def test_two_drives_emptied_read_back_identical_and_writes_go_on(fresh_server: ServerProcess) -> None:
    s3 = fresh_server.client()
    objects = _fill(s3, "loss")
    for drive in _data_drives(fresh_server)[-2:]:
        shutil.rmtree(drive / "fragments")
        (drive / "fragments").mkdir()
    _read_all(s3, "loss", objects)
    # One drive gone for good: a write still reaches the k+1 quorum and reads back. Moved away first,
    # at once: heal on read may still be writing the fragments the reads above found missing.
    drive = _data_drives(fresh_server)[-1]
    shutil.rmtree(drive.rename(drive.with_name(drive.name + "-gone")))
    data = os.urandom(3 * MiB + 5)
    s3.put_object(Bucket="loss", Key="after", Body=data)
    assert s3.get_object(Bucket="loss", Key="after")["Body"].read() == data


def test_more_loss_than_parity_is_an_error_never_other_bytes(fresh_server: ServerProcess) -> None:
    s3 = fresh_server.client()
    objects = _fill(s3, "toomuch")
    for drive in _data_drives(fresh_server)[:3]:
        for path in _fragment_files(drive):
            _flip_chunk(path, -1)  # the last segment of every fragment: loss starts mid-object
    for key, data in objects.items():
        if key not in ON_DRIVES:
            assert s3.get_object(Bucket="toomuch", Key=key)["Body"].read() == data  # kept in the manifest
            continue
        try:
            got = s3.get_object(Bucket="toomuch", Key=key)["Body"].read()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ServiceUnavailable"
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            continue
        except (ResponseStreamingError, ProtocolError):
            continue  # the body was cut short: the client sees an error
        pytest.fail(f"{key}: read {len(got)} bytes although 3 of 6 fragments of its last segment are corrupt")


def test_write_fails_cleanly_below_quorum(fresh_server: ServerProcess) -> None:
    s3 = fresh_server.client()
    s3.create_bucket(Bucket="quorum")
    s3.put_object(Bucket="quorum", Key="before", Body=b"x" * 1000)
    for drive in _data_drives(fresh_server)[-2:]:
        shutil.rmtree(drive)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="quorum", Key="below", Body=os.urandom(2 * MiB))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="quorum").get("Contents", [])]
    assert keys == ["before"]
    assert s3.get_object(Bucket="quorum", Key="before")["Body"].read() == b"x" * 1000
