"""HTTPS on the S3 endpoint: real clients with their default settings, certificate reload on SIGHUP, bad flags.

The test makes its own CA and server certificates (cryptography; no network). Every client is told to
trust that CA, as a user would with AWS_CA_BUNDLE or --ca-bundle, and checks the name 127.0.0.1.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli.dev import DevCluster
from cli.launch import tessera_command
from tests.s3_helpers import checksum
from tests.server_process import (
    ACCESS_KEY,
    CLEAN_ENV,
    SECRET_KEY,
    ServerProcess,
    assert_one_line_error,
    run_server,
    start_server,
)

MiB = 1 << 20
DEADLINE = 20.0  # for a reload to show in new handshakes
FRESH = 16  # new connections per check: with two workers, each is missed with odds of 2**-16


# -- a CA of the test's own ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: bytes  # PEM
    key: bytes  # PEM
    serial: int


class LocalCA:
    """Issues server certificates for 127.0.0.1 and localhost, each with its own serial and CN."""

    def __init__(self, directory: Path) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tessera test CA")])
        builder = _builder(name, name, self._key.public_key(), 3650)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(_usage(cert_sign=True), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), False)
        self._cert = builder.sign(self._key, hashes.SHA256())
        self.path = directory / "ca.pem"
        self.path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = _builder(subject, self._cert.subject, key.public_key(), 30)
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(_usage(cert_sign=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        builder = builder.add_extension(aki, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem, cert.serial_number)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def install(issued: Issued, cert: Path, key: Path) -> None:
    """Replace the files as an operator's tooling should: each appears whole (rename), never half-written."""
    for data, path in ((issued.key, key), (issued.cert, cert)):
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        tmp.chmod(0o600)
        os.replace(tmp, path)


@dataclass
class Pki:
    ca: LocalCA
    first: Issued
    second: Issued
    cert: Path  # where the server reads its certificate and key
    key: Path

    def flags(self) -> tuple[str, ...]:
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key))


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = LocalCA(directory)
    pki = Pki(ca, ca.issue("tessera-one"), ca.issue("tessera-two"), directory / "cert.pem", directory / "key.pem")
    install(pki.first, pki.cert, pki.key)
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    s = start_server(tmp_path_factory.mktemp("https"), extra=pki.flags(), ca_bundle=str(pki.ca.path))
    yield s
    s.stop()


# -- TLS seen from a client ---------------------------------------------------------------------------------


def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca.path)


def connect(endpoint: str, pki: Pki) -> http.client.HTTPSConnection:
    parts = urlsplit(endpoint)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=client_context(pki), timeout=10)
    conn.connect()
    return conn


def serial_of(conn: http.client.HTTPSConnection) -> int:
    der = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    return x509.load_der_x509_certificate(der).serial_number


def get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, http.client.HTTPResponse]:
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp


def fresh_handshakes(endpoint: str, pki: Pki, n: int = FRESH) -> list[tuple[int, str]]:
    """(certificate serial, answering process) for n new connections, each asking for / anonymously (a
    403 whose request id's first six characters name the process)."""
    seen = []
    for _ in range(n):
        conn = connect(endpoint, pki)
        try:
            status, resp = get(conn, "/")
            assert status == 403
            seen.append((serial_of(conn), str(resp.getheader("x-amz-request-id"))[:6]))
        finally:
            conn.close()
    return seen


def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def reload_to(endpoint: str, pid: int, pki: Pki, issued: Issued) -> None:
    """Install a certificate, SIGHUP the PID the user sees, and wait until new handshakes all present it."""
    install(issued, pki.cert, pki.key)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: {s for s, _ in fresh_handshakes(endpoint, pki)} == {issued.serial}, "the reloaded certificate")


# -- the tests ----------------------------------------------------------------------------------------------


