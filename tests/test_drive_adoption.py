"""Drives wiped while the store runs are adopted back into the set and filled by repair, with no restart; a
drive holding another deployment's data is never adopted. Real `tessera server`, `tessera node` and
`tessera gateway` processes, real boto3, the real `tessera admin` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from cli.launch import tessera_command
from gateway.objects.layer import INLINE_MAX
from storage_node.drive import OFFLINE, OK
from storage_node.drive_adopt import Verdict, check_drive
from storage_node.drive_dir import prepare_drive
from tests.s3_helpers import dev_client
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess, start_server

KiB = 1 << 10
POLL = 60.0  # seconds a bounded wait may take on a busy machine


def _objects() -> dict[str, bytes]:
    sizes = {"small": 100, "onedrive": INLINE_MAX + 1, "segments": 2 * 1024 * KiB + 7, "mid": 300 * KiB}
    return {name: os.urandom(size) for name, size in sizes.items()}


def _gone_already(function: Any, path: str, exc_info: Any) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):  # renamed or removed by the running store meanwhile
        raise exc_info[1]


def _wipe(drive: Path) -> None:
    """rm -rf DRIVE/*: everything inside goes, the directory stays (the store runs on meanwhile)."""
    for entry in list(drive.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, onerror=_gone_already)
        else:
            entry.unlink(missing_ok=True)


def _fragments(drive: Path) -> list[Path]:
    return list((drive / "fragments").glob("*/*.*.*"))


def _until(what: str, check: Callable[[], Any], timeout: float = POLL, every: float = 0.25) -> Any:
    """Poll `check` until it returns something true; fail naming `what` (and the last error) at the timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = check()
        except Exception as exc:  # the last one is reported
            last = exc
        else:
            if got:
                return got
            last = got
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def _admin(endpoint: str, *args: str, access: str = ACCESS_KEY, secret: str = SECRET_KEY, check: bool = True) -> str:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
    res = subprocess.run(
        [*tessera_command(), "admin", "--endpoint", endpoint, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0 or not check, res.stdout + res.stderr
    return res.stdout


def _drive_states(endpoint: str, **creds: str) -> dict[str, dict[str, Any]]:
    """path -> the drive's document in `admin status --json`."""
    doc = json.loads(_admin(endpoint, "status", "--json", **creds))
    return {d["path"]: d for n in doc["nodes"] for d in n["drives"]}


def _put_works(s3: Any, bucket: str, key: str, body: bytes) -> bool:
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503:
            return False
        raise
    return True


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path / "store", extra=("--scan-interval", "3600"))
    try:
        yield srv
    finally:
        srv.stop()


def test_drives_wiped_while_running_are_adopted_and_refilled(store: ServerProcess) -> None:
    s3 = store.client(retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="photos")
    objects = _objects()
    for key, body in objects.items():
        s3.put_object(Bucket="photos", Key=key, Body=body)
    wiped = store.drives[1:3]  # drives 2 and 3: the index may live on the first (or on several)
    ids = {d: json.loads((d / "drive.json").read_text())["id"] for d in wiped}
    assert all(_fragments(d) for d in wiped)
    for d in wiped:
        _wipe(d)

    # No restart: new PUTs succeed again once the drive watch has adopted the empty drives.
    later = os.urandom(INLINE_MAX + 5)
    _until("a PUT after the wipe", lambda: _put_works(s3, "photos", "after-wipe", later))
    objects["after-wipe"] = later
    for d in wiped:  # formatted back in as the members they replace, not as new drives
        assert json.loads((d / "drive.json").read_text())["id"] == ids[d]
    states = _drive_states(store.endpoint)
    for d in wiped:
        assert states[str(d)]["adopted"] > 0, states[str(d)]
        assert states[str(d)]["state"] in ("adopted, rebuilding", "ok"), states[str(d)]
    log = store.log_text()
    assert sum(f"was empty: formatted into the set as {ids[d]}" in log for d in wiped) == 2, log

    _admin(store.endpoint, "repair", "--wait")
    assert all(_fragments(d) for d in wiped)  # rebuilt onto the adopted drives
    states = _until(
        "status to say the adopted drives are refilled",
        lambda: (s := _drive_states(store.endpoint)) and all(s[str(d)]["state"] == "ok" for d in wiped) and s,
    )
    text = _admin(store.endpoint, "status")
    assert str(wiped[0]) in text and "offline" not in text, text
    # Whole again: two other drives' fragments can go, and every object still reads back byte for byte.
    for d in store.drives[3:5]:
        shutil.rmtree(d / "fragments")
    for key, body in objects.items():
        assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == body, key
    # Their drive.json still names them: their fragments directories are made again, and refilled.
    _until("the lost fragments directories made again", lambda: all(_fragments(d) for d in store.drives[3:5]), 120)


