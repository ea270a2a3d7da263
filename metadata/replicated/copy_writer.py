"""The index copies' writers: on a solo embedded server, each copy on the drives is written by a child process
of its own (metadata/replicated/copy_child.py), and CopyWriter is the serving process's end of it.

Why: py-lmdb lets go of the GIL around every call into LMDB, so writer threads in the serving process took
turns at the GIL with the event loop at every call. A child per copy has a GIL of its own and nothing to share
it with, and a drive that hangs stalls its own child only (measured: docs/performance.md, "The index copies on
the drives"). Reads, anti-entropy, read repair and the lock rounds stay in the serving process: LMDB lets
several processes use one environment, a reader sees every commit made before its transaction began, and the
writers of different processes take turns at LMDB's lock.

Protocol over the child's stdin and stdout, a stream of msgpack arrays:
    to the child    [seq, [[table, LMDB key, packed entry, usage], ...]]   (packed.pack_entry, merged by merge_packed;
                    usage: [bytes, objects] of a manifest, read once by the server, else nil)
    from the child  [seq, ok, changed | [kind, message]]
A write is answered once it is durable on the copy (or failed there). End of input: the child answers what it
took and exits; so it also ends when the server is killed. If a child dies, what it had not answered fails there
(the copy counted as down for those writes) and the server writes that copy itself from then on (EmbeddedIndex).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import cast

import lmdb
import msgpack

from metadata.index import IndexFull
from metadata.lmdb_env import Settled
from metadata.replica.manifests import stored_usage
from metadata.replica.packed import MANIFEST_TABLES, pack_entry
from metadata.replica.protocol import Write

log = logging.getLogger(__name__)

STOP_WAIT = 30.0  # seconds a child has to finish its writes at close before it is killed
BACKLOG = 64 << 20  # bytes of writes waiting for a child (its drive hangs) beyond which its copy misses them


def rebuild(kind: str, message: str) -> BaseException:
    """The exception a child described (copy_child.describe)."""
    if kind == "full":
        return IndexFull(message)
    if kind == "value":
        return ValueError(message)
    cls = getattr(lmdb, kind.removeprefix("lmdb:"), None) if kind.startswith("lmdb:") else None
    if isinstance(cls, type) and issubclass(cls, lmdb.Error):
        return cls(message)
    return RuntimeError(message)


class CopyWriter(asyncio.SubprocessProtocol):
    """The serving process's end of one copy's child: send() a packed write; its answer settles it."""

    def __init__(self) -> None:
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._unpacker = msgpack.Unpacker()
        self._pending: dict[int, Settled] = {}  # seq -> told (ok, changed or exception) when it settles
        self._out: list[bytes] = []
        self._exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.running = False
        self.pid: int | None = None

    @classmethod
    async def start(cls, path: Path, inode: int) -> CopyWriter:
        """Start the child writing the copy in `path`, whose data.mdb the serving process opened as `inode`."""
        loop = asyncio.get_running_loop()
        # -P: the server's working directory is not put on the child's import path (a `metadata` there is not ours).
        cmd = [sys.executable, "-P", "-m", "metadata.replicated.copy_child", str(path), str(inode)]
        _, writer = await loop.subprocess_exec(cls, *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return writer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's: the same interface, not the same class.
        self._transport = cast(asyncio.SubprocessTransport, transport)
        self._stdin = cast(asyncio.WriteTransport, self._transport.get_pipe_transport(0))
        self.pid = self._transport.get_pid()
        self.running = True

    @staticmethod
    def frame(seq: int, writes: list[Write]) -> bytes:
        """A write for every copy's child at once: packed once, each manifest's usage read once."""
        items = []
        for w in writes:
            raw, value = pack_entry(w.key, w.entry)
            counted = None
            if w.table in MANIFEST_TABLES and not w.entry.tombstone:
                u = stored_usage(w.entry.value)
                counted = (u.bytes, u.objects)
            items.append((w.table, raw, value, counted))
        return cast(bytes, msgpack.packb([seq, items]))

    def send(self, seq: int, frame: bytes, done: Settled) -> None:
        """Send a frame(); done(ok, changed or exception) once it is durable on the copy, or failed there."""
        assert self._stdin is not None
        if self._stdin.get_write_buffer_size() > BACKLOG:
            done(False, RuntimeError(f"more than {BACKLOG >> 20} MiB of writes wait for this copy's drive"))
            return
        self._pending[seq] = done
        if not self._out:  # the writes of one turn of the event loop go in one pipe write
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = b"".join(self._out), []
        if out and self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(out)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._unpacker.feed(data)
        for seq, ok, value in self._unpacker:
            done = self._pending.pop(seq, None)
            if done is not None:
                done(True, value) if ok else done(False, rebuild(*value))

    def process_exited(self) -> None:
        if self.running:
            assert self._transport is not None
            code = self._transport.get_returncode()
            log.error(
                "an index copy's writer process (pid %s) exited (%s): writing that copy in-process", self.pid, code
            )
        self.running = False

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd != 1:
            return
        # No answer can come any more: what was not answered failed (it may be durable all the same: merged
        # again, it changes nothing; the copy is only left out of solo reads until proven complete again).
        self.running = False
        pending, self._pending = self._pending, {}
        for done in pending.values():
            done(False, RuntimeError("the copy's writer process ended"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._exited.done():
            self._exited.set_result(None)

    async def close(self) -> None:
        """Let the child finish and answer what it took, then wait for it to exit (killed after STOP_WAIT)."""
        if self._transport is None:
            return
        self._flush()
        self.running = False
        if self._stdin is not None:
            self._stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), STOP_WAIT)
        except TimeoutError:
            log.error("an index copy's writer process (pid %s) did not finish in %.0f s: killed", self.pid, STOP_WAIT)
            self._transport.kill()
            await self._exited
        self._transport.close()
