"""HTTPS for the S3 endpoints: --tls-cert/--tls-key, the server's TLS context, and its reload on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from pathlib import Path

from cli.addresses import StartupError

log = logging.getLogger("tessera.tls")


class ServerTls:
    """The TLS context a listener is given, and the certificate it presents.

    A reload builds a fresh context from the files and, only if that works, makes it the one new
    handshakes switch to (in the SNI callback, which OpenSSL runs for every ClientHello, with or without
    a server name). Loading onto the live context instead could leave it half-changed when the key does
    not match the new certificate. Established connections keep the certificate they were made with.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = self._load()  # StartupError: the flags name something unusable
        self.context.sni_callback = self._pick
        self._current = self.context

    def reload(self, quiet: bool = False) -> None:
        """Read the files again; on failure keep presenting the old certificate. Unless quiet, log the
        outcome in one line."""
        try:
            fresh = self._load()
        except StartupError as exc:
            if not quiet:
                log.error("TLS reload failed, keeping the previous certificate: %s", exc)
            return
        self._current = fresh
        if not quiet:
            log.info("TLS certificate reloaded from %s", self.cert)

    def _pick(self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, base: ssl.SSLContext) -> None:
        current = self._current
        if current is not base:
            conn.context = current

    def _load(self) -> ssl.SSLContext:
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key)):
            try:
                path.read_bytes()  # load_cert_chain's errors do not say which file they are about
            except OSError as exc:
                raise StartupError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # the stdlib's cipher defaults
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME: compression leaks secrets through lengths
        try:
            ctx.load_cert_chain(self.cert, self.key, password=self._encrypted)
        except ssl.SSLError as exc:
            raise StartupError(self._explain(exc)) from None
        return ctx

    def _encrypted(self) -> bytes:
        # Without a password callback OpenSSL would prompt on the terminal: at start, or at a SIGHUP.
        raise StartupError(f"--tls-key {self.key} is encrypted; give an unencrypted key (readable by this user only)")

    def _explain(self, exc: ssl.SSLError) -> str:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"--tls-key {self.key} does not match the certificate in --tls-cert {self.cert}"
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=self.cert)
        except ssl.SSLError:
            return f"--tls-cert {self.cert} holds no PEM certificate"
        return f"--tls-key {self.key} holds no PEM private key"


def server_tls(cert: str | None, key: str | None) -> ServerTls | None:
    """The flags' TLS (both given) or None (neither); one without the other is a StartupError."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise StartupError("--tls-cert and --tls-key go together: give both or neither")
    return ServerTls(Path(cert), Path(key))


def url_scheme(tls: ServerTls | None) -> str:
    return "https" if tls else "http"


def reload_on_sighup(tls: ServerTls | None, catch_up: bool = False) -> None:
    """In a serving process's event loop: SIGHUP reads the certificate and key again.

    catch_up: read them once more now, for a SIGHUP that came before this handler (a `--workers` process
    forked with its parent's context; quietly, its parent having read them at start)."""
    if tls is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, tls.reload)
        if catch_up:
            tls.reload(quiet=True)