def test_a_drive_of_another_deployment_is_not_adopted(store: ServerProcess, tmp_path: Path) -> None:
    s3 = store.client(retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="photos")
    s3.put_object(Bucket="photos", Key="k", Body=os.urandom(INLINE_MAX + 1))
    target = store.drives[2]
    mine = json.loads((target / "drive.json").read_text())
    _wipe(target)
    # Another deployment's drive mounted in its place: its record, and a fragment of its own.
    foreign = {**mine, "id": "f" * 32, "deployment": "0" * 32}
    (target / "drive.json").write_text(json.dumps(foreign) + "\n")
    theirs = target / "fragments" / "ab" / f"{'ab' * 16}.0.1"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"not ours to delete")
    before = sorted(p.relative_to(target) for p in target.rglob("*"))

    _until("the drive reported offline", lambda: "offline" in _drive_states(store.endpoint)[str(target)]["state"])
    state = _drive_states(store.endpoint)[str(target)]
    assert "not adopted" in state["state"] and not state["adopted"], state
    s3.put_object(Bucket="photos", Key="still-writable", Body=os.urandom(INLINE_MAX + 1))  # 5 of 6: enough
    # A scan and repairs run (and fail: the sixth fragments have nowhere to go) without touching the drive.
    _admin(store.endpoint, "repair", "--wait", check=False)
    assert json.loads((target / "drive.json").read_text()) == foreign
    assert theirs.read_bytes() == b"not ours to delete"
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before  # nothing written, nothing deleted
    assert store.log_text().count("not this one: not adopted") == 1  # one line, not one per check


def test_a_vanished_drive_directory_is_not_formatted(store: ServerProcess) -> None:
    """A path that is gone (an unmounted disk whose mount point went too) stays offline and is not re-made."""
    s3 = store.client(retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="photos")
    target = store.drives[3]
    shutil.rmtree(target)
    s3.put_object(Bucket="photos", Key="k", Body=os.urandom(INLINE_MAX + 1))  # 5 of 6
    _until("the drive reported missing", lambda: "is missing" in _drive_states(store.endpoint)[str(target)]["state"])
    assert not target.exists()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path / "cluster", nodes=3, metas=1, gateways=1, ec="2+1")
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_a_node_drive_wiped_while_running_is_adopted_and_refilled(cluster: DevCluster) -> None:
    # node1 serves two drives: restarted with a second --data directory.
    node = cluster.services["node1"]
    first = cluster.data / "node1" / "drive1"
    second = cluster.data / "node1" / "drive2"
    node.args[node.args.index("--data") : node.args.index("--data") + 2] = ["--data", str(first), "--data", str(second)]
    cluster.restart("node1")
    creds = {"access": cluster.env["TESSERA_ACCESS_KEY"], "secret": cluster.env["TESSERA_SECRET_KEY"]}
    _until("the gateway to see node1's two drives", lambda: str(second) in _drive_states(cluster.endpoint(), **creds))
    s3 = dev_client(cluster, retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="photos")
    objects = {f"o{i}": os.urandom(INLINE_MAX + 1 + i) for i in range(12)}
    for key, body in objects.items():
        s3.put_object(Bucket="photos", Key=key, Body=body)
    assert _fragments(first)
    nid = json.loads((first / "node.json").read_text())["id"]
    drive_id = json.loads((first / "drive.json").read_text())["id"]
    _wipe(first)  # the first drive: it also keeps the node's id

    # Adoption writes the drive's record, then the node's id beside it.
    _until("the wiped drive adopted", lambda: (first / "drive.json").exists() and (first / "node.json").exists())
    assert json.loads((first / "drive.json").read_text())["id"] == drive_id
    assert json.loads((first / "node.json").read_text())["id"] == nid  # written back: a restart keeps the node
    _until("the gateway to see the adoption", lambda: _drive_states(cluster.endpoint(), **creds)[str(first)]["adopted"])
    more = os.urandom(INLINE_MAX + 3)
    _until("a PUT after the wipe", lambda: _put_works(s3, "photos", "after-wipe", more))
    objects["after-wipe"] = more

    _admin(cluster.endpoint(), "repair", "--wait", **creds)
    assert _fragments(first)
    _until(
        "status to say the adopted drive is refilled",
        lambda: _drive_states(cluster.endpoint(), **creds)[str(first)]["state"] == "ok",
    )
    for key, body in objects.items():
        assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == body, key


