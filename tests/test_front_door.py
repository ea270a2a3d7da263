"""The S3 front door under abuse, through a real `tessera server` with short timeouts and a low in-flight cap:
slow and idle connections are closed, a stalled upload is cut off and stores nothing, a burst gets 200s and
early 503 SlowDown, malformed HTTP gets S3 XML without a traceback in the log, and 100 Continue waits for
authentication."""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.s3_helpers import sign, unique
from tests.server_process import ServerProcess, start_server

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
BODY_TIMEOUT = 1.5
MAX_REQUESTS = 4
SLACK = 3.0  # a shared, loaded machine: timers fire late


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    extra = (
        *("--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT)),
        *("--body-timeout", str(BODY_TIMEOUT), "--max-requests", str(MAX_REQUESTS)),
    )
    saved = os.environ.get("TESSERA_LOG_LEVEL")
    os.environ["TESSERA_LOG_LEVEL"] = "debug"  # every request's access-log line
    try:
        srv = start_server(tmp_path_factory.mktemp("door"), extra=extra)
    finally:
        if saved is None:
            del os.environ["TESSERA_LOG_LEVEL"]
        else:
            os.environ["TESSERA_LOG_LEVEL"] = saved
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def no_traceback(door: ServerProcess) -> Iterator[None]:
    seen = len(door.log_text())
    yield
    assert "Traceback" not in door.log_text()[seen:]


def connect(srv: ServerProcess) -> socket.socket:
    parts = urlsplit(srv.endpoint)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def closed_by_server(sock: socket.socket, within: float) -> float | None:
    """Seconds until the server closed the connection (reading and dropping any answer), or None."""
    start = time.monotonic()
    while (left := start + within - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - start
            except ConnectionError:
                return time.monotonic() - start
    return None


def first_status(sock: socket.socket) -> int:
    """The status of the first response head on the wire (http.client skips a 100 Continue)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def raw_head(method: str, target: str, headers: dict[str, str], srv: ServerProcess) -> bytes:
    """A signed request's head as http.client would send it (botocore signs Host from the URL)."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in {"Host": urlsplit(srv.endpoint).netloc, **headers}.items())
    return f"{method} {target} HTTP/1.1\r\n{lines}\r\n".encode()


def answer(sock: socket.socket) -> http.client.HTTPResponse:
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp


def test_dribbled_heads_are_closed_within_the_header_timeout(door: ServerProcess) -> None:
    socks = [connect(door) for _ in range(10)]
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    start, closed = time.monotonic(), [False] * len(socks)
    while not all(closed) and time.monotonic() - start < HEADER_TIMEOUT + SLACK:
        for i, s in enumerate(socks):
            if closed[i]:
                continue
            try:
                s.sendall(b"X-A: b\r\n")  # a header line now and then, never the blank line
            except OSError:
                closed[i] = True
                continue
            closed[i] = closed_by_server(s, 0.01) is not None
        time.sleep(0.2)
    for s in socks:
        s.close()
    assert all(closed), f"{closed.count(False)} dribbling connections still open"


def test_silent_and_idle_keepalive_connections_are_closed(door: ServerProcess) -> None:
    silent = connect(door)  # connects, sends nothing
    idle = connect(door)
    idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = answer(idle)
    assert resp.status == 200 and not resp.will_close
    resp.read()
    took = closed_by_server(silent, HEADER_TIMEOUT + SLACK)
    assert took is not None, "a connection that never sent a request is still open"
    took = closed_by_server(idle, IDLE_TIMEOUT + SLACK)
    assert took is not None and took >= IDLE_TIMEOUT - HEADER_TIMEOUT - 0.5, took
    silent.close()
    idle.close()


def test_a_stalled_upload_is_cut_off_and_stores_nothing(door: ServerProcess) -> None:
    s3 = door.client()
    bucket = unique()
    s3.create_bucket(Bucket=bucket)
    size = 8 << 20
    target = f"/{bucket}/stalled"
    signed = sign(door, "PUT", target, {"Content-Length": str(size)}, "UNSIGNED-PAYLOAD")
    sock = connect(door)
    sock.sendall(raw_head("PUT", target, signed.headers, door) + os.urandom(1 << 20))
    took = closed_by_server(sock, BODY_TIMEOUT + SLACK + 2)
    sock.close()
    assert took is not None, "a stalled upload still holds its connection"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="stalled")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # A live upload on the same server is not disturbed by the watchdog.
    s3.put_object(Bucket=bucket, Key="fine", Body=os.urandom(3 << 20))


def test_a_burst_gets_only_200_and_early_slowdown(door: ServerProcess) -> None:
    s3 = door.client(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=48)
    bucket = unique()
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(1 << 20)
    gate = threading.Barrier(32)
    outcomes: list[tuple[int, str, str | None]] = []

    def put(i: int) -> None:
        gate.wait()
        try:
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
            outcomes.append((200, "", None))
        except ClientError as exc:
            meta = exc.response["ResponseMetadata"]
            code = exc.response["Error"]["Code"]
            outcomes.append((meta["HTTPStatusCode"], code, meta["HTTPHeaders"].get("retry-after")))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    probe = urlsplit(door.endpoint)
    for t in threads:
        t.join(120)
    assert len(outcomes) == 32, "a request neither succeeded nor failed (timed out?)"
    refused = [o for o in outcomes if o[0] != 200]
    assert all(o == (503, "SlowDown", "1") for o in refused), refused
    assert refused, "32 concurrent 1 MiB PUTs against a cap of 4: none was refused"
    assert len(refused) < 32
    conn = http.client.HTTPConnection(probe.hostname or "", probe.port, timeout=30)
    conn.request("GET", "/minio/health/ready")
    assert conn.getresponse().status == 200


MALFORMED = {
    "oversized header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 400),
    "bad content-length": (b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 12ab\r\n\r\n", 400),
    "two content-lengths": (
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        400,
    ),
    "bad transfer-encoding": (b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n", 400),
    "bad chunk": (b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "second host": (b"GET /b/k HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "unknown method": (b"FROB /b/k HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "expect 200": (b"GET /b/k HTTP/1.1\r\nHost: x\r\nExpect: 200\r\n\r\n", 417),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_http_gets_s3_xml_and_one_log_line(door: ServerProcess, name: str) -> None:
    data, status = MALFORMED[name]
    seen = len(door.log_text())
    with connect(door) as sock:
        sock.sendall(data)
        resp = answer(sock)
        body = resp.read()
    assert resp.status == status, body
    assert resp.getheader("Content-Type", "").startswith("application/xml"), resp.getheaders()
    root = ET.fromstring(body)
    assert root.tag == "Error" and root.findtext("Code"), body
    deadline = time.monotonic() + 10
    while f'"status": {status}' not in door.log_text()[seen:] and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = [line for line in door.log_text()[seen:].splitlines() if f'"status": {status}' in line]
    assert len(logged) == 1, logged


def test_100_continue_only_after_authentication(door: ServerProcess) -> None:
    bucket = unique()
    door.client().create_bucket(Bucket=bucket)
    head = f"PUT /{bucket}/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    with connect(door) as sock:
        sock.sendall(head.encode())
        assert first_status(sock) == 403  # not 100 Continue first

    target = f"/{bucket}/k"
    signed = sign(door, "PUT", target, {"Content-Length": "5", "Expect": "100-continue"}, "UNSIGNED-PAYLOAD")
    with connect(door) as sock:
        sock.sendall(raw_head("PUT", target, signed.headers, door))
        assert first_status(sock) == 100
        sock.sendall(b"hello")
        assert answer(sock).status == 200


@pytest.mark.parametrize("path", ["/minio/health/live", "/minio/health/ready", "/health/live"])
def test_minio_probe_paths(door: ServerProcess, path: str) -> None:
    parts = urlsplit(door.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("GET", path)
    resp: Any = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
