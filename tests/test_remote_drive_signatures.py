"""RemoteDrive and the storage node: every request carries the cluster's signature; anything else is refused."""

from __future__ import annotations

import time

import pytest

from cluster import auth
from storage_node import protocol
from storage_node.client import RemoteDrive
from storage_node.drive import DriveUnavailable
from tests.drive_contract import collect, listed, make_chunks, new_fid, stream
from tests.remote_drive_helpers import SECRET, Node, assert_untouched, frames, raw


def _bad_signatures(method: str, path: str) -> list[str | None]:
    other = protocol.fragment_path("0" * 32, new_fid().name)
    return [
        None,  # no signature at all
        "",
        "t=1,h=STREAMING",  # malformed
        auth.sign(b"some-other-cluster-secret", method, path, None),
        auth.sign(SECRET, method, other, None),  # signed for another URL
        auth.sign(SECRET, "GET" if method != "GET" else "PUT", path, None),  # for another method
        auth.sign(SECRET, method, path, None, now=time.time() - auth.MAX_SKEW - 60),  # stale
        auth.sign(SECRET, method, path, None, now=time.time() + auth.MAX_SKEW + 60),  # from the future
    ]


async def test_requests_without_a_valid_signature_are_refused(node: Node, remote: RemoteDrive) -> None:
    fid, absent = new_fid(), new_fid()
    old = make_chunks(3, 1000, seed=1)
    await remote.put(fid, stream(old))
    drive_id = node.drives[0].drive_id
    body = frames(make_chunks(2, 500, seed=2))
    for target in (fid, absent):
        path = protocol.fragment_path(drive_id, target.name)
        for method, data in [("PUT", body), ("DELETE", None), ("GET", None), ("POST", None)]:
            p = path + "/verify" if method == "POST" else path
            for signature in _bad_signatures(method, p):
                status, answer = await raw(node, method, p, data, signature)
                assert status == 403, (method, signature)
                assert answer["error"] == "forbidden"
    for path in [protocol.fragments_path(drive_id), protocol.drives_path(), "/v1/nowhere"]:
        status, _ = await raw(node, "GET", path, signature=None)
        assert status == 403
    await assert_untouched(node, remote, {fid: old})


async def test_stale_signature_is_refused(node: Node, remote: RemoteDrive) -> None:
    fid = new_fid()
    await remote.put(fid, stream([b"kept"]))
    path = protocol.fragment_path(node.drives[0].drive_id, fid.name)
    stale = auth.sign(SECRET, "DELETE", path, b"", now=time.time() - auth.MAX_SKEW - 5)
    status, answer = await raw(node, "DELETE", path, signature=stale)
    assert status == 403 and "too old" in answer["message"]
    fresh = auth.sign(SECRET, "DELETE", path, b"", now=time.time() - auth.MAX_SKEW + 30)
    assert (await raw(node, "DELETE", path, signature=fresh)) == (200, {"deleted": True})


async def test_wrong_secret_gives_drive_unavailable(node: Node) -> None:
    fid = new_fid()
    stranger = RemoteDrive(node.url, node.drives[0].drive_id, b"not-the-cluster-secret-at-all")
    try:
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await stranger.put(fid, stream(make_chunks(3, 100)))
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await stranger.stat(fid)
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await collect(stranger.get(fid))
        with pytest.raises(DriveUnavailable, match="forbidden"):
            await listed(stranger)
    finally:
        await stranger.close()
    assert await node.drives[0].delete(fid) is False


async def test_body_hash_claims_are_checked(node: Node, remote: RemoteDrive) -> None:
    fid = new_fid()
    path = protocol.fragment_path(node.drives[0].drive_id, fid.name)
    body = frames([b"hello", b"world"])
    # A put signed with the hash of another body is refused, whatever its frames say.
    wrong = auth.sign(SECRET, "PUT", path, frames([b"hello", b"there"]))
    status, answer = await raw(node, "PUT", path, body, wrong)
    assert status == 403 and answer["error"] == "forbidden"
    await assert_untouched(node, remote, {})
    # Signed with the hash of its own body, it is accepted.
    status, answer = await raw(node, "PUT", path, body, auth.sign(SECRET, "PUT", path, body))
    assert status == 200 and answer["size"] == 10
    # A delete whose (empty) body does not match the claimed hash is refused.
    status, _ = await raw(node, "DELETE", path, signature=auth.sign(SECRET, "DELETE", path, b"x"))
    assert status == 403
    await assert_untouched(node, remote, {fid: [b"hello", b"world"]})
