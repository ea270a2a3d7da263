"""Small objects live in their manifest (up to INLINE_MAX bytes), larger ones on the drives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.objects.layer import INLINE_MAX
from metadata.records import ObjectManifest, PartRecord, decode, encode
from tests.server_process import ServerProcess

MiB = 1 << 20


def fragment_files(server: ServerProcess) -> int:
    return sum(1 for d in server.drives for p in (d / "fragments").rglob("*") if p.is_file())


def test_inline_boundary_and_ranges(server: ServerProcess, s3: Any) -> None:
    s3.create_bucket(Bucket="inline")
    before = fragment_files(server)
    small = {n: os.urandom(n) for n in (0, 1, 4096, INLINE_MAX)}
    for n, data in small.items():
        s3.put_object(Bucket="inline", Key=f"k{n}", Body=data)
    assert fragment_files(server) == before  # none of these touched a drive
    big = os.urandom(INLINE_MAX + 1)
    s3.put_object(Bucket="inline", Key="big", Body=big)
    assert fragment_files(server) == before + 6
    for n, data in small.items():
        assert s3.get_object(Bucket="inline", Key=f"k{n}")["Body"].read() == data
    got = s3.get_object(Bucket="inline", Key=f"k{INLINE_MAX}", Range="bytes=1000-70000")["Body"].read()
    assert got == small[INLINE_MAX][1000:70001]
    assert s3.get_object(Bucket="inline", Key="big")["Body"].read() == big
    s3.copy_object(Bucket="inline", Key="copy", CopySource={"Bucket": "inline", "Key": "k4096"})
    assert s3.get_object(Bucket="inline", Key="copy")["Body"].read() == small[4096]


def test_multipart_with_an_inline_last_part(server: ServerProcess, s3: Any) -> None:
    s3.create_bucket(Bucket="inline-mp")
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket="inline-mp", Key="mp")
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket="inline-mp", Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=data)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket="inline-mp", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    assert s3.get_object(Bucket="inline-mp", Key="mp")["Body"].read() == whole
    tail = s3.get_object(Bucket="inline-mp", Key="mp", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 20}")
    assert tail["Body"].read() == whole[5 * MiB - 10 : 5 * MiB + 21]


def test_listing_view_leaves_inline_bytes_unread(tmp_path: Path) -> None:
    inline = PartRecord(0, "a" * 32, 3, "e", [], 4, 2, MiB, inline=b"abc")
    on_drives = PartRecord(1, "b" * 32, 9, "f", ["d1"] * 6, 4, 2, MiB)
    man = ObjectManifest("b", "k", "c" * 32, 12, "x-2", 1.0, "o", [on_drives, inline])
    raw = encode(man)
    assert decode(ObjectManifest, raw).parts[1].inline == b"abc"
    listed = decode(ObjectManifest, raw, with_inline=False)
    assert listed.parts[1].inline is None and listed.size == 12 and listed.parts[0].placement == ["d1"] * 6
