"""RemoteIndex against the real metadata service (in this process, on a loopback port): the Index
contract, then what only the wire has: signatures, bad bodies, health, metrics, retries, timeouts."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web

from cluster import auth
from cluster.auth import ClusterAuthError
from metadata.index import Index, IndexUnavailable
from metadata.local.store import LocalIndex
from metadata.records import BucketRecord
from metadata.remote import protocol
from metadata.remote.client import RemoteIndex
from metadata.remote.service import make_meta_app
from tests.accounting_contract import AccountingContract
from tests.index_contract import IndexContract
from tests.index_records import make_manifest, make_node, make_part, make_upload, new_bucket
from tests.lock_contract import LockContract
from tests.version_contract import VersionContract

SECRET = b"test-cluster-secret-0123456789"
MAP_SIZE = 1 << 30


@dataclass
class Service:
    url: str
    local: LocalIndex  # the index under the service: to check what requests did (or did not) change


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    local = LocalIndex.open(tmp_path / "index", map_size=MAP_SIZE)
    runner, url = await serve(make_meta_app(local, SECRET))
    yield Service(url, local)
    await runner.cleanup()
    await local.close()


@pytest.fixture
async def remote(service: Service) -> AsyncIterator[RemoteIndex]:
    idx = RemoteIndex(service.url, SECRET)
    yield idx
    await idx.close()


class TestRemoteIndex(IndexContract, VersionContract, AccountingContract, LockContract):
    @pytest.fixture
    async def index(self, remote: RemoteIndex) -> RemoteIndex:
        return remote


def test_implements_the_index_protocol() -> None:
    for name, proto in inspect.getmembers(Index, inspect.isfunction):
        if name.startswith("_"):
            continue
        impl = getattr(RemoteIndex, name)
        assert inspect.iscoroutinefunction(impl), name
        assert list(inspect.signature(impl).parameters) == list(inspect.signature(proto).parameters), name
    methods = {n for n, _ in inspect.getmembers(Index, inspect.isfunction) if not n.startswith("_")}
    assert set(protocol.OPERATIONS) == methods - {"close"}


# -- raw requests, to send what RemoteIndex never would


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def send(
    url: str,
    path: str,
    body: bytes,
    header: str | None = "sign",
    method: str = "POST",
    signed_body: bytes | None = None,
) -> Answer:
    """A request; header "sign" signs it properly (over signed_body, if given, instead of body)."""
    headers = {}
    if header == "sign":
        headers[auth.HEADER] = auth.sign(SECRET, method, path, body if signed_body is None else signed_body)
    elif header is not None:
        headers[auth.HEADER] = header
    data = io.BytesIO(body)  # aiohttp warns about large bytes bodies
    async with aiohttp.ClientSession() as s, s.request(method, url + path, data=data, headers=headers) as resp:
        return Answer(resp.status, await resp.read())


def bucket_body(name: str, **extra: Any) -> bytes:
    rec = {"name": name, "owner": "AKIAOWNER", "created": 1.0, "region": "us-east-1"}
    return msgpack.packb({"rec": rec | extra})


async def test_requests_without_a_valid_signature_are_refused(service: Service) -> None:
    path, body = "/v1/create_bucket", bucket_body("unsigned")
    now = time.time()
    headers = [
        None,
        "",
        "garbage",
        "t=1,h=2",
        auth.sign(b"another-secret-0123456789", "POST", path, body),
        auth.sign(SECRET, "POST", path, body, now=now - auth.MAX_SKEW - 60),  # too old
        auth.sign(SECRET, "POST", path, body, now=now + auth.MAX_SKEW + 60),  # from the future
        auth.sign(SECRET, "POST", "/v1/get_bucket", body),  # for another operation
        auth.sign(SECRET, "PUT", path, body),  # for another method
        auth.sign(SECRET, "POST", path + "?x=1", body),  # for another query
        auth.sign(SECRET, "POST", path, None),  # a streamed body
    ]
    for header in headers:
        answer = await send(service.url, path, body, header=header)
        assert answer.status == 403, header
        assert answer.json()["error"] == "Forbidden"
    assert await service.local.get_bucket("unsigned") is None
    assert (await send(service.url, path, body)).status == 200  # the same request, signed
    assert await service.local.get_bucket("unsigned") is not None


async def test_body_changed_after_signing_is_refused(service: Service) -> None:
    signed, sent = bucket_body("signed-one"), bucket_body("sent-one")
    answer = await send(service.url, "/v1/create_bucket", sent, signed_body=signed)
    assert answer.status == 403 and "body" in answer.json()["message"]
    assert await service.local.list_buckets() == []


async def test_unsigned_requests_learn_nothing(service: Service) -> None:
    await service.local.create_bucket(BucketRecord("secret-bucket", "o", 1.0))
    for path in ("/v1/list_buckets", "/v1/no_such_operation", "/v1/"):
        answer = await send(service.url, path, msgpack.packb({}), header=None)
        assert answer.status == 403 and b"secret-bucket" not in answer.body


async def test_wrong_secret_raises_cluster_auth_error(service: Service) -> None:
    other = RemoteIndex(service.url, b"not-the-cluster-secret-000")
    try:
        with pytest.raises(ClusterAuthError):
            await other.create_bucket(BucketRecord("nope", "o", 1.0))
        with pytest.raises(ClusterAuthError):
            await other.list_buckets()
    finally:
        await other.close()
    assert await service.local.list_buckets() == []


GOOD_BUCKET = {"name": "b1", "owner": "o", "created": 1.0}
GOOD_PART = {
    "number": 1,
    "data_id": "0" * 32,
    "size": 1,
    "etag": "e",
    "placement": ["d0"],
    "k": 1,
    "m": 0,
    "segment_size": 1 << 20,
}
GOOD_MANIFEST = {
    "bucket": "b1",
    "key": "k",
    "version_id": "1" * 32,
    "size": 1,
    "etag": "e",
    "last_modified": 1.0,
    "owner": "o",
    "parts": [GOOD_PART],
}
MALFORMED = [
    ("create_bucket", b""),  # no body
    ("create_bucket", b"\xc1"),  # not msgpack
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET}) + b"\x00"),  # trailing bytes
    ("create_bucket", msgpack.packb([GOOD_BUCKET])),  # not a map
    ("create_bucket", msgpack.packb({})),  # missing argument
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET, "extra": 1})),  # unknown argument
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET | {"colour": "red"}})),  # unknown field
    ("create_bucket", msgpack.packb({"rec": {"name": "b1", "owner": "o"}})),  # missing field
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET | {"name": 5}})),
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET | {"name": b"b1"}}, use_bin_type=True)),  # bytes, not str
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET | {"created": "yesterday"}})),
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET | {"created": True}})),
    ("create_bucket", msgpack.packb({"rec": GOOD_BUCKET | {"name": None}})),
    ("create_bucket", msgpack.packb({"rec": "b1"})),
    ("create_bucket", msgpack.packb({1: GOOD_BUCKET}, strict_types=False)),  # a key that is not a name
    ("get_bucket", b"\x81\xa4name\xa2\xff\xfe"),  # a str that is not UTF-8
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST | {"parts": [GOOD_PART | {"size": "1"}]}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST | {"parts": [GOOD_PART | {"k": True}]}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST | {"parts": [GOOD_PART | {"x": 1}]}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST | {"parts": GOOD_PART}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST | {"headers": {"a": 1}}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST | {"headers": ["a"]}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST, "cond": {"if_match": 5}})),
    ("put_object", msgpack.packb({"man": GOOD_MANIFEST, "cond": "*"})),
    ("list_objects", msgpack.packb({"bucket": "b1", "max_keys": 1.5})),
    ("list_objects", msgpack.packb({"bucket": "b1", "max_keys": "10"})),
    ("list_objects", msgpack.packb({"bucket": "b1", "prefix": msgpack.ExtType(1, b"x")})),
    ("upsert_node", msgpack.packb({"rec": {"node_id": "n", "address": "a", "zone": "z", "drives": [{}]}})),
    ("set_node_state", msgpack.packb({"node_id": "n"})),
    ("queue_repairs", msgpack.packb({"entries": {"surviving": 1, "data_id": "0" * 32, "part": 0, "index": 0}})),
    ("queue_repairs", msgpack.packb({"entries": [{"surviving": 1, "data_id": "0" * 32}]})),
    ("queue_repairs", msgpack.packb({"entries": [{"surviving": 1, "data_id": "0" * 32, "part": 0, "index": "0"}]})),
    ("list_repairs", msgpack.packb({"after": "0" * 32})),
    ("create_user", msgpack.packb({"rec": {"name": "u", "access_key": "a", "secret_key": "s"}})),
    ("acquire_lease", msgpack.packb({"name": "l", "holder": "h", "ttl": "10"})),
]


@pytest.mark.parametrize(("op", "body"), MALFORMED)
async def test_malformed_bodies_get_400(service: Service, op: str, body: bytes) -> None:
    await service.local.create_bucket(BucketRecord("b1", "o", 1.0))
    answer = await send(service.url, f"/v1/{op}", body)
    assert answer.status == 400, answer
    doc = answer.json()
    assert doc["error"] == "BadRequest" and doc["message"] and "Traceback" not in doc["message"]
    assert [b.name for b in await service.local.list_buckets()] == ["b1"]
    assert await service.local.get_object("b1", "k") is None
    assert await service.local.list_nodes() == []
    assert await service.local.repair_backlog() == 0 and await service.local.list_users() == []


def test_only_reads_are_marked_safe_to_retry() -> None:
    reads = {"list_repairs", "repair_backlog", "list_users", "list_nodes", "get_bucket"}
    writes = {"set_node_state", "update_part", "queue_repairs", "remove_repairs", "create_user", "delete_user"}
    assert reads <= protocol.READS and not (writes | {"acquire_lease", "release_lease"}) & protocol.READS
    assert all(protocol.OPERATIONS[n].read for n in reads)


async def test_new_error_kinds_on_the_wire(service: Service) -> None:
    answer = await send(service.url, "/v1/set_node_state", msgpack.packb({"node_id": "ghost", "state": "retired"}))
    assert answer.status == 404 and answer.json()["error"] == "NoSuchNode"
    user = {"name": "alice", "access_key": "AKIAALICE", "secret_key": "s" * 40, "created": 1.0}
    assert (await send(service.url, "/v1/create_user", msgpack.packb({"rec": user}))).status == 200
    answer = await send(service.url, "/v1/create_user", msgpack.packb({"rec": user | {"secret_key": "other"}}))
    assert answer.status == 409 and answer.json()["error"] == "UserExists"
    assert [u.secret_key for u in await service.local.list_users()] == ["s" * 40]
    answer = await send(service.url, "/v1/set_node_state", msgpack.packb({"node_id": "ghost", "state": "gone"}))
    assert answer.status == 400 and answer.json()["error"] == "InvalidArgument"


async def test_refused_arguments_are_value_errors(service: Service, remote: RemoteIndex) -> None:
    with pytest.raises(ValueError):
        await remote.create_bucket(BucketRecord("x" * 600, "o", 1.0))  # past LMDB's key limit
    with pytest.raises(ValueError):
        await remote.get_upload("")
    name = await new_bucket(remote)
    up = make_upload(name, "k")
    await remote.create_upload(up)
    with pytest.raises(ValueError):
        await remote.put_part(up.upload_id, make_part(1 << 32))
    part = make_part(1)
    await remote.put_part(up.upload_id, part)
    with pytest.raises(ValueError):  # an upload completed as another key
        await remote.complete_upload(up.upload_id, make_manifest(name, "other", parts=[part]))
    assert (await remote.list_parts(up.upload_id)).parts == [part]
    assert [b.name for b in await service.local.list_buckets()] == [name]


async def test_unknown_operations_methods_and_paths(service: Service) -> None:
    answer = await send(service.url, "/v1/drop_everything", msgpack.packb({}))
    assert answer.status == 404 and answer.json()["error"] == "NotFound"
    answer = await send(service.url, "/v1/list_buckets", b"", method="GET")
    assert answer.status == 405 and answer.json()["error"] == "MethodNotAllowed"
    answer = await send(service.url, "/elsewhere", b"", header=None, method="GET")
    assert answer.status == 404 and answer.json()["error"] == "NotFound"
    answer = await send(service.url, "/health/live", b"", header=None)  # POST
    assert answer.status in (404, 405) and answer.json()["error"]


async def test_body_too_large(service: Service) -> None:
    body = b"\x00" * (protocol.MAX_BODY + 1)
    answer = await send(service.url, "/v1/create_bucket", body)
    assert answer.status == 413 and answer.json()["error"] == "TooLarge"


async def test_health(service: Service) -> None:
    for path, status in (("/health/live", "ok"), ("/health/ready", "ready")):
        answer = await send(service.url, path, b"", header=None, method="GET")
        assert answer.status == 200 and answer.json()["status"] == status
    await service.local.close()  # the index stops answering; the process still does
    answer = await send(service.url, "/health/ready", b"", header=None, method="GET")
    assert answer.status == 503 and answer.json()["status"] == "unavailable"
    assert (await send(service.url, "/health/live", b"", header=None, method="GET")).status == 200


async def test_metrics_by_operation_and_outcome(service: Service, remote: RemoteIndex) -> None:
    name = await new_bucket(remote)
    with pytest.raises(Exception):  # noqa: B017 - BucketAlreadyExists; the metric is what matters
        await remote.create_bucket(BucketRecord(name, "o", 1.0))
    await send(service.url, "/v1/get_bucket", msgpack.packb({"name": name}), header=None)
    answer = await send(service.url, "/metrics", b"", header=None, method="GET")
    assert answer.status == 200
    text = answer.body.decode()
    assert 'tessera_meta_requests_total{operation="create_bucket",status="200"} 1.0' in text
    assert 'tessera_meta_requests_total{operation="create_bucket",status="409"} 1.0' in text
    assert 'tessera_meta_errors_total{error="BucketAlreadyExists",operation="create_bucket"} 1.0' in text
    assert 'tessera_meta_requests_total{operation="get_bucket",status="403"} 1.0' in text
    assert 'tessera_meta_errors_total{error="Forbidden",operation="get_bucket"} 1.0' in text
    assert 'tessera_meta_request_duration_seconds_count{operation="create_bucket"} 2.0' in text
    assert 'tessera_meta_request_duration_seconds_bucket{le="0.005",operation="create_bucket"' in text


async def test_one_access_log_line_per_request(
    service: Service, remote: RemoteIndex, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="metadata.remote.service"):
        name = await new_bucket(remote)
        await remote.get_bucket(name)
        await send(service.url, "/v1/list_buckets", b"", header=None)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "metadata.remote.service"]
    assert [(ln["operation"], ln["status"], ln.get("error")) for ln in lines] == [
        ("create_bucket", 200, None),
        ("get_bucket", 200, None),
        ("list_buckets", 403, "Forbidden"),
    ]
    assert all(ln["duration_ms"] >= 0 and ln["peer"] == "127.0.0.1" for ln in lines)


async def test_a_manifest_of_10000_parts(remote: RemoteIndex) -> None:
    """The largest manifest S3 allows crosses the wire both ways (a few MB of msgpack)."""
    name = await new_bucket(remote)
    parts = [make_part(n) for n in range(1, 10_001)]
    man = make_manifest(name, "big", parts=parts)
    assert await remote.put_object(man) is None
    assert await remote.get_object(name, "big") == man


async def test_closed_client_refuses_calls(service: Service) -> None:
    idx = RemoteIndex(service.url, SECRET)
    await idx.list_buckets()
    await idx.close()
    await idx.close()  # idempotent
    with pytest.raises(RuntimeError):
        await idx.list_buckets()


# -- failures between client and service


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_service(remote: RemoteIndex) -> None:
    idx = RemoteIndex(f"http://127.0.0.1:{closed_port()}", SECRET, timeout=5.0)
    try:
        for call in (idx.list_buckets, lambda: idx.create_bucket(BucketRecord("b", "o", 1.0))):
            start = time.monotonic()
            with pytest.raises(IndexUnavailable):
                await call()
            assert time.monotonic() - start < 3.0  # refused connections fail fast, even retried
    finally:
        await idx.close()


async def raw_server(on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> Any:
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_reads_are_retried_on_broken_connections_writes_are_not() -> None:
    """A peer that reads the request and hangs up: the write may have been applied, so only reads repeat."""
    connections = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(1024)
        writer.close()

    server, url = await raw_server(hang_up)
    idx = RemoteIndex(url, SECRET, timeout=5.0, attempts=3)
    try:
        with pytest.raises(IndexUnavailable):
            await idx.get_bucket("b")
        assert connections == 3
        connections = 0
        with pytest.raises(IndexUnavailable):
            await idx.put_object(make_manifest("b", "k"))
        assert connections == 1
    finally:
        await idx.close()
        server.close()
        await server.wait_closed()


async def test_timeout_bounds_a_call() -> None:
    done = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        await done.wait()
        writer.close()

    server, url = await raw_server(never_answer)
    idx = RemoteIndex(url, SECRET, timeout=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(IndexUnavailable):
            await idx.list_nodes()
        assert 0.4 < time.monotonic() - start < 2.0
    finally:
        await idx.close()
        done.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # the handler closes its side


async def test_reads_ride_out_a_restarting_service(service: Service) -> None:
    """A balancer in front answers 503 twice (a replica restarting): reads retry and succeed, writes do not."""
    failures = 0
    await service.local.create_bucket(BucketRecord("b1", "o", 1.0))

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal failures
        if failures < 2:
            failures += 1
            return web.Response(status=503, text="restarting")
        headers = {auth.HEADER: request.headers[auth.HEADER]}
        async with (
            aiohttp.ClientSession() as s,
            s.post(service.url + request.path_qs, data=await request.read(), headers=headers) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)

    app = web.Application()
    app.router.add_post("/{tail:.*}", flaky)
    runner, url = await serve(app)
    idx = RemoteIndex(url, SECRET, timeout=5.0)
    try:
        assert [b.name for b in await idx.list_buckets()] == ["b1"]
        assert failures == 2
        failures = 0
        with pytest.raises(IndexUnavailable):
            await idx.upsert_node(make_node("n1", ["d1"]))
        assert failures == 1
        assert await service.local.list_nodes() == []
    finally:
        await idx.close()
        await runner.cleanup()


def test_empty_tags_stay_off_the_wire() -> None:
    """A service from before tags (strict about fields) still takes records that have none."""
    man = make_manifest("b", "k")
    assert "tags" not in protocol.dump(man) and "tags" not in protocol.dump(make_upload("b", "k"))
    man.tags = {"a": "b"}
    assert protocol.dump(man)["tags"] == {"a": "b"}
    assert protocol.load(type(man), protocol.dump(man)) == man
