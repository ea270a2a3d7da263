"""The hostile corpus against a real `tessera dev` cluster: 3 metadata replicas, 3 storage nodes, 1 gateway.

Through the gateway, the S3 corpus of tests/hostile_corpus.py (and test_front_door.py's malformed HTTP);
against every metadata service and storage node, unsigned and re-signed internal requests in every spelling
of test_route_auth.py. Every request is refused with S3's (or the service's) error, never a 5xx, and after
each one the cluster's state (buckets, listings with ETags, uploads and parts, users, and for internal
requests every node's fragments) is what it was. At the end no log of any service holds a traceback or
an access-log line with a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import msgpack
import pytest

from cli.dev import DevCluster
from cluster import auth
from metadata.remote.client import RemoteIndex
from metadata.replica import protocol as rp
from metadata.replica.merge import Entry
from metadata.replica.protocol import Write
from storage_node import protocol
from storage_node.client import RemoteDrive, fetch_node_drives
from tests.hostile_corpus import (
    COMPLETE_PART_NUMBERS,
    CONTENT_LENGTHS,
    COPY_SOURCE_RANGES,
    DELETE_TAILS,
    FOREIGN_CONSTRAINTS,
    HEADER_NUMBERS,
    NS,
    ODD_KEYS,
    OVERRIDE_PARAMS,
    QUERY_NUMBER_TARGETS,
    QUERY_NUMBER_VALUES,
    UTF8_ONLY_HEADERS,
    assert_error,
    complete_body,
    delete_body,
    location_body,
    signed_utf8,
)
from tests.s3_helpers import RawResponse, md5_b64, send, sign, signed_request
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess
from tests.test_front_door import MALFORMED
from tests.test_route_auth import REFUSED, raw, spellings
from tests.test_users import ADMIN, add_user, admin, user_client

BODY = bytes(range(256)) * 4096  # 1 MiB: stored as fragments on the nodes, not inlined in its manifest


@dataclass
class World:
    """The cluster, its gateway seen as a server for the request helpers, and what the corpus aims at."""

    cluster: DevCluster
    gw: ServerProcess
    s3: Any
    alice: Any
    bob: Any
    bucket: str  # the root's: "a", "obj", an upload of "mp" with one part
    upload: str
    etag: str
    alice_bucket: str  # alice's: "doc", an upload of "doc" with one part
    alice_upload: str
    alice_etag: str
    odd_bucket: str  # every ODD_KEYS key as an object and an upload
    logs: dict[str, int] = field(default_factory=dict)  # each service's log length before the run
    state: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """What S3 and the admin API show: buckets, objects with ETags, uploads with parts, users."""
        out: dict[str, Any] = {"buckets": sorted(b["Name"] for b in self.s3.list_buckets()["Buckets"])}
        for name in out["buckets"]:
            objects = self.s3.list_objects_v2(Bucket=name).get("Contents", [])
            uploads = self.uploads(name)
            parts = {upload: self.parts(name, key, upload) for key, upload in uploads}
            out[name] = {
                "objects": [(o["Key"], o["ETag"], o["Size"]) for o in objects],
                "uploads": uploads,
                "parts": parts,
            }
        users = admin(self.gw.endpoint, "GET", "users")
        assert users.status == 200, users.body
        out["users"] = users.json()
        return out

    def uploads(self, bucket: str) -> list[tuple[str, str]]:
        """(key, upload id) of a bucket's uploads, the keys url-decoded when the page says it encoded them."""
        resp = signed_request(self.gw, "GET", f"/{bucket}?uploads")
        assert resp.status == 200, (bucket, resp.status, resp.body)
        doc = ET.fromstring(resp.body)
        decode = unquote if doc.findtext(NS + "EncodingType") == "url" else str
        found = doc.findall(NS + "Upload")
        return [(decode(u.findtext(NS + "Key") or ""), u.findtext(NS + "UploadId") or "") for u in found]

    def parts(self, bucket: str, key: str, upload: str) -> list[tuple[str | None, ...]]:
        """An upload's parts, asked for by hand: botocore cannot put every key S3 allows in a URL."""
        resp = signed_request(self.gw, "GET", f"/{bucket}/{quote(key, safe='')}?uploadId={upload}")
        assert resp.status == 200, (key, resp.status, resp.body)
        found = ET.fromstring(resp.body).findall(NS + "Part")
        return [tuple(p.findtext(NS + tag) for tag in ("PartNumber", "ETag", "Size")) for p in found]

    def unchanged(self, what: object) -> None:
        assert self.snapshot() == self.state["s3"], what

    def refused(self, resp: RawResponse, status: int, code: str | None, what: object) -> None:
        """`resp` is the S3 error expected (code None: any S3 error document), and nothing changed."""
        assert resp.status < 500, (what, resp.status, resp.body[:500])
        if code is None:
            assert resp.status == status and resp.error()["Code"], (what, resp.status, resp.body[:500])
        else:
            assert_error(resp, code, status)
        self.unchanged(what)


