"""Authentication is judged on the route the router resolved, not on the text of the path.

The router matches the percent-decoded path, so a check on the raw path's prefix let `/%761/drives`
(which routes to /v1/drives) through unsigned. Here unsigned requests in every spelling we could
think of go to a real `tessera node` and a real `tessera meta` (and to the replica protocol of an
in-process replica on a loopback port), sent byte for byte with a raw socket: each is refused
(403/404/405, never a 2xx) and nothing they aimed at changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgpack
import pytest
from aiohttp import web

from cluster.service import ClusterAuthenticator, Errors, make_service_app
from metadata.records import BucketRecord
from metadata.remote.client import RemoteIndex
from metadata.replica import protocol as rp
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from storage_node import protocol
from storage_node.client import NodeClient, RemoteDrive, fetch_node_drives
from storage_node.drive import FragmentId
from tests.meta_node import MetaAndNode as Cluster
from tests.meta_node import meta_and_node
from tests.replicas import Replicas

REFUSED = (403, 404, 405)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with meta_and_node(tmp_path_factory.mktemp("route-auth"), 1, ["--scrub-interval", "0"]) as c:
        yield c


async def raw(endpoint: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """One unsigned request, its target sent exactly as given (no client normalizes or re-encodes it)."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)  # to the end: the server closes
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer


def spellings(path: str) -> list[str]:
    """`path` (starting /v1/ or /r1/) as a client might smuggle it past a check on the path's text."""
    rest = path[4:]
    api = path[1:3]  # "v1" or "r1"
    first = api[0]
    out = [
        path,
        f"/%{ord(first):02x}1/{rest}",  # /%761/...
        f"/{first}%31/{rest}",  # /v%31/...
        f"/%{ord(first):02X}%31/{rest}",  # /%76%31/...
        f"/%{ord(first):02x}1/" + "".join(f"%{b:02X}" for b in rest.encode()),  # everything encoded
        f"/%25{ord(first):02x}1/{rest}",  # encoded twice
        f"//{api}/{rest}",
        f"/{api}//{rest}",
        f"/{api}/../{api}/{rest}",
        f"/{api}/./{rest}",
        f"/x/../{api}/{rest}",
        f"/{api}%2F{rest}",
        f"/%2F{api}/{rest}",
        f"/{api.upper()}/{rest}",
        f"/{api}/{rest}/",
        f"/{api}/{rest}?x=1",
        f"/{api}/{rest}#frag",
        f"http://127.0.0.1/{api}/{rest}",  # absolute-form
    ]
    return out


async def test_node_refuses_every_spelling_of_its_api(cluster: Cluster) -> None:
    endpoint = cluster.node.endpoint
    (served,) = await fetch_node_drives(endpoint, cluster.secret)
    drive = RemoteDrive(endpoint, served.id, cluster.secret)
    node = NodeClient(endpoint, cluster.secret)
    fid = FragmentId(os.urandom(16).hex(), 0, 1)
    try:
        kept = await drive.put(fid, _stream([b"kept" * 100] * 3))
        scrub_before = await node.scrub_status()
        fragment = protocol.fragment_path(served.id, fid.name)
        new_fragment = protocol.fragment_path(served.id, FragmentId(os.urandom(16).hex(), 0, 2).name)
        body = b"".join(b"".join(protocol.chunk_frame_parts(b"intruder")) for _ in range(2)) + protocol.END_FRAME
        attempts = [
            *(("GET", t) for t in spellings(protocol.drives_path())),
            *(("GET", t) for t in spellings(protocol.fragments_path(served.id))),
            *(("GET", t) for t in spellings(fragment)),
            *(("GET", t) for t in spellings(fragment + "/stat")),
            *(("GET", t) for t in spellings(protocol.scrub_path())),
            *(("DELETE", t) for t in spellings(fragment)),
            *(("POST", t) for t in spellings(fragment + "/verify")),
            *(("POST", t) for t in spellings(protocol.scrub_path())),
            *(("HEAD", t) for t in spellings(fragment)),
            *(("PATCH", t) for t in spellings(fragment)),
            ("GET", "/v1/nowhere"),
            ("GET", "/%761/nowhere"),
        ]
        for method, target in attempts:
            status, answer = await raw(endpoint, method, target)
            assert status in REFUSED, (method, target, answer[:300])
            assert fid.name.encode() not in answer and served.path.encode() not in answer, (method, target)
        for target in spellings(fragment) + spellings(new_fragment):
            status, answer = await raw(endpoint, "PUT", target, body)
            assert status in REFUSED, ("PUT", target, answer[:300])
        # Nothing changed: the fragment is there, whole; no other appeared; no scrub pass started.
        assert await drive.stat(fid) == kept
        assert [info.fid async for info in drive.list()] == [fid]
        assert [c async for c in drive.get(fid)] == [b"kept" * 100] * 3
        after = await node.scrub_status()
        assert (after.passes, after.started, after.running) == (scrub_before.passes, scrub_before.started, False)
    finally:
        await drive.close()
        await node.close()


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


