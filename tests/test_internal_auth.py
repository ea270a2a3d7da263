"""Internal requests are signed over their bytes and cannot be replayed (cluster/auth.py).

A real `tessera node` and `tessera meta` (tests/meta_node.py), and the replica protocol of in-process
replicas on loopback ports. Requests are captured on the wire by a loopback proxy between our own
clients and the service, then sent again byte for byte (or with bytes changed): every replay is
refused and changes nothing. Our own client's retries, each signed anew, still go through.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import boto3
import msgpack
import pytest
from awscrt.checksums import crc32c
from yarl import URL

from cli.dev import DevCluster
from cluster import auth
from cluster.client import CA_ENV, trust_cluster_ca
from metadata.index import IndexUnavailable
from metadata.records import BucketRecord
from metadata.remote import protocol as meta_protocol
from metadata.remote.client import RemoteIndex
from metadata.replica import protocol as rp
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from storage_node import protocol
from storage_node.client import RemoteDrive, fetch_node_drives
from storage_node.drive import DriveUnavailable
from storage_node.drive_dir import TMP
from tests.drive_contract import collect, make_chunks, new_fid, stream
from tests.index_records import make_manifest
from tests.meta_node import MetaAndNode, meta_and_node
from tests.replicas import SECRET as REPLICA_SECRET
from tests.replicas import Replicas


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaAndNode]:
    with meta_and_node(tmp_path_factory.mktemp("internal-auth"), 1, ["--scrub-interval", "0"]) as c:
        yield c


class Proxy:
    """A loopback TCP proxy that records what each client connection sent. With cut_next > 0, that
    many of the next connections are forwarded to the service but cut as its answer starts: the
    service has done the request, the client never hears so (and retries, if it may)."""

    def __init__(self, target: str) -> None:
        url = URL(target)
        self._host, self._port = url.host or "127.0.0.1", url.port or 80
        self.sent: list[bytearray] = []
        self.cut_next = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        record = bytearray()
        self.sent.append(record)
        cut = self.cut_next > 0
        self.cut_next -= int(cut)
        server_r, server_w = await asyncio.open_connection(self._host, self._port)

        async def up() -> None:
            while data := await client_r.read(1 << 16):
                record.extend(data)
                server_w.write(data)
                await server_w.drain()

        task = asyncio.ensure_future(up())
        self._tasks.add(task)
        try:
            while data := await server_r.read(1 << 16):
                if cut:
                    break
                client_w.write(data)
                await client_w.drain()
        except ConnectionError:
            pass
        finally:
            task.cancel()
            self._tasks.discard(task)
            client_w.transport.abort()
            server_w.transport.abort()


async def send_raw(endpoint: str, data: bytes) -> int:
    """`data` sent as is on a new connection: the status of the (first) answer."""
    url = URL(endpoint)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.transport.abort()
    return int(line.split(b" ", 2)[1])


def tmp_files(drive: Path) -> list[str]:
    tmp = drive / TMP
    return os.listdir(tmp) if tmp.exists() else []


async def drive_of(cluster: MetaAndNode) -> RemoteDrive:
    (info,) = await fetch_node_drives(cluster.node.endpoint, cluster.secret)
    return RemoteDrive(cluster.node.endpoint, info.id, cluster.secret)


def tamper(data: bytes | bytearray, payload: bytes) -> bytes:
    """`data` with one byte of `payload` changed where it is framed, its crc32c made right again:
    the frame structure kept, as an attacker who knows the format would."""
    out = bytearray(data)
    at = out.find(payload)
    assert at > 0
    changed = bytearray(payload)
    changed[len(changed) // 2] ^= 0xFF
    out[at : at + len(payload)] = changed
    out[at + len(payload) : at + len(payload) + 4] = crc32c(bytes(changed)).to_bytes(4, "big")
    return bytes(out)


# -- fragment puts ---------------------------------------------------------------------------------


async def test_captured_fragment_put_replayed_is_refused(cluster: MetaAndNode) -> None:
    local = await drive_of(cluster)
    fid, chunks = new_fid(), make_chunks(3, 64 << 10, seed=7)
    try:
        async with Proxy(cluster.node.endpoint) as proxy:
            spied = RemoteDrive(proxy.url, local.drive_id, cluster.secret)
            try:
                await spied.put(fid, stream(chunks))
            finally:
                await spied.close()
        (captured,) = proxy.sent
        assert chunks[1] in captured
        # Verbatim, and with other bytes in one frame (the frame structure and crc kept): refused.
        assert await send_raw(cluster.node.endpoint, bytes(captured)) == 403
        assert await send_raw(cluster.node.endpoint, tamper(captured, chunks[1])) == 403
        assert await collect(local.get(fid)) == chunks
        assert tmp_files(cluster.drives[0]) == []
    finally:
        await local.close()


async def test_fragment_put_with_a_frame_changed_in_flight_is_refused(cluster: MetaAndNode) -> None:
    """A fresh signature (never used) over a stream whose frame was changed on the way: the frame's
    MAC does not check, the upload is dropped before it commits, nothing is left on disk."""
    local = await drive_of(cluster)
    fid, old = new_fid(), make_chunks(2, 1000, seed=1)
    await local.put(fid, stream(old))
    path = protocol.fragment_path(local.drive_id, fid.name)
    new = make_chunks(4, 64 << 10, seed=2)
    try:
        for damage in ("frame", "end", "dropped"):
            header = auth.sign(cluster.secret, "PUT", path, None)
            encoder = protocol.FrameEncoder(
                flush_bytes=0, chain=auth.FrameChain(cluster.secret, auth.signature_of(header))
            )
            framed = [encoder.chunk(c) or b"" for c in new]
            end = encoder.end()
            if damage == "frame":
                body = tamper(b"".join(framed) + end, new[2])
            elif damage == "end":
                body = b"".join(framed) + end[:-1] + bytes([end[-1] ^ 1])
            else:
                body = b"".join(framed[:1] + framed[2:]) + end
            async with (
                aiohttp.ClientSession() as session,
                session.put(
                    URL(cluster.node.endpoint + path, encoded=True), data=body, headers={auth.HEADER: header}
                ) as r,
            ):
                assert r.status == 403, damage
                assert (await r.json())["error"] == "forbidden"
        assert await collect(local.get(fid)) == old
        assert tmp_files(cluster.drives[0]) == []
    finally:
        await local.close()


# -- the metadata service --------------------------------------------------------------------------


async def test_captured_delete_object_replayed_after_a_rewrite_is_refused(cluster: MetaAndNode) -> None:
    index = RemoteIndex(cluster.meta.endpoint, cluster.secret)
    bucket = f"b-{os.urandom(4).hex()}"
    try:
        await index.create_bucket(BucketRecord(bucket, "AKIAOWNER", 1.0))
        await index.put_object(make_manifest(bucket, "k"))
        async with Proxy(cluster.meta.endpoint) as proxy:
            spied = RemoteIndex(proxy.url, cluster.secret)
            try:
                await spied.delete_object(bucket, "k")
            finally:
                await spied.close()
        (captured,) = proxy.sent
        assert await index.get_object(bucket, "k") is None
        rewritten = make_manifest(bucket, "k")
        await index.put_object(rewritten)
        assert await send_raw(cluster.meta.endpoint, bytes(captured)) == 403
        assert await index.get_object(bucket, "k") == rewritten
    finally:
        await index.close()


async def test_reads_retried_by_our_client_are_signed_anew(cluster: MetaAndNode) -> None:
    """The first attempt reaches the service (which remembers its nonce) but its answer is cut:
    the retry goes through only because it is a new request, with a new nonce and signature."""
    index = RemoteIndex(cluster.meta.endpoint, cluster.secret)
    bucket = f"r-{os.urandom(4).hex()}"
    try:
        record = BucketRecord(bucket, "AKIAOWNER", 1.0)
        await index.create_bucket(record)
        async with Proxy(cluster.meta.endpoint) as proxy:
            spied = RemoteIndex(proxy.url, cluster.secret)
            try:
                proxy.cut_next = 2
                assert await spied.get_bucket(bucket) == record
            finally:
                await spied.close()
        assert len(proxy.sent) == 3
        headers = [_auth_header(sent) for sent in proxy.sent]
        assert len(set(headers)) == 3  # three attempts, three signatures
    finally:
        await index.close()


def _auth_header(request: bytes) -> bytes:
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == auth.HEADER.lower().encode():
            return bytes(value.strip())
    raise AssertionError("no signature header")


async def test_metadata_call_replayed_verbatim_is_refused(cluster: MetaAndNode) -> None:
    op = meta_protocol.OPERATIONS["create_bucket"]
    bucket = f"c-{os.urandom(4).hex()}"
    body = meta_protocol.encode_request(op, {"rec": BucketRecord(bucket, "AKIAOWNER", 1.0)})
    header = auth.sign(cluster.secret, "POST", op.path, body)
    headers = {auth.HEADER: header, "Content-Type": meta_protocol.MSGPACK}
    url = cluster.meta.endpoint + op.path
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as first:
            assert first.status == 200
        async with session.post(url, data=body, headers=headers) as again:
            assert again.status == 403
            assert "replay" in (await again.json())["message"]


# -- the replica protocol --------------------------------------------------------------------------


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    r = Replicas(tmp_path)
    await r.start()
    try:
        yield r
    finally:
        await r.close()


async def test_replica_write_replayed_is_refused(replicas: Replicas) -> None:
    replica = replicas.members[0]
    assert replica.store is not None
    key = b"replayed-key"
    first = rp.writes_out([Write("buckets", key, Entry(1, False, b"first"))])
    body = msgpack.packb({"writes": first}, use_bin_type=True)
    path = "/r1/put"
    headers = {auth.HEADER: auth.sign(REPLICA_SECRET, "POST", path, body), "Content-Type": "application/msgpack"}
    async with aiohttp.ClientSession() as session:
        async with session.post(replica.url + path, data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        # A tombstone written since (as a newer delete would), then the old write replayed.
        await replica.store.put([Write("buckets", key, Entry(2, True, b""))])
        async with session.post(replica.url + path, data=body, headers=headers) as r:
            assert r.status == 403
    assert await replica.store.get("buckets", [key]) == [Entry(2, True, b"")]


async def test_the_previous_secret_is_accepted_during_a_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation: services that accept TESSERA_CLUSTER_SECRET_PREVIOUS take requests signed with the old
    secret (and chain a streamed body under it) until it is unset; any other secret stays refused."""
    old = b"the-old-cluster-secret-being-rotated"
    monkeypatch.setenv(auth.PREVIOUS_ENV, old.decode())
    rotating = Replicas(tmp_path)
    await rotating.start()
    try:
        replica = rotating.members[0]
        body = msgpack.packb({"table": "buckets", "keys": [b"k"]}, use_bin_type=True)
        path = "/r1/get"
        async with aiohttp.ClientSession() as session:
            for secret, status in [(old, 200), (REPLICA_SECRET, 200), (b"some-other-secret-of-16+", 403)]:
                headers = {auth.HEADER: auth.sign(secret, "POST", path, body)}
                async with session.post(replica.url + path, data=body, headers=headers) as r:
                    assert r.status == status, (secret, await r.text())
    finally:
        await rotating.close()
    signed = auth.verify(old, "GET", "/x", auth.sign(old, "GET", "/x", b""), previous=REPLICA_SECRET)
    assert signed.secret == old
    signed = auth.verify(REPLICA_SECRET, "GET", "/x", auth.sign(old, "GET", "/x", b""), previous=old)
    assert signed.secret == old  # the frames of a streamed body are checked under the secret that signed it