def log_paths(c: DevCluster) -> dict[str, Path]:
    return {name: svc.log for name, svc in c.services.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = {**os.environ, "TESSERA_ACCESS_KEY": ACCESS_KEY, "TESSERA_SECRET_KEY": SECRET_KEY}
    env |= {"TESSERA_LOG_LEVEL": "debug", "PYTHONUNBUFFERED": "1"}  # debug: an access-log line per request
    c = DevCluster(tmp_path_factory.mktemp("hostile-cluster"), nodes=3, metas=3, ec="2+1", env=env)
    c.node_args = ["--scrub-interval", "0"]
    c.start()
    try:
        gw_svc = c.services["gateway1"]
        gw = ServerProcess(gw_svc.proc, gw_svc.endpoint, [], c.data, gw_svc.log, env)  # type: ignore[arg-type]
        s3 = gw.client(retries={"mode": "standard", "max_attempts": 1})
        tag = uuid.uuid4().hex[:8]
        alice = user_client(gw.endpoint, add_user(gw.endpoint, "alice-" + tag))
        bob = user_client(gw.endpoint, add_user(gw.endpoint, "bob-" + tag))
        bucket, alice_bucket, odd_bucket = f"root-{tag}", f"alice-{tag}", f"odd-{tag}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a", Body=b"still here")
        s3.put_object(Bucket=bucket, Key="obj", Body=BODY)
        upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part one")["ETag"]
        alice.create_bucket(Bucket=alice_bucket)
        alice.put_object(Bucket=alice_bucket, Key="doc", Body=BODY)
        alice_upload = alice.create_multipart_upload(Bucket=alice_bucket, Key="doc")["UploadId"]
        ids = {"Bucket": alice_bucket, "Key": "doc", "UploadId": alice_upload}
        alice_etag = alice.upload_part(PartNumber=1, Body=b"alice's bytes", **ids)["ETag"]
        s3.create_bucket(Bucket=odd_bucket)
        for key in ODD_KEYS:
            s3.put_object(Bucket=odd_bucket, Key=key, Body=key.encode())
            s3.create_multipart_upload(Bucket=odd_bucket, Key=key)
        w = World(c, gw, s3, alice, bob, bucket, upload, etag, alice_bucket, alice_upload, alice_etag, odd_bucket)
        w.logs = {name: len(path.read_bytes()) for name, path in log_paths(c).items()}
        w.state["s3"] = w.snapshot()
        yield w
    finally:
        c.stop()


# -- 1: the S3 corpus through the gateway --------------------------------------------------------------------


def test_query_numbers(world: World) -> None:
    for method, target in QUERY_NUMBER_TARGETS:
        for value in QUERY_NUMBER_VALUES:
            path = target.format(bucket=world.bucket, id=world.upload, v=quote(value, safe=""))
            resp = signed_request(world.gw, method, path, b"a part" if method == "PUT" else b"")
            world.refused(resp, 400, "InvalidArgument", (method, path[:200]))
            assert resp.error()["ArgumentName"] in target


