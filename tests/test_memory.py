"""Memory is bounded per request: a 256 MiB PUT and GET raise the server's peak RSS by < 128 MiB."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.server_process import ServerProcess

MiB = 1 << 20
SIZE = 256 * MiB
LIMIT = 128 * MiB


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


class _Pattern:
    """A 256 MiB file-like body made on the fly, so the test itself holds little."""

    def __init__(self, size: int) -> None:
        self.size, self.pos = size, 0
        self.block = hashlib.sha256(b"tessera").digest() * (MiB // 32)
        self.md5 = hashlib.md5()

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        off = self.pos % len(self.block)
        out = (self.block[off:] + self.block)[:n] if n <= len(self.block) else self._long(n)
        self.pos += len(out)
        self.md5.update(out)
        return out

    def _long(self, n: int) -> bytes:
        reps = n // len(self.block) + 2
        off = self.pos % len(self.block)
        return (self.block * reps)[off : off + n]

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        self.md5 = hashlib.md5()
        return self.pos

    def tell(self) -> int:
        return self.pos


def test_256mib_put_and_get_stay_within_128mib_of_rss(fresh_server: ServerProcess) -> None:
    s3 = fresh_server.client()
    s3.create_bucket(Bucket="mem")
    s3.put_object(Bucket="mem", Key="warm", Body=b"w" * (2 * MiB))  # load code paths before the baseline
    s3.get_object(Bucket="mem", Key="warm")["Body"].read()
    before = _peak_rss(fresh_server.pid)

    body = _Pattern(SIZE)
    s3.put_object(Bucket="mem", Key="big", Body=body, ContentLength=SIZE)
    after_put = _peak_rss(fresh_server.pid)

    got = hashlib.md5()
    n = 0
    for chunk in s3.get_object(Bucket="mem", Key="big")["Body"].iter_chunks(MiB):
        got.update(chunk)
        n += len(chunk)
    after_get = _peak_rss(fresh_server.pid)

    assert n == SIZE and got.hexdigest() == body.md5.hexdigest()
    assert after_put - before < LIMIT, f"PUT raised peak RSS by {(after_put - before) / MiB:.0f} MiB"
    assert after_get - before < LIMIT, f"GET raised peak RSS by {(after_get - before) / MiB:.0f} MiB"