# -- the verifier's memory -------------------------------------------------------------------------


def test_nonce_memory_is_bounded_and_forgets_expired_signatures() -> None:
    seen = auth.NonceCache(limit=2)
    now = 1_000_000.0
    a, b, c = (auth.Signed(int(now), n * 32, auth.STREAMING, "s", b"") for n in "abc")
    seen.admit(a, now)
    with pytest.raises(auth.ClusterAuthError, match="replay"):
        seen.admit(a, now)
    seen.admit(b, now)
    with pytest.raises(auth.ClusterAuthError, match="too many"):
        seen.admit(c, now)  # full: refused rather than forgetting a nonce still valid
    later = now + auth.MAX_SKEW + 2  # a and b have expired: their signatures would be refused anyway
    seen.admit(c, later)
    assert len(seen) == 1


# -- TLS between services --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    env = {k: v for k, v in os.environ.items() if k != CA_ENV}
    cluster = DevCluster(tmp_path_factory.mktemp("tls"), nodes=3, metas=3, gateways=1, ec="2+1", tls=True, env=env)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_services_speak_tls_to_each_other(tls_cluster: DevCluster) -> None:
    for name, svc in tls_cluster.services.items():
        assert svc.endpoint.startswith("http://" if name.startswith("gateway") else "https://"), name
    s3 = boto3.client(
        "s3",
        endpoint_url=tls_cluster.endpoint(),
        aws_access_key_id=tls_cluster.env["TESSERA_ACCESS_KEY"],
        aws_secret_access_key=tls_cluster.env["TESSERA_SECRET_KEY"],
        region_name="us-east-1",
    )
    body = os.urandom(3 << 20)
    s3.create_bucket(Bucket="tls")
    s3.put_object(Bucket="tls", Key="k", Body=body)
    assert s3.get_object(Bucket="tls", Key="k")["Body"].read() == body


async def test_a_client_without_the_cluster_ca_is_refused(tls_cluster: DevCluster) -> None:
    secret = tls_cluster.env["TESSERA_CLUSTER_SECRET"].encode()
    meta = tls_cluster.services["meta1"].endpoint
    node = tls_cluster.services["node1"].endpoint
    stranger = RemoteIndex(meta, secret, attempts=1)  # this process trusts only the system's CAs
    try:
        with pytest.raises(IndexUnavailable, match=r"(?i)certificate"):
            await stranger.list_buckets()
    finally:
        await stranger.close()
    with pytest.raises(DriveUnavailable, match=r"(?i)certificate"):
        await fetch_node_drives(node, secret)
    trust_cluster_ca(tls_cluster.env[CA_ENV])
    try:
        trusting = RemoteIndex(meta, secret)
        try:
            assert "tls" in [b.name for b in await trusting.list_buckets()]
        finally:
            await trusting.close()
    finally:
        trust_cluster_ca(None)