def test_https_only_modern_tls_and_health(srv: ServerProcess, pki: Pki) -> None:
    assert srv.endpoint.startswith("https://127.0.0.1:")
    conn = connect(srv.endpoint, pki)
    try:
        tls = conn.sock
        assert isinstance(tls, ssl.SSLSocket)
        assert tls.version() in ("TLSv1.2", "TLSv1.3") and tls.compression() is None
        for probe in ("/health/live", "/health/ready"):
            assert get(conn, probe)[0] == 200, probe
    finally:
        conn.close()
    plain = http.client.HTTPConnection("127.0.0.1", urlsplit(srv.endpoint).port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        get(plain, "/health/live")  # not a TLS ClientHello: the listener speaks HTTPS only
    plain.close()


def test_boto3_defaults_send_unsigned_trailer_uploads(srv: ServerProcess, tmp_path: Path) -> None:
    """boto3 with nothing configured but the CA. Over https botocore (httpchecksum.py,
    resolve_request_checksum_algorithm; auth.py, _should_sha256_sign_payload) sends streaming uploads as
    STREAMING-UNSIGNED-PAYLOAD-TRAILER: aws-chunked, the CRC32 in a trailer. The server's access log and
    metrics do not record the mode, so the headers are taken from the prepared requests as they leave
    botocore (its before-send event), and the server shows it got the trailer: it stored that CRC32."""
    s3 = srv.client()
    sent: dict[str, list[dict[str, str]]] = {}

    def capture(request: Any, event_name: str, **_: Any) -> None:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        sent.setdefault(event_name.rsplit(".", 1)[-1], []).append(headers)

    s3.meta.events.register("before-send.s3", capture)
    s3.create_bucket(Bucket="tls")
    body = os.urandom(300_000)
    s3.put_object(Bucket="tls", Key="small", Body=body)
    put = sent["PutObject"][-1]
    assert put["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert put["content-encoding"] == "aws-chunked" and put["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert "x-amz-checksum-crc32" not in put  # the checksum travelled only in the trailer
    head = s3.head_object(Bucket="tls", Key="small", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(body)
    assert head["ChecksumCRC32"] == checksum("CRC32", body)
    assert s3.get_object(Bucket="tls", Key="small")["Body"].read() == body

    big = tmp_path / "big"
    big.write_bytes(os.urandom(9 * MiB))  # above boto3's 8 MiB multipart threshold
    s3.upload_file(str(big), "tls", "big")
    parts = sent["UploadPart"]
    assert len(parts) == 2 and {p["x-amz-content-sha256"] for p in parts} == {"STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    assert "CompleteMultipartUpload" in sent
    assert s3.get_object(Bucket="tls", Key="big")["Body"].read() == big.read_bytes()
    listed = s3.list_objects_v2(Bucket="tls")["Contents"]
    assert {(o["Key"], o["Size"]) for o in listed} == {("small", len(body)), ("big", 9 * MiB)}
    for key in ("small", "big"):
        s3.delete_object(Bucket="tls", Key=key)
    assert s3.list_objects_v2(Bucket="tls")["KeyCount"] == 0
    assert srv.requests_answered("put_object", "200") >= 1  # /metrics over https too


def test_awscli_copies_both_ways(srv: ServerProcess, tmp_path: Path) -> None:
    srv.aws("s3", "mb", "s3://cli-tls")
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(os.urandom(1000))
    big.write_bytes(os.urandom(9 * MiB))  # above aws-cli's 8 MiB multipart threshold
    for f in (small, big):
        srv.aws("s3", "cp", str(f), f"s3://cli-tls/{f.name}")
    listing = srv.aws("s3", "ls", "s3://cli-tls/").stdout
    assert "small.bin" in listing and "big.bin" in listing
    for f in (small, big):
        back = tmp_path / f"back-{f.name}"
        srv.aws("s3", "cp", f"s3://cli-tls/{f.name}", str(back))
        assert back.read_bytes() == f.read_bytes()


def admin(endpoint: str, *args: str, ca_env: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    if ca_env:
        env["AWS_CA_BUNDLE"] = ca_env
    cmd = [sys.executable, "-m", "cli.main", "admin", "--endpoint", endpoint, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_admin_status_over_https(srv: ServerProcess, pki: Pki) -> None:
    res = admin(srv.endpoint, "--ca-bundle", str(pki.ca.path), "status", "--json")
    assert res.returncode == 0, res.stderr
    assert "repair" in json.dumps(json.loads(res.stdout))
    res = admin(srv.endpoint, "status", "--json", ca_env=str(pki.ca.path))
    assert res.returncode == 0, res.stderr
    untrusted = admin(srv.endpoint, "status")  # the system's CAs do not know the test's
    assert untrusted.returncode == 1 and len(untrusted.stderr.strip().splitlines()) == 1, untrusted.stderr
    assert "certificate" in untrusted.stderr and "--ca-bundle" in untrusted.stderr
    missing = admin(srv.endpoint, "--ca-bundle", str(pki.ca.path) + ".missing", "status")
    assert missing.returncode == 1 and "CA bundle" in missing.stderr and "Traceback" not in missing.stderr


def test_bench_over_https(srv: ServerProcess, pki: Pki) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    cmd = [sys.executable, "-m", "bench", "--endpoint", srv.endpoint, "--ca-bundle", str(pki.ca.path)]
    cmd += ["--op", "mixed", "--size", "4KiB", "--concurrency", "2", "--duration", "1", "--objects", "5", "--json"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["errors"] == 0 and summary["ops"] > 0


def test_sighup_reloads_the_certificate_and_keeps_connections(srv: ServerProcess, pki: Pki) -> None:
    kept = connect(srv.endpoint, pki)
    try:
        assert get(kept, "/health/live")[0] == 200
        before = serial_of(kept)
        assert before == pki.first.serial
        sock = kept.sock
        reload_to(srv.endpoint, srv.pid, pki, pki.second)
        assert get(kept, "/health/live")[0] == 200 and kept.sock is sock  # the same connection, still served
        assert serial_of(kept) == before

        # A reload that cannot read the new files logs one line and keeps the certificate it has.
        pki.cert.write_bytes(b"not a certificate\n")
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: "TLS reload failed" in srv.log_text(), "the failed reload's log line")
        lines = [ln for ln in srv.log_text().splitlines() if "TLS reload failed" in ln]
        assert len(lines) == 1 and "--tls-cert" in lines[0] and "Traceback" not in srv.log_text()
        assert {s for s, _ in fresh_handshakes(srv.endpoint, pki, 4)} == {pki.second.serial}
        assert get(kept, "/health/ready")[0] == 200
    finally:
        kept.close()
        install(pki.second, pki.cert, pki.key)  # good files again, for the tests after this one


def test_bad_tls_flags_are_one_line_errors(tmp_path: Path, pki: Pki) -> None:
    drive = str(tmp_path / "d")
    cert, key, other = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "other-key.pem"
    cert.write_bytes(pki.first.cert)
    key.write_bytes(pki.first.key)
    other.write_bytes(pki.second.key)
    assert_one_line_error(run_server([drive, "--tls-cert", str(cert)], tmp_path), "--tls-key")
    assert_one_line_error(run_server([drive, "--tls-key", str(key)], tmp_path), "--tls-cert")
    missing = run_server([drive, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)], tmp_path)
    assert_one_line_error(missing, "nope.pem")
    mismatched = run_server([drive, "--tls-cert", str(cert), "--tls-key", str(other)], tmp_path)
    assert_one_line_error(mismatched, "does not match")
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        serialization.load_pem_private_key(pki.first.key, None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    res = run_server([drive, "--tls-cert", str(cert), "--tls-key", str(encrypted)], tmp_path)
    assert_one_line_error(res, "encrypted")
    assert not (tmp_path / "d").exists()  # refused before touching any drive

    env = {**CLEAN_ENV, "TESSERA_CLUSTER_SECRET": "s" * 32}
    env |= {"TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    gw = subprocess.run(
        [*tessera_command(), "gateway", "--meta", "127.0.0.1:1", "--tls-cert", str(cert)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(gw, "--tls-key")


def test_workers_all_serve_https_and_all_reload(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    extra = ("--workers", "2", "--scan-interval", "3600", *pki.flags())
    s = start_server(tmp_path / "server", extra=extra, ca_bundle=str(pki.ca.path))
    try:
        workers = children(s.pid)
        assert len(workers) == 2
        first = fresh_handshakes(s.endpoint, pki, 2 * FRESH)
        assert {serial for serial, _ in first} == {pki.first.serial}
        assert len({worker for _, worker in first}) == 2, first  # both processes answered over TLS
        reload_to(s.endpoint, s.pid, pki, pki.second)  # SIGHUP to the first process only
        after = fresh_handshakes(s.endpoint, pki, 2 * FRESH)
        assert {serial for serial, _ in after} == {pki.second.serial}
        assert len({worker for _, worker in after}) == 2, after
        assert children(s.pid) == workers  # reloaded in place: no worker was ended and started again
        s3 = s.client()
        s3.create_bucket(Bucket="workers-tls")
        s3.put_object(Bucket="workers-tls", Key="k", Body=b"over tls")
        assert s3.get_object(Bucket="workers-tls", Key="k")["Body"].read() == b"over tls"
    finally:
        s.stop()


def children(pid: int) -> list[int]:
    return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def test_gateway_serves_https_and_reloads(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    cluster = DevCluster(tmp_path / "cluster", nodes=3, metas=1, gateways=1, ec="2+1", gateway_args=[*pki.flags()])
    cluster.start()
    try:
        gw = cluster.services["gateway1"]
        assert gw.endpoint.startswith("https://")
        client = boto3.client(
            "s3",
            endpoint_url=gw.endpoint,
            aws_access_key_id=cluster.env["TESSERA_ACCESS_KEY"],
            aws_secret_access_key=cluster.env["TESSERA_SECRET_KEY"],
            region_name="us-east-1",
            verify=str(pki.ca.path),
        )
        client.create_bucket(Bucket="gateway-tls")
        client.put_object(Bucket="gateway-tls", Key="k", Body=b"x" * 100_000)
        assert client.get_object(Bucket="gateway-tls", Key="k")["Body"].read() == b"x" * 100_000
        reload_to(gw.endpoint, gw.pid, pki, pki.second)
    finally:
        cluster.stop()
