"""HTTPS for the S3 endpoints and the internal services: --tls-cert/--tls-key, the server's TLS context,
and its reload on SIGHUP; --cluster-ca, the CA a service trusts for https peers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli.addresses import StartupError
from cluster.client import CA_ENV, trust_cluster_ca

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


def service_tls_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--tls-cert, --tls-key and --cluster-ca for an internal service (tessera meta, tessera node)."""
    f = cluster_ca_option(f)
    f = click.option("--tls-key", default=None, metavar="FILE", help="The certificate's private key (PEM).")(f)
    return click.option(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="Serve HTTPS to the cluster with this certificate chain (PEM); read again on SIGHUP.",
    )(f)


def cluster_ca_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--cluster-ca",
        envvar=CA_ENV,
        default=None,
        metavar="FILE",
        help=f"The CA (PEM) that signs the cluster services' certificates, for https:// peers [{CA_ENV}].",
    )(f)


def service_tls(cert: str | None, key: str | None, cafile: str | None) -> ServerTls | None:
    """An internal service's flags: its own TLS (or None), and the CA it trusts for https peers."""
    use_cluster_ca(cafile)
    return server_tls(cert, key)


def serving_context(tls: ServerTls | None) -> ssl.SSLContext | None:
    return tls.context if tls is not None else None


def use_cluster_ca(cafile: str | None) -> None:
    """Trust --cluster-ca for https peers; StartupError if it is not a readable PEM certificate."""
    try:
        trust_cluster_ca(cafile)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"--cluster-ca {cafile} is not a readable PEM CA certificate: {exc}") from None


def make_local_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of its own and a certificate for 127.0.0.1 and localhost that it signs (`tessera dev --tls`):
    (ca.pem, cert.pem, key.pem) in directory, made once and kept. Needs the `cryptography` package."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: x509.Name | None, signer: Any, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3650 if ca else 825))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        )
        if not ca:
            sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("Tessera dev CA", ca_key, None, ca_key, ca=True)
    cert = certificate("tessera dev", key, ca_cert.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(pem))
    ca_path.write_bytes(ca_cert.public_bytes(pem))  # last: its presence says the set is whole
    return ca_path, cert_path, key_path
