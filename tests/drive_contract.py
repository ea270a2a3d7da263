"""The contract every Drive implementation passes (storage_node/drive.py).

Subclass DriveContract in a test module and provide:
  - a `drive` fixture yielding a fresh, empty drive (and closing it afterwards);
  - `async corrupt(drive, fid, chunk)`: damage the stored payload of chunk `chunk` in place;
  - `async truncate(drive, fid, chunk)`: cut the stored fragment exactly where chunk `chunk`
    starts, so that chunk and all later ones are missing (a crash-torn or damaged file).
Both helpers touch the stored files behind the drive's back, however the drive stores them.
The suite only talks to the drive through the seam, so a remote drive runs it unchanged.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage_node.drive import (
    CorruptFragment,
    Drive,
    FragmentId,
    FragmentInfo,
    FragmentNotFound,
    InvalidFragmentStream,
)


class Boom(Exception):
    """Raised by a put stream, to check it propagates unchanged."""


def new_fid(part: int = 0, index: int = 0) -> FragmentId:
    return FragmentId(uuid.uuid4().hex, part, index)


def make_chunks(count: int, chunk_size: int, last: int | None = None, seed: int = 0) -> list[bytes]:
    """`count` chunks of `chunk_size` random bytes, the last one `last` bytes long if given."""
    rng = random.Random(seed)
    sizes = [chunk_size] * count
    if last is not None:
        sizes[-1] = last
    return [rng.randbytes(n) for n in sizes]


async def stream(chunks: list[bytes], fail_after: int | None = None) -> AsyncIterator[bytes]:
    """Yield chunks, letting other tasks run in between; raise Boom after `fail_after` of them."""
    for i, chunk in enumerate(chunks):
        if i == fail_after:
            raise Boom("stream failed")
        await asyncio.sleep(0)
        yield chunk
    if fail_after is not None:
        raise Boom("stream failed")


async def collect(it: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in it]


async def collect_until_error(it: AsyncIterator[bytes]) -> tuple[list[bytes], BaseException | None]:
    got: list[bytes] = []
    try:
        async for chunk in it:
            got.append(chunk)
    except Exception as e:
        return got, e
    return got, None


async def listed(drive: Drive) -> dict[FragmentId, FragmentInfo]:
    infos = [info async for info in drive.list()]
    by_fid = {info.fid: info for info in infos}
    assert len(by_fid) == len(infos), f"list() yielded a fragment twice: {sorted(i.fid.name for i in infos)}"
    return by_fid


class DriveContract:
    """Tests of the Drive seam; see the module docstring for what a subclass provides."""

    async def corrupt(self, drive: Any, fid: FragmentId, chunk: int) -> None:
        raise NotImplementedError

    async def truncate(self, drive: Any, fid: FragmentId, chunk: int) -> None:
        raise NotImplementedError

    async def put(self, drive: Drive, fid: FragmentId, chunks: list[bytes]) -> FragmentInfo:
        return await drive.put(fid, stream(chunks))

    # -- round trips --------------------------------------------------------------------------------

    async def test_round_trip_multi_chunk(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(5, 4096, last=1000)
        await self.put(drive, fid, chunks)
        got = await collect(drive.get(fid))
        assert got == chunks
        assert all(type(c) is bytes for c in got)

    async def test_round_trip_single_short_chunk(self, drive: Drive) -> None:
        fid = new_fid()
        info = await self.put(drive, fid, [b"x"])
        assert await collect(drive.get(fid)) == [b"x"]
        assert (info.size, info.chunk_size, info.chunks) == (1, 1, 1)

    async def test_round_trip_full_size_last_chunk(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(3, 777)
        info = await self.put(drive, fid, chunks)
        assert (info.size, info.chunk_size, info.chunks) == (3 * 777, 777, 3)
        assert await collect(drive.get(fid)) == chunks

    async def test_round_trip_megabyte_chunks(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(4, 1 << 20, last=12345, seed=1)
        await self.put(drive, fid, chunks)
        assert await collect(drive.get(fid)) == chunks
        assert await collect(drive.get(fid, 2, 4)) == chunks[2:4]

    async def test_round_trip_many_tiny_chunks(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(3000, 16, last=3, seed=2)
        await self.put(drive, fid, chunks)
        assert await collect(drive.get(fid)) == chunks
        assert await collect(drive.get(fid, 1234, 2345)) == chunks[1234:2345]

    async def test_put_accepts_a_list_backed_async_iterable(self, drive: Drive) -> None:
        class Chunks:
            def __init__(self, items: list[bytes]) -> None:
                self.items = items

            def __aiter__(self) -> AsyncIterator[bytes]:
                return stream(self.items)

        fid = new_fid()
        chunks = make_chunks(2, 100, last=50)
        await drive.put(fid, Chunks(chunks))
        assert await collect(drive.get(fid)) == chunks

    # -- ranges ---------------------------------------------------------------------------------------

    async def test_get_middle_range(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(6, 512, last=100)
        await self.put(drive, fid, chunks)
        assert await collect(drive.get(fid, 2, 4)) == chunks[2:4]
        assert await collect(drive.get(fid, 0, 1)) == chunks[:1]
        assert await collect(drive.get(fid, 5, 6)) == chunks[5:]
        assert await collect(drive.get(fid, 3)) == chunks[3:]

    async def test_get_range_clipped_past_the_end(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(4, 512, last=7)
        await self.put(drive, fid, chunks)
        assert await collect(drive.get(fid, 2, 100)) == chunks[2:]
        assert await collect(drive.get(fid, 0, 10**9)) == chunks

    @pytest.mark.parametrize(("first", "end"), [(4, None), (4, 8), (100, 200), (2, 2), (3, 1), (0, 0)])
    async def test_get_empty_range(self, drive: Drive, first: int, end: int | None) -> None:
        fid = new_fid()
        await self.put(drive, fid, make_chunks(4, 64))
        assert await collect(drive.get(fid, first, end)) == []

    async def test_get_negative_chunk_rejected(self, drive: Drive) -> None:
        fid = new_fid()
        await self.put(drive, fid, make_chunks(2, 64))
        with pytest.raises(ValueError):
            await collect(drive.get(fid, -1))

    # -- stat, overwrite, delete, list ------------------------------------------------------------

    async def test_stat_fields(self, drive: Drive) -> None:
        fid = new_fid(part=3, index=5)
        before = time.time()
        info = await self.put(drive, fid, make_chunks(3, 1000, last=10))
        after = time.time()
        st = await drive.stat(fid)
        assert st == info
        assert st.fid == fid
        assert (st.size, st.chunk_size, st.chunks) == (2010, 1000, 3)
        # Filesystem timestamps may be coarser than time.time(): allow a little slack.
        assert before - 2 <= st.mtime <= after + 2

    async def test_overwrite_replaces(self, drive: Drive) -> None:
        fid = new_fid()
        await self.put(drive, fid, make_chunks(5, 300, last=3, seed=1))
        new = make_chunks(2, 1000, last=999, seed=2)
        info = await self.put(drive, fid, new)
        assert await collect(drive.get(fid)) == new
        assert await drive.stat(fid) == info
        assert (info.size, info.chunk_size, info.chunks) == (1999, 1000, 2)
        assert [i for i in (await listed(drive)).values() if i.fid == fid] == [info]

    async def test_delete(self, drive: Drive) -> None:
        fid, other = new_fid(), new_fid()
        await self.put(drive, fid, make_chunks(2, 10))
        await self.put(drive, other, make_chunks(2, 10))
        assert await drive.delete(fid) is True
        with pytest.raises(FragmentNotFound):
            await drive.stat(fid)
        with pytest.raises(FragmentNotFound):
            await collect(drive.get(fid))
        assert set(await listed(drive)) == {other}
        assert await drive.delete(fid) is False
        assert await drive.delete(fid) is False
        assert await collect(drive.get(other)) == make_chunks(2, 10)

    async def test_delete_never_stored(self, drive: Drive) -> None:
        assert await drive.delete(new_fid()) is False

    async def test_put_after_delete(self, drive: Drive) -> None:
        fid = new_fid()
        await self.put(drive, fid, [b"one"])
        await drive.delete(fid)
        await self.put(drive, fid, [b"two"])
        assert await collect(drive.get(fid)) == [b"two"]

    async def test_list_empty(self, drive: Drive) -> None:
        assert await listed(drive) == {}

    async def test_list(self, drive: Drive) -> None:
        version = uuid.uuid4().hex
        fids = [FragmentId(version, part, index) for part in (0, 1, 10000) for index in (0, 5)]
        fids += [new_fid(index=i) for i in range(10)]
        infos = {}
        for n, fid in enumerate(fids):
            infos[fid] = await self.put(drive, fid, make_chunks(n % 3 + 1, 100 + n, last=n + 1))
        assert await listed(drive) == infos
        for fid, info in infos.items():
            assert await drive.stat(fid) == info

    async def test_not_found(self, drive: Drive) -> None:
        fid = new_fid()
        await self.put(drive, new_fid(), [b"someone else"])
        with pytest.raises(FragmentNotFound):
            await drive.stat(fid)
        with pytest.raises(FragmentNotFound):
            await drive.verify(fid)
        it = drive.get(fid)
        with pytest.raises(FragmentNotFound):
            await it.__anext__()  # raised before anything is yielded
        with pytest.raises(FragmentNotFound):
            await collect(drive.get(fid, 5, 10))

    async def test_same_version_different_index_are_distinct(self, drive: Drive) -> None:
        version = uuid.uuid4().hex
        a, b = FragmentId(version, 1, 0), FragmentId(version, 1, 1)
        await self.put(drive, a, [b"a"])
        await self.put(drive, b, [b"b"])
        assert await collect(drive.get(a)) == [b"a"]
        assert await collect(drive.get(b)) == [b"b"]

    # -- failed and invalid puts ------------------------------------------------------------------

    @pytest.mark.parametrize("fail_after", [0, 1, 3])
    async def test_failed_put_leaves_nothing(self, drive: Drive, fail_after: int) -> None:
        fid = new_fid()
        with pytest.raises(Boom):
            await drive.put(fid, stream(make_chunks(3, 100), fail_after=fail_after))
        with pytest.raises(FragmentNotFound):
            await drive.stat(fid)
        with pytest.raises(FragmentNotFound):
            await collect(drive.get(fid))
        assert fid not in await listed(drive)

    async def test_failed_put_of_large_fragment_leaves_nothing(self, drive: Drive) -> None:
        # Several megabytes in, so some data has certainly reached the drive before the failure.
        fid = new_fid()
        with pytest.raises(Boom):
            await drive.put(fid, stream(make_chunks(8, 1 << 20), fail_after=7))
        with pytest.raises(FragmentNotFound):
            await drive.stat(fid)
        assert await listed(drive) == {}

    async def test_failed_put_keeps_previous_version(self, drive: Drive) -> None:
        fid = new_fid()
        old = make_chunks(3, 200, last=20, seed=1)
        info = await self.put(drive, fid, old)
        with pytest.raises(Boom):
            await drive.put(fid, stream(make_chunks(4, 300, seed=2), fail_after=2))
        assert await collect(drive.get(fid)) == old
        assert await drive.stat(fid) == info
        assert await listed(drive) == {fid: info}

    async def test_cancelled_put_leaves_nothing(self, drive: Drive) -> None:
        fid = new_fid()
        waiting = asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield b"a" * 1000
            yield b"b" * 1000
            waiting.set()
            await asyncio.Event().wait()  # the client goes silent
            yield b"never"

        task = asyncio.create_task(drive.put(fid, stalled()))
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(FragmentNotFound):
            await drive.stat(fid)
        assert await listed(drive) == {}

    @pytest.mark.parametrize(
        "sizes",
        [
            [],  # no chunk
            [0],  # an empty chunk
            [10, 0],
            [10, 10, 0, 10],
            [10, 5, 10],  # a short chunk before the last
            [10, 5, 5],
            [10, 11],  # a later chunk longer than the first
            [10, 10, 20],
        ],
        ids=str,
    )
    async def test_chunk_rule_violations_rejected(self, drive: Drive, sizes: list[int]) -> None:
        fid, kept = new_fid(), new_fid()
        old = make_chunks(2, 50)
        info = await self.put(drive, kept, old)
        await self.put(drive, fid, old)
        chunks = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
        with pytest.raises(InvalidFragmentStream):
            await drive.put(fid, stream(chunks))
        with pytest.raises(InvalidFragmentStream):
            await drive.put(new_fid(), stream(chunks))
        assert await collect(drive.get(fid)) == old  # the previous version is untouched
        assert (await listed(drive)).keys() == {fid, kept}
        assert await drive.stat(kept) == info

    # -- concurrency ------------------------------------------------------------------------------------

    async def test_concurrent_puts_of_different_fragments(self, drive: Drive) -> None:
        data = {new_fid(index=i % 6): make_chunks(i % 4 + 1, 1000 + i, last=i + 1, seed=i) for i in range(24)}
        infos = await asyncio.gather(*(self.put(drive, fid, chunks) for fid, chunks in data.items()))
        assert [i.fid for i in infos] == list(data)
        got = await asyncio.gather(*(collect(drive.get(fid)) for fid in data))
        assert got == list(data.values())
        assert (await listed(drive)).keys() == data.keys()

    async def test_concurrent_puts_of_one_fragment_leave_one_whole(self, drive: Drive) -> None:
        fid = new_fid()
        versions = [make_chunks(4, 2000 + n, last=10 + n, seed=n) for n in range(5)]
        await asyncio.gather(*(self.put(drive, fid, v) for v in versions))
        assert await collect(drive.get(fid)) in versions
        assert await drive.verify(fid) == []

    async def test_concurrent_gets(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(6, 3000, last=1)
        await self.put(drive, fid, chunks)
        got = await asyncio.gather(*(collect(drive.get(fid, i % 3)) for i in range(12)))
        assert got == [chunks[i % 3 :] for i in range(12)]

    async def test_abandoned_get_does_not_block_writes(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(5, 1000)
        await self.put(drive, fid, chunks)
        it = drive.get(fid)
        assert await it.__anext__() == chunks[0]
        await it.aclose()  # type: ignore[attr-defined]
        new = make_chunks(2, 10, seed=9)
        await self.put(drive, fid, new)
        assert await collect(drive.get(fid)) == new
        assert await drive.delete(fid) is True

    # -- damage ----------------------------------------------------------------------------------------

    async def test_verify_clean(self, drive: Drive) -> None:
        fid = new_fid()
        await self.put(drive, fid, make_chunks(7, 333, last=33))
        assert await drive.verify(fid) == []

    @pytest.mark.parametrize("bad", [0, 2, 4])
    async def test_corrupt_chunk(self, drive: Drive, bad: int) -> None:
        fid = new_fid()
        chunks = make_chunks(5, 4096, last=1000)
        await self.put(drive, fid, chunks)
        await self.corrupt(drive, fid, bad)

        got, error = await collect_until_error(drive.get(fid))
        assert isinstance(error, CorruptFragment)
        assert (error.fid, error.chunk) == (fid, bad)
        assert got == chunks[:bad]  # earlier chunks are delivered, the bad one is not

        assert await drive.verify(fid) == [bad]
        assert await collect(drive.get(fid, bad + 1)) == chunks[bad + 1 :]
        got, error = await collect_until_error(drive.get(fid, bad, bad + 1))
        assert got == [] and isinstance(error, CorruptFragment) and error.chunk == bad
        # stat and list read no chunk data: they still describe the fragment.
        assert (await drive.stat(fid)).chunks == 5

    async def test_corrupt_several_chunks(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(6, 1000, last=500)
        await self.put(drive, fid, chunks)
        await self.corrupt(drive, fid, 1)
        await self.corrupt(drive, fid, 4)
        assert await drive.verify(fid) == [1, 4]
        got, error = await collect_until_error(drive.get(fid, 2))
        assert got == chunks[2:4] and isinstance(error, CorruptFragment) and error.chunk == 4

    async def test_corrupt_chunk_in_many_chunk_fragment(self, drive: Drive) -> None:
        # Many chunks per read or verify batch: the bad one is still pinpointed.
        fid = new_fid()
        chunks = make_chunks(2000, 32, last=1)
        await self.put(drive, fid, chunks)
        await self.corrupt(drive, fid, 1500)
        assert await drive.verify(fid) == [1500]
        got, error = await collect_until_error(drive.get(fid, 1000))
        assert got == chunks[1000:1500]
        assert isinstance(error, CorruptFragment) and error.chunk == 1500

    async def test_overwrite_heals_corruption(self, drive: Drive) -> None:
        fid = new_fid()
        chunks = make_chunks(3, 100)
        await self.put(drive, fid, chunks)
        await self.corrupt(drive, fid, 1)
        await self.put(drive, fid, chunks)
        assert await drive.verify(fid) == []
        assert await collect(drive.get(fid)) == chunks

    @pytest.mark.parametrize("cut", [0, 3, 4])
    async def test_truncated_fragment(self, drive: Drive, cut: int) -> None:
        fid = new_fid()
        chunks = make_chunks(5, 2048, last=2048)  # cut at a chunk boundary: the hardest case
        await self.put(drive, fid, chunks)
        await self.truncate(drive, fid, cut)

        assert await drive.verify(fid) == list(range(cut, 5))
        got, error = await collect_until_error(drive.get(fid))
        assert got == chunks[:cut]
        assert isinstance(error, CorruptFragment) and (error.fid, error.chunk) == (fid, cut)
        assert await collect(drive.get(fid, 0, cut)) == chunks[:cut]