def test_numbers_in_bodies_and_headers(world: World) -> None:
    target = f"/{world.bucket}/mp?uploadId={world.upload}"
    for value in COMPLETE_PART_NUMBERS:
        resp = signed_request(world.gw, "POST", target, complete_body(value, world.etag))
        world.refused(resp, 400, "MalformedXML", ("PartNumber", value[:40]))
    for value in ["0", "10001", "99999999999"]:
        resp = signed_request(world.gw, "POST", target, complete_body(value, world.etag))
        world.refused(resp, 400, "InvalidPart", ("PartNumber", value))
    for value in HEADER_NUMBERS:
        body = complete_body("1", world.etag)
        resp = signed_utf8(world.gw, "POST", target, {"x-amz-mp-object-size": value}, body=body)
        world.refused(resp, 400, "InvalidRequest", ("x-amz-mp-object-size", value[:40]))
        headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": value}
        trailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        chunked = b"5\r\nhello\r\n0\r\n\r\n"
        resp = signed_utf8(world.gw, "PUT", f"/{world.bucket}/chunked", headers, body=chunked, payload_hash=trailer)
        world.refused(resp, 400, "InvalidArgument", ("x-amz-decoded-content-length", value[:40]))
    part2 = f"/{world.bucket}/mp?uploadId={world.upload}&partNumber=2"
    for value in COPY_SOURCE_RANGES:
        headers = {"x-amz-copy-source": f"/{world.bucket}/obj", "x-amz-copy-source-range": value}
        world.refused(signed_utf8(world.gw, "PUT", part2, headers), 400, "InvalidArgument", value[:40])


def billion_laughs(levels: int = 9) -> bytes:
    """An entity-expansion bomb: 10**levels copies of "lol" (expat refuses it past its amplification limit)."""
    decls = ['<!ENTITY l0 "lol">']
    decls += [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, levels + 1)]
    return f"<!DOCTYPE d [{''.join(decls)}]><Delete><Object><Key>&l{levels};</Key></Object></Delete>".encode()


LAUGHS = billion_laughs()
BAD_XML = [
    b"",
    b"not xml at all",
    b"<Delete><Object><Key>a</Key></Object>",  # cut short
    b"<Delete><Object><Key>a</Key></Object></Delete><Delete/>",  # two roots
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&e;</Key>'
    b"</Object></Delete>",
    LAUGHS,
    b"<Delete><Object><Key>a</Key></Object></Delete>\xff\xfe",
]


def test_bad_xml_and_half_valid_delete_objects(world: World) -> None:
    def post_delete(body: bytes) -> RawResponse:
        return signed_request(world.gw, "POST", f"/{world.bucket}?delete", body, {"Content-MD5": md5_b64(body)})

    for tail, name in DELETE_TAILS:
        world.refused(post_delete(delete_body(tail)), 400, "MalformedXML", name)
    for body in BAD_XML:
        world.refused(post_delete(body), 400, None, ("delete", body[:60]))
        target = f"/{world.bucket}/mp?uploadId={world.upload}"
        world.refused(signed_request(world.gw, "POST", target, body), 400, None, ("complete", body[:60]))
        if body:  # an empty CreateBucketConfiguration is none at all: the bucket would be made
            resp = signed_request(world.gw, "PUT", f"/loc-{uuid.uuid4().hex[:8]}", body)
            world.refused(resp, 400, None, ("create bucket", body[:60]))
    for constraint, code in FOREIGN_CONSTRAINTS:
        resp = signed_request(world.gw, "PUT", f"/loc-{uuid.uuid4().hex[:8]}", location_body(constraint))
        world.refused(resp, 400, code, constraint)


def test_another_users_upload_and_objects(world: World) -> None:
    bob, bucket = world.bob, world.alice_bucket
    ids = {"Bucket": bucket, "Key": "doc", "UploadId": world.alice_upload}
    parts = {"Parts": [{"PartNumber": 1, "ETag": world.alice_etag}]}
    attempts: list[tuple[Any, dict[str, Any]]] = [
        (bob.upload_part, {"PartNumber": 1, "Body": b"bob's bytes", **ids}),
        (bob.list_parts, ids),
        (bob.complete_multipart_upload, {"MultipartUpload": parts, **ids}),
        (bob.abort_multipart_upload, ids),
        (bob.put_object, {"Bucket": bucket, "Key": "doc", "Body": b"bob's"}),
        (bob.delete_object, {"Bucket": bucket, "Key": "doc"}),
        (bob.delete_bucket, {"Bucket": bucket}),
        (bob.get_object, {"Bucket": bucket, "Key": "doc"}),
        (bob.list_multipart_uploads, {"Bucket": bucket}),
        (bob.copy_object, {"Bucket": world.bucket, "Key": "stolen", "CopySource": f"{bucket}/doc"}),
    ]
    for call, kwargs in attempts:
        with pytest.raises(Exception) as err:
            call(**kwargs)
        answer = err.value.response  # type: ignore[attr-defined]
        assert (answer["Error"]["Code"], answer["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
        world.unchanged(call.__name__)
    # DeleteObjects is judged key by key, as in S3: 200, and AccessDenied for each key.
    answer = bob.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "doc"}]})
    assert [(e["Key"], e["Code"]) for e in answer.get("Errors", [])] == [("doc", "AccessDenied")]
    assert not answer.get("Deleted")
    world.unchanged("delete_objects")


