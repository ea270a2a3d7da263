"""Issue 21's PUT path changes: fragments written with O_DIRECT through aligned staging buffers, and a
signed payload's SHA-256 checked on a thread beside the event loop (large bodies)."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import pytest

from storage_node.aligned_writer import AlignedWriter, open_for_write
from tests.s3_helpers import MiB, get_body, signed_request
from tests.server_process import ServerProcess


@pytest.mark.parametrize("direct", [True, False])
def test_aligned_writer_writes_exactly_the_pieces(tmp_path: Path, direct: bool) -> None:
    rng = random.Random(21)
    for trial in range(40):
        path = tmp_path / f"f{trial}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd, is_direct = open_for_write(path, flags) if direct else (os.open(path, flags, 0o644), False)
        writer = AlignedWriter(fd, is_direct)
        want = bytearray(22)
        writer.append([bytes(22)])
        for _ in range(rng.randint(0, 5)):
            # bytes, bytearrays (rs_isal's fragments) and read-only views, large and small
            kinds = [bytes, bytearray, lambda b: memoryview(b)[1:]]
            pieces = [rng.choice(kinds)(rng.randbytes(rng.randint(2, 300_000))) for _ in range(rng.randint(1, 4))]
            writer.append(pieces)
            want += b"".join(pieces)
        assert writer.offset == len(want)
        head = rng.randbytes(22)
        writer.patch_head(head)
        want[:22] = head
        writer.finish()
        os.fsync(fd)
        os.close(fd)
        assert path.read_bytes() == bytes(want)


def test_large_signed_payload_is_verified(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = os.urandom(3 * MiB + 12345)  # several hashing batches, off the event loop
    s3.put_object(Bucket=bucket, Key="big", Body=b"previous")
    wrong = hashlib.sha256(body[:-1] + b"x").hexdigest()
    resp = signed_request(server, "PUT", f"/{bucket}/big", body, payload_hash=wrong)
    assert resp.status == 400
    assert resp.error()["Code"] == "XAmzContentSHA256Mismatch"
    assert get_body(s3, bucket, "big") == b"previous"
    resp = signed_request(server, "PUT", f"/{bucket}/big", body, payload_hash=hashlib.sha256(body).hexdigest())
    assert resp.status == 200
    assert get_body(s3, bucket, "big") == body
