"""LocalDrive: the Drive seam over a directory (its layout and identity: storage_node/drive_dir.py).

Blocking file I/O (storage_node/fragment_file.py) runs on a small thread pool owned by the drive,
so a hung disk ties up its own threads and not the event loop or the other drives.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from storage_node.drive import (
    OFFLINE,
    CorruptFragment,
    DriveError,
    DriveHealth,
    DriveUnavailable,
    FragmentId,
    FragmentInfo,
    FragmentNotFound,
    InvalidFragmentStream,
)
from storage_node.drive_adopt import Verdict, check_drive, was_mounted
from storage_node.drive_dir import FRAGMENTS, TMP, fsync_dir, prepare_drive, read_identity, shard_name
from storage_node.fragment_file import OpenFragment, TempFile
from storage_node.fragment_format import CRC_SIZE, MAX_CHUNK_SIZE, Layout

T = TypeVar("T")

# One thread hop moves about this much data: big enough to amortise the hop over tiny chunks,
# small enough that memory stays within a few chunks and the first bytes of a get come soon.
WRITE_BATCH_BYTES = 1 << 20
READ_BATCH_BYTES = 1 << 20
VERIFY_BATCH_BYTES = 4 << 20
LIST_BATCH_FILES = 256
CHECK_TIMEOUT = 10.0  # seconds a drive check may take before the drive counts as offline (a hung disk)


class LocalDrive:
    """A Drive over a local directory. Create with `await LocalDrive.open(root)`."""

    def __init__(
        self,
        root: Path,
        drive_id: str,
        executor: ThreadPoolExecutor,
        identity: dict[str, Any] | None = None,
        mounted: bool = False,
    ) -> None:
        self.root = root
        self.drive_id = drive_id
        self._fragments = root / FRAGMENTS
        self._tmp = root / TMP
        self._executor = executor
        self._closed = False
        # What adoption writes back into an empty directory in this drive's place (drive.json as opened),
        # and whether the directory was a mount point then.
        self._identity = identity if identity is not None else {"id": drive_id}
        self._mounted = mounted
        self.health = DriveHealth()
        self.on_trouble: Callable[[], None] | None = None  # an I/O error or a vanished layout: check me soon

    @classmethod
    async def open(cls, root: Path | str, *, io_threads: int = 8, keep_tmp: bool = False) -> LocalDrive:
        """Create the layout if needed, check the directory is writable, clear stale temp files.

        keep_tmp: another process shares the drive and may be writing (the drive was prepared,
        and its temp files cleared, before that process started).
        Raises DriveUnavailable, with a one-line message, if the directory cannot be used.
        """
        root = Path(root)
        executor = ThreadPoolExecutor(io_threads, thread_name_prefix=f"drive-{root.name}")
        try:
            drive_id, identity, mounted = await asyncio.get_running_loop().run_in_executor(
                executor, _prepare, root, not keep_tmp
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(root, drive_id, executor, identity, mounted)

    async def close(self) -> None:
        """Stop accepting work and wait for in-flight I/O (and its file closes) to finish."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._executor.shutdown, True)

    def __repr__(self) -> str:
        return f"LocalDrive({str(self.root)!r}, id={self.drive_id})"

    def fragment_path(self, fid: FragmentId) -> Path:
        return self._fragments / shard_name(fid) / fid.name

    def adopted_at_start(self, when: float) -> None:
        """This drive was adopted into a lost member's place as the server started (drive_format.assemble), before
        it was opened: it counts as adopted then, as one the watch adopts does (status, and a scan to refill it)."""
        self.health = DriveHealth(self.health.state, self.health.detail, when)

    async def check(self, adopt: bool) -> Verdict:
        """Look at the drive now and update `health`; an empty directory in its place is adopted (when
        `adopt`). A check that takes longer than CHECK_TIMEOUT (a hung disk) finds it offline."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                verdict = await self._run(check_drive, self.root, self._identity, self._mounted, adopt)
        except TimeoutError:
            verdict = Verdict(OFFLINE, f"{self.root}: no answer within {CHECK_TIMEOUT:.0f} s")
        except DriveUnavailable as exc:  # closed, or its pool refused the work
            verdict = Verdict(OFFLINE, str(exc))
        adopted = time.time() if verdict.adopted else self.health.adopted
        self.health = DriveHealth(verdict.state, verdict.detail if verdict.state == OFFLINE else "", adopted)
        return verdict

    # -- the Drive seam -------------------------------------------------------------------------

    async def put(self, fid: FragmentId, chunks: AsyncIterable[bytes]) -> FragmentInfo:
        tmp = self._tmp / f"{fid.name}.{uuid.uuid4().hex}.tmp"
        writer: TempFile = await self._run_owned(TempFile.abort, TempFile, tmp)
        inflight: asyncio.Future[None] | None = None
        try:
            chunk_size = size = 0
            last_len = 0
            batch: list[bytes] = []
            batch_bytes = 0
            async for chunk in chunks:
                n = len(chunk)
                if n == 0:
                    raise InvalidFragmentStream(f"{fid.name}: empty chunk")
                if chunk_size == 0:
                    if n > MAX_CHUNK_SIZE:
                        raise InvalidFragmentStream(f"{fid.name}: chunk of {n} bytes is too large")
                    chunk_size = n
                elif last_len != chunk_size:
                    raise InvalidFragmentStream(f"{fid.name}: {last_len}-byte chunk before the last, not {chunk_size}")
                elif n > chunk_size:
                    raise InvalidFragmentStream(f"{fid.name}: a {n}-byte chunk after {chunk_size}-byte ones")
                last_len = n
                size += n
                batch.append(chunk)
                batch_bytes += n
                if batch_bytes >= WRITE_BATCH_BYTES:
                    # One write in flight while the next batch arrives: memory is two batches.
                    if inflight is not None:
                        await self._wait(inflight)
                    inflight = self._submit(writer.write, batch)
                    batch, batch_bytes = [], 0
            if chunk_size == 0:
                raise InvalidFragmentStream(f"{fid.name}: no chunks")
            if inflight is not None:
                await self._wait(inflight)
                inflight = None
            layout = Layout(chunk_size, size)
            mtime = await self._run(writer.commit, batch, layout, self.fragment_path(fid))
        except BaseException:
            if inflight is not None:
                inflight.cancel()  # its outcome no longer matters; abort() waits if it is running
            # abort must run even if we are cancelled again meanwhile: shielded, not awaited directly.
            try:
                await asyncio.shield(asyncio.wrap_future(self._executor.submit(writer.abort)))
            except RuntimeError:  # pool shut down: nothing of ours is running on it any more
                writer.abort()
            except OSError:
                pass  # the temp file is cleared on the next open; the original error matters more
            raise
        return FragmentInfo(fid, layout.size, layout.chunk_size, layout.chunks, mtime)

    async def get(self, fid: FragmentId, first_chunk: int = 0, end_chunk: int | None = None) -> AsyncIterator[bytes]:
        if first_chunk < 0 or (end_chunk is not None and end_chunk < 0):
            raise ValueError(f"invalid chunk range [{first_chunk}, {end_chunk})")
        try:
            frag: OpenFragment = await self._run_owned(OpenFragment.close, self._open_fragment, fid)
        except CorruptFragment as e:
            # Without a header no chunk can be located: the first one asked for is the one lost.
            raise CorruptFragment(fid, first_chunk, e.args[0].partition(": ")[2]) from e
        ahead: asyncio.Future[tuple[list[bytes], CorruptFragment | None]] | None = None
        try:
            layout = frag.layout
            end = layout.chunks if end_chunk is None else min(end_chunk, layout.chunks)
            step = max(1, READ_BATCH_BYTES // (layout.chunk_size + CRC_SIZE))
            j = first_chunk
            if j < end:
                ahead = self._submit(frag.read, j, min(step, end - j))
            while ahead is not None:
                payloads, error = await self._wait(ahead)
                j += min(step, end - j)
                # The next batch is read while this one is consumed: a reader sending to a client
                # would otherwise wait for the disk at every batch.
                ahead = self._submit(frag.read, j, min(step, end - j)) if j < end and error is None else None
                for payload in payloads:
                    yield payload
                if error is not None:
                    raise error
        finally:
            if ahead is not None:
                ahead.cancel()  # a consumer that stopped early does not want it; close waits for it
            self._close_later(frag)

    async def stat(self, fid: FragmentId) -> FragmentInfo:
        return await self._run(self._stat, fid)

    async def delete(self, fid: FragmentId) -> bool:
        return await self._run(self._delete, fid)

    async def list(self) -> AsyncIterator[FragmentInfo]:
        shards: list[str] = await self._run(self._list_shards)
        for shard in shards:
            names: list[str] = await self._run(self._list_shard, shard)
            for i in range(0, len(names), LIST_BATCH_FILES):
                infos = await self._run(self._describe, shard, names[i : i + LIST_BATCH_FILES])
                for info in infos:
                    yield info

    async def verify(self, fid: FragmentId) -> list[int]:
        try:
            frag: OpenFragment = await self._run_owned(OpenFragment.close, self._open_fragment, fid)
        except CorruptFragment:
            return [0]  # unreadable header: nothing can be located, report the first chunk
        try:
            layout = frag.layout
            step = max(1, VERIFY_BATCH_BYTES // (layout.chunk_size + CRC_SIZE))
            bad: list[int] = []
            for j in range(0, layout.chunks, step):
                bad += await self._run(frag.verify, j, min(step, layout.chunks - j))
            return bad
        finally:
            self._close_later(frag)

    # -- plumbing ---------------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise DriveUnavailable(f"drive {self.root} is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _wait(self, fut: asyncio.Future[T]) -> T:
        try:
            return await fut
        except OSError as e:
            self._trouble()
            raise DriveUnavailable(f"drive {self.root}: {e.strerror or e}") from e

    def _trouble(self) -> None:
        if self.on_trouble is not None:
            self.on_trouble()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._wait(self._submit(fn, *args))

    async def _run_owned(self, release: Callable[[T], object], fn: Callable[..., T], *args: Any) -> T:
        """Like _run for a call that returns an open resource: if we are cancelled while it runs,
        `release` disposes of the result once the call finishes, so no descriptor or file leaks."""
        if self._closed:
            raise DriveUnavailable(f"drive {self.root} is closed")
        cf = self._executor.submit(fn, *args)
        try:
            return await self._wait(asyncio.wrap_future(cf))
        except asyncio.CancelledError:
            cf.add_done_callback(lambda f: f.cancelled() or f.exception() or release(f.result()))
            raise

    def _close_later(self, frag: OpenFragment) -> None:
        """Close on the pool, after any read still running there; never awaits (used in finally)."""
        try:
            self._executor.submit(frag.close)
        except RuntimeError:  # pool shut down: no read can be running any more
            frag.close()

    def _missing(self, fid: FragmentId) -> DriveError:
        # A fragments directory that is gone means an unmounted or wiped drive, not a missing fragment.
        if self._fragments.is_dir():
            return FragmentNotFound(fid.name)
        self._trouble()  # runs on the pool: the watch only notes it (its wake is thread-safe)
        return DriveUnavailable(f"drive {self.root}: fragments directory is missing")

    # The methods below run on the pool.

    def _open_fragment(self, fid: FragmentId) -> OpenFragment:
        try:
            fd = os.open(self.fragment_path(fid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._missing(fid) from None
        try:
            return OpenFragment(fid, fd)
        except BaseException:
            os.close(fd)
            raise

    def _stat(self, fid: FragmentId) -> FragmentInfo:
        frag = self._open_fragment(fid)
        frag.close()
        return frag.info

    def _delete(self, fid: FragmentId) -> bool:
        path = self.fragment_path(fid)
        try:
            os.unlink(path)
        except FileNotFoundError:
            error = self._missing(fid)
            if isinstance(error, FragmentNotFound):
                return False
            raise error from None
        fsync_dir(path.parent)
        return True

    def _list_shards(self) -> list[str]:
        try:
            entries = list(os.scandir(self._fragments))
        except FileNotFoundError:
            self._trouble()
            raise DriveUnavailable(f"drive {self.root}: fragments directory is missing") from None
        return [e.name for e in entries if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]

    def _list_shard(self, shard: str) -> list[str]:
        try:
            return os.listdir(self._fragments / shard)
        except FileNotFoundError:
            return []

    def _describe(self, shard: str, names: list[str]) -> list[FragmentInfo]:
        infos = []
        for name in names:
            try:
                fid = FragmentId.parse(name)
            except ValueError:
                continue  # temp or stray file
            if fid.name != name or shard_name(fid) != shard:
                continue  # not where put() would have written it, so get() could not read it
            try:
                infos.append(self._stat(fid))
            except FragmentNotFound:
                continue  # deleted since the directory was read
            except CorruptFragment:
                # Listed anyway, with zero sizes, so a scrubber finds it; verify reports chunk 0.
                try:
                    mtime = os.stat(self.fragment_path(fid)).st_mtime
                except FileNotFoundError:
                    continue
                infos.append(FragmentInfo(fid, 0, 0, 0, mtime))
        return infos


def _prepare(root: Path, clear_tmp: bool) -> tuple[str, dict[str, Any], bool]:
    """prepare_drive, then what adoption needs to know of the drive as it is now."""
    drive_id = prepare_drive(root, clear_tmp)
    try:
        identity = read_identity(root)
    except (OSError, ValueError) as exc:
        raise DriveUnavailable(f"cannot use {root} as a drive: {exc}") from None
    return drive_id, identity, was_mounted(root)