def test_odd_keys(world: World) -> None:
    for key in ODD_KEYS:
        assert world.s3.get_object(Bucket=world.odd_bucket, Key=key)["Body"].read() == key.encode()
    for query in ("", "?list-type=2", "?delimiter=k", "?uploads"):
        resp = signed_request(world.gw, "GET", f"/{world.odd_bucket}{query}")
        assert resp.status == 200, resp.body
        assert re.search(rb"<EncodingType>url</EncodingType>", resp.body), query  # XML 1.0 cannot carry them raw
    missing = quote("gone\x01key")
    world.refused(signed_request(world.gw, "GET", f"/{world.odd_bucket}/{missing}"), 404, "NoSuchKey", missing)
    too_long = "k" * 1025
    world.refused(signed_request(world.gw, "PUT", f"/{world.bucket}/{too_long}", b"x"), 400, "KeyTooLongError", 1025)
    for param in OVERRIDE_PARAMS:
        value = quote("text/plain\r\nX-Injected: 1", safe="")
        resp = signed_request(world.gw, "GET", f"/{world.bucket}/a?{param}={value}")
        world.refused(resp, 400, "InvalidArgument", param)
        assert "X-Injected" not in resp.headers
    for header in UTF8_ONLY_HEADERS:
        signed = sign(world.gw, "PUT", f"/{world.bucket}/a", {"Content-Length": "1"}, hashlib.sha256(b"x").hexdigest())
        raw_headers: Any = {**{k: v.encode() for k, v in signed.headers.items()}, header: b"caf\xff"}
        resp = send(world.gw, "PUT", f"/{world.bucket}/a", raw_headers, b"x")
        world.refused(resp, 400, "InvalidArgument", header)


def test_bad_signatures(world: World) -> None:
    target, body = f"/{world.bucket}/a", b"overwritten"
    digest = hashlib.sha256(body).hexdigest()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("wrong secret", {"secret": "not-the-secret-0123456789abcdefghijklmno"}, 403, "SignatureDoesNotMatch"),
        ("unknown key", {"access_key": "AKIANOBODY0000000000"}, 403, "InvalidAccessKeyId"),
        ("skewed", {"when": datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)}, 403, "RequestTimeTooSkewed"),
    ]
    for name, options, status, code in cases:
        for method in ("PUT", "DELETE"):
            signed = sign(world.gw, method, target, {"Content-Length": str(len(body))}, digest, **options)
            world.refused(send(world.gw, method, target, signed.headers, body), status, code, (name, method))
    signed = sign(world.gw, "PUT", target, {"Content-Length": str(len(body))}, digest)
    tampered = b"Overwritten"  # the same length, another hash than the signed one
    world.refused(send(world.gw, "PUT", target, signed.headers, tampered), 400, "XAmzContentSHA256Mismatch", "body")
    other = f"/{world.bucket}/obj"  # a valid signature for another key
    world.refused(send(world.gw, "PUT", other, signed.headers, body), 403, "SignatureDoesNotMatch", "path")
    world.refused(send(world.gw, "DELETE", target, {}), 403, "AccessDenied", "anonymous delete")
    world.refused(send(world.gw, "PUT", target, {}, body), 403, "AccessDenied", "anonymous put")
    for path, method in ((ADMIN + "users", "POST"), (ADMIN + "users/x", "DELETE")):
        signed = sign(world.gw, method, path, {}, secret="not-the-secret-0123456789abcdefghijklmno")
        world.refused(send(world.gw, method, path, signed.headers), 403, "SignatureDoesNotMatch", path)