async def test_metadata_service_refuses_every_spelling_of_its_api(cluster: Cluster) -> None:
    endpoint = cluster.meta.endpoint
    index = RemoteIndex(endpoint, cluster.secret)
    try:
        name = f"kept-{os.urandom(4).hex()}"
        await index.create_bucket(BucketRecord(name, "AKIAOWNER", 1.0))
        before = await index.list_buckets()
        rec = {"name": "intruder", "owner": "AKIAINTRUDER", "created": 1.0, "region": "us-east-1"}
        calls = [
            ("/v1/create_bucket", msgpack.packb({"rec": rec})),
            ("/v1/delete_bucket", msgpack.packb({"name": name})),
            ("/v1/list_buckets", msgpack.packb({})),
            ("/v1/create_user", msgpack.packb({"rec": {"name": "x", "access_key": "AKIAX", "secret_key": "s" * 40}})),
        ]
        for path, body in calls:
            for target in spellings(path):
                for method in ("POST", "GET", "PUT", "DELETE"):
                    status, answer = await raw(endpoint, method, target, body)
                    assert status in REFUSED, (method, target, answer[:300])
                    assert name.encode() not in answer, (method, target)
        assert await index.list_buckets() == before
        assert await index.list_users() == []
    finally:
        await index.close()


async def test_replica_protocol_refuses_every_spelling(tmp_path: Path) -> None:
    replicas = Replicas(tmp_path)
    await replicas.start()
    try:
        await _replica_refuses_every_spelling(replicas)
    finally:
        await replicas.close()


async def _replica_refuses_every_spelling(replicas: Replicas) -> None:
    replica = replicas.members[0]
    assert replica.store is not None
    key = b"kept-key"
    await replica.store.put([Write("buckets", key, Entry(1, False, b"kept"))])
    writes = rp.writes_out([Write("buckets", key, Entry(1 << 60, False, b"intruder"))])
    calls = [
        ("/r1/put", msgpack.packb({"writes": writes}, use_bin_type=True)),
        ("/r1/get", msgpack.packb({"table": "buckets", "keys": [key]}, use_bin_type=True)),
        ("/r1/pull", msgpack.packb({"table": "buckets", "start": b"", "end": None, "limit": 10}, use_bin_type=True)),
        ("/r1/status", msgpack.packb({})),
    ]
    for path, body in calls:
        for target in spellings(path):
            status, answer = await raw(replica.url, "POST", target, body)
            assert status in REFUSED, (target, answer[:300])
            assert b"kept" not in answer.split(b"\r\n\r\n", 1)[1], target
    assert await replica.store.get("buckets", [key]) == [Entry(1, False, b"kept")]


async def test_routes_added_behind_the_skeletons_back_are_authenticated() -> None:
    """Only routes registered as open skip the signature: a route added straight to the router does not."""
    errors = Errors(forbidden="forbidden", internal="internal", http_kinds={404: "not_found"})
    app = make_service_app(
        namespace="tessera_test",
        log=logging.getLogger("test"),
        errors=errors,
        authenticate=ClusterAuthenticator(b"s" * 20, max_body=1024),
    )
    ran: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        ran.append(request.path)
        return web.json_response({"secret": "data"})

    app.router.add_get("/plain", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for target in ("/plain", "/%70lain", "/nowhere", "/health/../plain"):
            status, _ = await raw(endpoint, "GET", target)
            assert status in REFUSED, target
        assert (await raw(endpoint, "GET", "/health/live"))[0] == 200  # open: registered as such
        assert ran == []
    finally:
        await runner.cleanup()