def _mount_tmpfs(where: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], check=True, capture_output=True)


@pytest.fixture
def mounted_store(tmp_path: Path) -> Iterator[ServerProcess]:
    """A store whose fourth drive is a filesystem of its own (a tmpfs), unmounted at the end."""
    base = tmp_path / "store"
    (base / "d4").mkdir(parents=True)
    try:
        _mount_tmpfs(base / "d4")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        srv = start_server(base, extra=("--min-free", "1"))  # a 64 MiB drive is not full by the 1000 MB default
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        while os.path.ismount(base / "d4"):
            subprocess.run(["umount", "-l", str(base / "d4")], check=True)


def test_an_unmounted_drive_is_not_formatted_and_a_new_disk_is(mounted_store: ServerProcess) -> None:
    store = mounted_store
    s3 = store.client(retries={"max_attempts": 1, "mode": "standard"})
    s3.create_bucket(Bucket="photos")
    s3.put_object(Bucket="photos", Key="k", Body=os.urandom(INLINE_MAX + 1))
    target = store.drives[3]
    subprocess.run(["umount", "-l", str(target)], check=True)  # lazy: the server holds its lock file open
    assert not os.path.ismount(target) and not any(target.iterdir())  # an empty directory: the mount point
    s3.put_object(Bucket="photos", Key="k2", Body=os.urandom(INLINE_MAX + 1))  # 5 of 6
    _until(
        "the unmounted drive reported offline",
        lambda: "no longer a mount point" in _drive_states(store.endpoint)[str(target)]["state"],
    )
    assert not any(target.iterdir())  # nothing written onto the root filesystem's directory
    _mount_tmpfs(target)  # a new, empty disk in its place: adopted
    _until("the new disk adopted", lambda: _drive_states(store.endpoint)[str(target)]["adopted"])
    _admin(store.endpoint, "repair", "--wait")
    assert _fragments(target)


def test_check_adopts_only_an_empty_directory(tmp_path: Path) -> None:
    """The check itself, on a directory: stray data or a half-done wipe waits; only emptiness is adopted."""
    root = tmp_path / "d"
    prepare_drive(root)
    identity = json.loads((root / "drive.json").read_text()) | {"deployment": "1" * 32}
    _wipe(root)
    (root / "fragments" / "ab").mkdir(parents=True)
    (root / "fragments" / "ab" / f"{'ab' * 16}.0.0").write_bytes(b"x")  # a wipe still under way
    half = check_drive(root, identity, mounted=False, adopt=True)
    assert half.state == OFFLINE and "no drive identity" in half.detail and not (root / "drive.json").exists()
    _wipe(root)
    (root / "lost+found").mkdir()  # what a new filesystem holds
    assert check_drive(root, identity, mounted=False, adopt=False).state == OFFLINE  # another process adopts
    assert not (root / "drive.json").exists()
    adopted = check_drive(root, identity, mounted=False, adopt=True)
    assert adopted.state == OK and adopted.adopted
    assert json.loads((root / "drive.json").read_text()) == identity
    assert check_drive(root, identity, mounted=False, adopt=True) == Verdict(OK)  # once


def test_workers_take_adopted_drives_back_in_use(tmp_path: Path) -> None:
    """--workers 2: the first worker adopts; every worker writes to the drives again."""
    srv = start_server(tmp_path / "store", extra=("--workers", "2"))
    try:
        s3 = srv.client(retries={"max_attempts": 1, "mode": "standard"})
        s3.create_bucket(Bucket="photos")
        for d in srv.drives[1:3]:
            _wipe(d)
        bodies = {f"k{i}": os.urandom(INLINE_MAX + 1 + i) for i in range(8)}

        # New connections spread over both workers: eight PUTs in a row, each on a connection of its own,
        # succeed only once both workers use the drives again.
        def fresh(key: str, body: bytes) -> bool:
            return _put_works(srv.client(retries={"max_attempts": 1, "mode": "standard"}), "photos", key, body)

        _until("PUTs through every worker", lambda: all(fresh(k, b) for k, b in bodies.items()))
        assert all(_fragments(d) for d in srv.drives[1:3])
        for key, body in bodies.items():
            assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == body, key
    finally:
        srv.stop()