def test_malformed_http(world: World) -> None:
    parts = urlsplit(world.gw.endpoint)
    corpus = {name: data for name, (data, _) in MALFORMED.items()}
    for value in CONTENT_LENGTHS:
        corpus[f"content-length {value[:20]}"] = (
            f"PUT /{world.bucket}/a HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nhello".encode()
        )
    corpus["unknown method on a key"] = f"BREW /{world.bucket}/a HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    corpus["expect 200 on a put"] = f"PUT /{world.bucket}/a HTTP/1.1\r\nHost: x\r\nExpect: 200\r\n".encode()
    corpus["expect 200 on a put"] += b"Content-Length: 5\r\n\r\nhello"
    expected = {name: status for name, (_, status) in MALFORMED.items()}
    for name, data in corpus.items():
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(data)
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            answer = RawResponse(resp.status, resp.headers, resp.read())
        world.refused(answer, expected.get(name, answer.status), None, name)
        assert 400 <= answer.status < 500, (name, answer.status)


# -- 2: every internal service, unsigned and re-signed --------------------------------------------------------


async def internal_state(c: DevCluster) -> dict[str, Any]:
    """Every node's fragments (name, size) and what each metadata service's index lists."""
    secret = c.env[auth.ENV].encode()
    out: dict[str, Any] = {}
    for name, svc in c.services.items():
        if name.startswith("node"):
            for served in await fetch_node_drives(svc.endpoint, secret):
                drive = RemoteDrive(svc.endpoint, served.id, secret)
                try:
                    out[f"{name}/{served.id}"] = sorted([(i.fid.name, i.size) async for i in drive.list()])
                finally:
                    await drive.close()
        elif name.startswith("meta"):
            index = RemoteIndex(svc.endpoint, secret)
            try:
                users = sorted(u.name for u in await index.list_users())
                out[name] = (sorted(b.name for b in await index.list_buckets()), users)
            finally:
                await index.close()
    return out


