"""`tessera server --workers N`: several processes on one port, and still one store to its clients.

Which worker answers is told by the first six characters of x-amz-request-id, unique per process.
Requests sent with `Connection: close` each open a new connection, which the kernel may give to
either worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.launch import tessera_command
from gateway.admin.client import AdminClient
from tests.server_process import (
    ACCESS_KEY,
    SECRET_KEY,
    ServerProcess,
    assert_one_line_error,
    run_server,
    start_server,
)
from tests.test_users import add_user, admin

MiB = 1 << 20
DEADLINE = 30.0
TRIES = 60  # new connections tried to reach the other worker: both missing it has odds of 2**-60


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = start_server(tmp_path_factory.mktemp("workers"), extra=("--workers", "2", "--scan-interval", "3600"))
    yield s
    s.stop()


def workers_of(srv: ServerProcess) -> list[int]:
    return [int(p) for p in Path(f"/proc/{srv.pid}/task/{srv.pid}/children").read_text().split()]


def closing_client(
    srv: ServerProcess, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, **config: Any
) -> Any:
    """boto3 asking for a new connection with every request."""
    client = srv.client(access_key, secret_key, **config)

    def close(request: Any, **_: Any) -> None:
        request.headers["Connection"] = "close"

    client.meta.events.register("before-send.s3", close)
    return client


def worker(resp: dict[str, Any]) -> str:
    return str(resp["ResponseMetadata"]["RequestId"][:6])


def anonymous_worker(srv: ServerProcess) -> str:
    """The worker that answers an anonymous request on a new connection (403, with a request id)."""
    try:
        urllib.request.urlopen(srv.endpoint + "/", timeout=10)
    except urllib.error.HTTPError as err:
        return str(err.headers["x-amz-request-id"][:6])
    raise AssertionError("an anonymous list of buckets was allowed")


def elsewhere(call: Callable[[], dict[str, Any]], not_on: str) -> dict[str, Any]:
    """call() answered by a worker other than not_on."""
    for _ in range(TRIES):
        resp = call()
        if worker(resp) != not_on:
            return resp
    raise AssertionError(f"every request went to worker {not_on}")


def test_two_processes_share_the_port(srv: ServerProcess) -> None:
    assert len(workers_of(srv)) == 2
    seen = {anonymous_worker(srv) for _ in range(TRIES)}
    assert len(seen) == 2, seen


def test_what_one_worker_writes_the_other_reads(srv: ServerProcess) -> None:
    s3 = closing_client(srv)
    bucket = f"w-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    bodies = {"small": os.urandom(4096), "large": os.urandom(3 * MiB + 17), "empty": b""}
    for key, body in bodies.items():
        put = s3.put_object(Bucket=bucket, Key=key, Body=body)
        got = elsewhere(lambda key=key: s3.get_object(Bucket=bucket, Key=key), worker(put))
        assert got["Body"].read() == body
        assert got["ETag"] == put["ETag"]

    # A multipart upload whose parts and completion are spread over both workers.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    parts, data, seen = [], b"", set()
    for n in range(1, 5):
        chunk = os.urandom(5 * MiB if n < 4 else 1234)
        resp = s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": resp["ETag"]})
        seen.add(worker(resp))
        data += chunk
    listed = elsewhere(lambda: s3.list_parts(Bucket=bucket, Key="multi", UploadId=upload), worker(resp))
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3, 4]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=upload, MultipartUpload={"Parts": parts})
    got = elsewhere(lambda: s3.get_object(Bucket=bucket, Key="multi"), worker(done))
    assert got["Body"].read() == data

    keys = sorted([*bodies, "multi"])
    for _ in range(4):
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == keys

    s3.delete_object(Bucket=bucket, Key="large")
    for _ in range(8):  # gone for both workers at once
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=bucket, Key="large")


def test_admin_jobs_answer_on_every_worker(srv: ServerProcess) -> None:
    async def go() -> None:
        async with AdminClient(srv.endpoint, ACCESS_KEY, SECRET_KEY) as admin:
            job = (await admin.start_scrub())["job"]
        for _ in range(12):  # a new client is a new connection: some reach the worker that did not start it
            async with AdminClient(srv.endpoint, ACCESS_KEY, SECRET_KEY) as admin:
                doc = (await admin.job(job["id"]))["job"]
                assert doc["id"] == job["id"] and doc["kind"] == "scrub"
                assert (await admin.status())["repair"] is not None

    asyncio.run(go())
    res = subprocess.run(
        [*tessera_command(), "admin", "--endpoint", srv.endpoint, "repair", "--wait"],
        env={**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "repair done" in res.stdout


def test_metrics_show_every_worker_by_its_label(srv: ServerProcess) -> None:
    """Each worker's counters under worker="N", the same whichever worker answers the scrape (a sum would
    drop when one worker restarts or misses a scrape: Prometheus would read a counter reset)."""
    s3 = closing_client(srv)
    bucket = f"m-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    before = srv.requests_answered("put_object", "200")
    seen = {worker(s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")) for i in range(30)}
    assert len(seen) == 2, seen
    counts = {srv.requests_answered("put_object", "200") for _ in range(10)}  # scrapes land on either worker
    assert counts == {before + 30}
    scrapes = [srv.requests_by_worker("put_object", "200") for _ in range(10)]
    assert all(s.keys() == {"0", "1"} for s in scrapes), scrapes
    assert len({tuple(sorted(s.items())) for s in scrapes}) == 1, scrapes


def test_a_dead_worker_is_replaced_and_stop_ends_them_all(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "server", extra=("--workers", "2"))
    try:
        s3 = closing_client(srv)
        s3.create_bucket(Bucket="bkt")
        body = os.urandom(MiB)
        s3.put_object(Bucket="bkt", Key="k", Body=body)
        first, second = workers_of(srv)
        os.kill(first, signal.SIGKILL)  # worker 0: the one with the maintenance and the admin jobs
        for _ in range(20):  # the survivor serves meanwhile
            assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == body
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            now = workers_of(srv)
            if len(now) == 2 and first not in now:
                break
            time.sleep(0.05)
        assert second in now and len(now) == 2 and first not in now, now
        assert "worker 0" in srv.log_text() and "starting it again" in srv.log_text()
        deadline = time.monotonic() + DEADLINE
        while len({anonymous_worker(srv) for _ in range(TRIES)}) < 2:  # the new worker listens
            assert time.monotonic() < deadline
        for _ in range(8):
            assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == body

        async def status() -> None:
            async with AdminClient(srv.endpoint, ACCESS_KEY, SECRET_KEY) as admin:
                await admin.status()

        for _ in range(6):
            asyncio.run(status())
    finally:
        pids = workers_of(srv) if srv.proc.poll() is None else []
        srv.stop()
    assert srv.proc.returncode == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def fragment_files(srv: ServerProcess) -> set[Path]:
    return {p for d in srv.drives for p in (d / "fragments").rglob("*.*.*") if p.is_file()}


def test_a_read_through_any_worker_heals(srv: ServerProcess) -> None:
    s3 = closing_client(srv)
    bucket = f"h-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(2 * MiB)
    before = fragment_files(srv)
    s3.put_object(Bucket=bucket, Key="k", Body=body)
    victim = next(f for f in fragment_files(srv) - before if f.name.endswith(".0.1"))  # a data fragment
    victim.unlink()
    for _ in range(4):
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body
    deadline = time.monotonic() + DEADLINE
    while not victim.exists():  # queued by whichever worker read it, rebuilt by worker 0
        assert time.monotonic() < deadline, "the fragment was not rebuilt"
        time.sleep(0.1)


@pytest.mark.parametrize("workers", ["0", "-1", "many"])
def test_bad_worker_count(tmp_path: Path, workers: str) -> None:
    res = run_server(["--workers", workers, "--listen", "127.0.0.1:0"], tmp_path)
    assert res.returncode == 2 and "--workers" in res.stderr and "Traceback" not in res.stderr, res


def test_workers_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = run_server(["--workers", "2", "--listen", f"127.0.0.1:{port}"], tmp_path)
    assert_one_line_error(res, f"127.0.0.1:{port}")


def test_workers_on_an_unusable_drive(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    drives = [str(tmp_path / f"d{i}") for i in range(5)] + [str(tmp_path / "file" / "d6")]
    assert_one_line_error(run_server([*drives, "--workers", "2", "--listen", "127.0.0.1:0"], tmp_path), "d6")


def test_a_forked_worker_draws_its_own_ids() -> None:
    """Workers are forked: ids drawn from a pool, and request ids, must not repeat the parent's or a sibling's."""
    from gateway import app
    from gateway.objects.layer import new_id

    new_id()  # the pool is filled here, before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(w, f"{new_id()} {app._RID_PREFIX}".encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as pipe:
        child_id, child_prefix = pipe.read().split()
    os.waitpid(pid, 0)
    assert child_id != new_id()
    assert child_prefix != app._RID_PREFIX


def test_a_user_change_reaches_every_worker_before_the_admin_answer(srv: ServerProcess) -> None:
    name = "w-" + uuid.uuid4().hex[:8]
    user = add_user(srv.endpoint, name)  # answered by either worker; worker 0 makes the change
    s3 = closing_client(srv, user["access_key"], user["secret_key"], retries={"max_attempts": 1})
    seen = set()
    for _ in range(TRIES):  # the new user works on both workers at once
        seen.add(worker(s3.list_buckets()))
        if len(seen) == 2:
            break
    assert len(seen) == 2, seen

    assert admin(srv.endpoint, "DELETE", "users/" + name).status == 204
    refused_by = set()
    for _ in range(40):  # at once, on both: no worker keeps the removed key for a refresh period
        with pytest.raises(ClientError) as err:
            s3.list_buckets()
        assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        refused_by.add(err.value.response["ResponseMetadata"]["RequestId"][:6])
    assert len(refused_by) == 2, refused_by
