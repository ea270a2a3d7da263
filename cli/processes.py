"""Several processes serving one port: the first process forks them, watches them, and stops them.

The parent reserves the port (SO_REUSEPORT, bound but not listening, so it takes no connections),
forks the workers, each of which listens on the port itself, and waits until every one says it is
listening. The kernel spreads new connections over the workers' sockets. A worker that dies is
started again; SIGINT or SIGTERM stops them all; SIGHUP, when the server reloads something on it
(its TLS certificate), is passed on to every worker. The parent holds no thread, event loop or LMDB
handle when it forks: the workers open their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from cli.addresses import StartupError

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # between a worker's death and its restart: a crashing worker does not spin
STOP_TIMEOUT = 30.0  # for workers to finish after SIGTERM, before SIGKILL
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Worker:
    """What a worker process knows about itself."""

    number: int  # 0 .. count-1; worker 0 runs the background maintenance and admin jobs
    count: int
    run_dir: Path  # private to the server's user: the workers' Unix sockets
    port: int
    ready_fd: int | None  # written to once the worker listens (None for a restarted worker)

    def ready(self) -> None:
        if self.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, b"1")
                os.close(self.ready_fd)


WorkerMain = Callable[[Worker], int]  # runs in the forked process; returns its exit status


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT, not listening: it keeps the port (and names
    the one picked for port 0) while the workers come and go."""
    if not hasattr(os, "fork") or not hasattr(socket, "SO_REUSEPORT"):
        raise StartupError("--workers above 1 needs fork() and SO_REUSEPORT (Linux, macOS, BSD)")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if port and _answers(family, addr):
        # Another process sharing the port would quietly take part of our connections.
        raise StartupError(f"cannot listen on {host}:{port}: something is already listening there")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _answers(family: int, addr: tuple[object, ...]) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(addr) == 0


class Supervisor:
    def __init__(
        self, count: int, reserved: socket.socket, main: WorkerMain, on_hangup: Callable[[], object] | None = None
    ) -> None:
        """on_hangup: what this process does on SIGHUP before passing it on to the workers (None: SIGHUP
        keeps its default action, ending the server)."""
        self.count = count
        self._on_hangup = on_hangup
        self.port: int = reserved.getsockname()[1]
        self._reserved = reserved
        self._main = main
        self._parent = os.getpid()
        self._live: dict[int, int] = {}  # pid -> worker number
        self._stopping = False
        self.run_dir = Path(tempfile.mkdtemp(prefix="tessera-workers-"))  # mode 0700

    def run(self, announce: Callable[[], None]) -> int:
        """Start the workers, announce once all listen, keep them running until a signal; exit status."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if self._on_hangup is not None:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._hangup)
        try:
            if not self._start_all():
                return 0 if self._stopping else 2
            announce()
            self._watch()
            return 0
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._reserved.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._parent:
            return
        self._stopping = True
        for pid in self._live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        # A worker forked a moment ago keeps this handler until its event loop installs its own, and so
        # ignores the signal: the worker reads the files again once it handles SIGHUP itself (cli/tls.py).
        if os.getpid() != self._parent or self._on_hangup is None:
            return
        self._on_hangup()
        for pid in self._live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _start_all(self) -> bool:
        """Fork every worker and wait until each listens; False if one failed to start (or a signal came)."""
        pipes = [self._fork(n, ready=True) for n in range(self.count)]
        ok = True
        for fd in pipes:
            assert fd is not None
            with os.fdopen(fd, "rb", buffering=0) as pipe:
                ok = ok and pipe.read(1) == b"1"  # EOF: the worker exited before it listened
        return ok and not self._stopping

    def _watch(self) -> None:
        while self._live:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return
            number = self._live.pop(pid, None)
            if number is None or self._stopping:
                continue
            log.warning("worker %d (pid %d) %s; starting it again", number, pid, _describe(status))
            time.sleep(RESTART_DELAY)
            if not self._stopping:
                self._fork(number, ready=False)

    def _fork(self, number: int, ready: bool) -> int | None:
        r, w = os.pipe() if ready else (None, None)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                if r is not None:
                    os.close(r)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._reserved.close()
                _die_with(self._parent)
                code = self._main(Worker(number, self.count, self.run_dir, self.port, w))
            except KeyboardInterrupt:
                code = 130
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        self._live[pid] = number
        if w is not None:
            os.close(w)
        return r

    def _stop_all(self) -> None:
        self._stopping = True
        for pid in self._live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._live:
            for pid in list(self._live):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del self._live[pid]
                elif time.monotonic() > deadline:
                    log.warning("worker pid %d did not stop in %.0f s; killing it", pid, STOP_TIMEOUT)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _die_with(parent: int) -> None:
    """Linux: have the kernel SIGTERM this worker if the parent dies, however it dies."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request above
        os._exit(1)