def send_signed(endpoint: str, method: str, target: str, header: str | None, body: bytes) -> tuple[int, bytes]:
    """One request with the given X-Tessera-Auth value, its target sent as given."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
        if header is not None:
            conn.putheader(auth.HEADER, header)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def meta_calls() -> list[tuple[str, bytes]]:
    rec = {"name": "intruder", "owner": "AKIAINTRUDER", "created": 1.0, "region": "us-east-1"}
    user = {"name": "intruder", "access_key": "AKIAINTRUDER", "secret_key": "s" * 40, "created": 1.0}
    writes = rp.writes_out([Write("buckets", b"intruder", Entry(1 << 60, False, b"intruder"))])
    return [
        ("/v1/create_bucket", msgpack.packb({"rec": rec})),
        ("/v1/create_user", msgpack.packb({"rec": user})),
        ("/v1/list_buckets", msgpack.packb({})),
        ("/r1/put", msgpack.packb({"writes": writes}, use_bin_type=True)),
        ("/r1/get", msgpack.packb({"table": "buckets", "keys": [b"intruder"]}, use_bin_type=True)),
        ("/r1/status", msgpack.packb({})),
    ]


async def node_calls(c: DevCluster, name: str) -> list[tuple[str, str, bytes]]:
    """(method, path, body) aimed at a fragment the node holds, a new one, its drives and its scrubber."""
    secret = c.env[auth.ENV].encode()
    endpoint = c.services[name].endpoint
    (served,) = await fetch_node_drives(endpoint, secret)
    drive = RemoteDrive(endpoint, served.id, secret)
    try:
        held = [i.fid.name async for i in drive.list()]
    finally:
        await drive.close()
    assert held, f"{name} holds no fragment to aim at"
    fragment = protocol.fragment_path(served.id, held[0])
    new = protocol.fragment_path(served.id, held[0].replace(held[0][:8], "0" * 8))
    frames = b"".join(protocol.chunk_frame_parts(b"intruder")) + protocol.END_FRAME
    return [
        ("GET", protocol.drives_path(), b""),
        ("GET", protocol.fragments_path(served.id), b""),
        ("GET", fragment, b""),
        ("GET", fragment + "/stat", b""),
        ("DELETE", fragment, b""),
        ("POST", fragment + "/verify", b""),
        ("POST", protocol.scrub_path(), b""),
        ("PUT", fragment, frames),
        ("PUT", new, frames),
    ]


async def test_internal_services_refuse_unsigned_requests(world: World) -> None:
    c = world.cluster
    before = await internal_state(c)
    for name, svc in c.services.items():
        if name.startswith("meta"):
            attempts = [("POST", path, body) for path, body in meta_calls()]
        elif name.startswith("node"):
            attempts = await node_calls(c, name)
        else:
            continue
        for method, path, body in attempts:
            for target in spellings(path):
                status, answer = await raw(svc.endpoint, method, target, body)
                assert status in REFUSED, (name, method, target, answer[:300])
            assert await internal_state(c) == before, (name, method, path)
    world.unchanged("unsigned internal requests")


async def test_internal_services_refuse_re_signed_requests(world: World) -> None:
    c = world.cluster
    secret = c.env[auth.ENV].encode()
    wrong = b"not-the-cluster-secret-at-all-0123456789"
    before = await internal_state(c)
    for name, svc in c.services.items():
        if name.startswith("meta"):
            attempts = [("POST", path, body) for path, body in meta_calls()]
            harmless = ("POST", "/v1/list_buckets", msgpack.packb({}))
        elif name.startswith("node"):
            attempts = await node_calls(c, name)
            harmless = ("GET", protocol.drives_path(), b"")
        else:
            continue
        for method, path, body in attempts:
            streamed = None if method == "PUT" and name.startswith("node") else body
            elsewhere = next(other for _, other, _ in attempts if other != path)
            forged = [
                (path, auth.sign(wrong, method, path, streamed), body),  # signed with another secret
                (path, auth.sign(secret, method, elsewhere, streamed), body),  # signed for another path
                (path, auth.sign(secret, "GET" if method != "GET" else "POST", path, streamed), body),
                (path, auth.sign(secret, method, path, streamed, now=0), body),  # long expired
            ]
            if streamed is not None:
                forged.append((path, auth.sign(secret, method, path, streamed), body + b"\x00"))  # body tampered
            # Another spelling of the signed path; not a fragment or the absolute form, which the service
            # reads as the very path signed (the same request, not a tampered one).
            others = [t for t in spellings(path)[1:] if "#" not in t and not t.startswith("http:")]
            forged += [(t, auth.sign(secret, method, path, streamed), body) for t in others]
            for target, header, sent in forged:
                status, answer = await asyncio.to_thread(send_signed, svc.endpoint, method, target, header, sent)
                assert status in REFUSED, (name, method, target, header, answer[:300])
            assert await internal_state(c) == before, (name, method, path)
        # A valid request for a read goes through once; the same bytes again are a replay.
        method, path, body = harmless
        header = auth.sign(secret, method, path, body)
        first = await asyncio.to_thread(send_signed, svc.endpoint, method, path, header, body)
        assert first[0] == 200, (name, first)
        again = await asyncio.to_thread(send_signed, svc.endpoint, method, path, header, body)
        assert again[0] in REFUSED, (name, again)
    world.unchanged("re-signed internal requests")


# -- 3: the logs ---------------------------------------------------------------------------------------------

STATUS = re.compile(r'\{"(?:time|method)".*"status": (\d+).*\}')  # the gateway's lines begin with their time


def test_no_traceback_and_no_5xx_in_any_log(world: World) -> None:
    for name, path in log_paths(world.cluster).items():
        text = path.read_bytes().decode(errors="replace")
        assert "Traceback" not in text, (name, text[text.index("Traceback") - 500 :][:3000])
        answered = [m for line in text[world.logs[name] :].splitlines() if (m := STATUS.search(line))]
        assert answered, f"{name} logged no request of the run: the check below would prove nothing"
        for m in answered:
            if int(m.group(1)) >= 500:
                doc = json.loads(m.group(0))
                assert doc["status"] == 503 and doc.get("error") == "SlowDown", (name, m.group(0))
