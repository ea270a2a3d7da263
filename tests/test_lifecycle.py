"""Lifecycle rules on the embedded server (`tessera server --lifecycle-day 1`): the cases of tests/lifecycle_cases.py,
`tessera admin lifecycle run`, and a pass that resumes from its cursor after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metadata.local.store import LocalIndex
from tests.lifecycle_cases import (  # noqa: F401  (collected here)
    Settle,
    age,
    configure,
    keys,
    rule,
    test_background_worker_applies_rules_by_itself,
    test_bad_configurations_are_refused,
    test_configuration_round_trip,
    test_expiration_header_on_put_get_head_copy_and_complete,
    test_expiration_takes_exactly_what_the_filter_names,
    test_incomplete_uploads_are_aborted,
    test_locked_versions_are_never_removed,
    test_versioned_expiration_noncurrent_and_markers,
    versioned,
    versions,
)
from tests.s3_helpers import expect_error, unique
from tests.server_process import ServerProcess, start_server
from tests.test_admin_embedded import admin
from tests.test_notifications import add_target
from tests.test_notifications import configure as notify
from tests.test_users import add_user, user_client
from tests.webhook_receiver import Receiver

DAY_ARGS = ("--lifecycle-day", "1", "--scrub-interval", "0")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("lifecycle"), extra=DAY_ARGS)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def settle(server: ServerProcess) -> Settle:
    def run(bucket: str) -> str:
        res = admin(server, "lifecycle", "run", bucket, "--wait")
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    return run


def test_run_command_reports_what_it_did(server: ServerProcess, s3: Any, bucket: str) -> None:
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"x/{i}", Body=b"x")
    configure(s3, bucket, rule("x", Filter={"Prefix": "x/"}, Expiration={"Days": 30}))
    res = admin(server, "lifecycle", "run", bucket, "--wait")
    assert res.returncode == 0, res.stderr
    assert "lifecycle done" in res.stdout and "3 version(s) looked at: 0 expired" in res.stdout
    assert keys(s3, bucket) == {"x/0", "x/1", "x/2"}  # 30 days are not over
    missing = admin(server, "lifecycle", "run", "no-such-bucket")
    assert missing.returncode == 1 and "NoSuchBucket" in missing.stderr and "Traceback" not in missing.stderr
    everything = admin(server, "lifecycle", "run", "--wait")
    assert everything.returncode == 0 and "lifecycle done" in everything.stdout


def test_lifecycle_removals_send_lifecycle_events(
    server: ServerProcess, s3: Any, settle: Settle, receiver: Receiver
) -> None:
    """S3's LifecycleExpiration events: Delete for a version removed for good (an unversioned object expired, a
    noncurrent version expired), DeleteMarkerCreated for a current version hidden behind a marker; never an
    ObjectRemoved event, which reports clients' deletes."""
    target, plain, name = unique("t"), unique("lcp"), versioned(s3)
    s3.create_bucket(Bucket=plain)
    add_target(server, target, receiver)
    for b in (plain, name):
        notify(s3, b, target, ["s3:LifecycleExpiration:*", "s3:ObjectRemoved:*"])
    s3.put_object(Bucket=plain, Key="e/k", Body=b"x")
    v1 = s3.put_object(Bucket=name, Key="e/k", Body=b"v1")["VersionId"]
    s3.put_object(Bucket=name, Key="e/k", Body=b"v2")
    expire = rule(
        "e", Filter={"Prefix": "e/"}, Expiration={"Days": 1}, NoncurrentVersionExpiration={"NoncurrentDays": 1}
    )
    for b in (plain, name):
        configure(s3, b, expire)
    age()
    for b in (plain, name):
        settle(b)
    assert keys(s3, plain) == set()
    marker = next(v for k, v, dm in versions(s3, name) if dm)

    def seen() -> set[tuple[str, str, str | None]]:
        return {(r["eventName"], r["s3"]["bucket"]["name"], r["s3"]["object"].get("versionId")) for r in receiver.got()}

    want = {
        ("LifecycleExpiration:Delete", plain, None),
        ("LifecycleExpiration:Delete", name, v1),
        ("LifecycleExpiration:DeleteMarkerCreated", name, marker),
    }
    receiver.wait_for("three lifecycle events", lambda: seen() >= want)
    assert all(r["eventName"].startswith("LifecycleExpiration:") for r in receiver.got())
    assert {r["userIdentity"]["principalId"] for r in receiver.got()} == {"tessera:lifecycle"}


def test_a_pass_resumes_from_its_cursor_after_a_restart(tmp_path: Path) -> None:
    # A long day: after the restart only the first pass (from the stored cursor) runs within the test. One index
    # in a directory of its own (--index), so that the test can open it while the server is stopped.
    system = tmp_path / "system"
    flags = ("--lifecycle-day", "4", "--scrub-interval", "0", "--index", str(system))
    srv = start_server(tmp_path / "server", extra=flags)
    try:
        s3 = srv.client()
        name = unique("lcr")
        s3.create_bucket(Bucket=name)
        for i in range(20):
            s3.put_object(Bucket=name, Key=f"k{i:02d}", Body=b"x")
        configure(s3, name, rule("all", Expiration={"Days": 1}))
    finally:
        srv.stop()

    async def interrupted() -> None:  # as if a pass had done k00..k09 when the gateway stopped
        index = LocalIndex.open(system / "index")
        try:
            await index.set_lifecycle_cursor(name, "k09")
        finally:
            await index.close()

    asyncio.run(interrupted())
    age(4)
    again = start_server(tmp_path / "server", extra=flags)
    try:
        s3 = again.client()
        wait = [f"k{i:02d}" for i in range(10)]
        deadline = time.monotonic() + 20
        while keys(s3, name) != set(wait):
            assert time.monotonic() < deadline, sorted(keys(s3, name))
            time.sleep(0.1)
    finally:
        again.stop()


def test_aws_cli_sets_reads_and_deletes_rules(server: ServerProcess, bucket: str) -> None:
    config = '{"Rules": [{"ID": "cli", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}]}'
    server.aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", bucket, "--lifecycle-configuration", config)
    got = json.loads(server.aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket).stdout)
    assert got["Rules"] == [{"ID": "cli", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}]
    server.aws("s3api", "delete-bucket-lifecycle", "--bucket", bucket)
    gone = server.aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket, check=False)
    assert gone.returncode != 0 and "NoSuchLifecycleConfiguration" in gone.stderr


def test_only_the_owner_or_a_policy_may_touch_rules(server: ServerProcess, s3: Any, bucket: str) -> None:
    other = user_client(server.endpoint, add_user(server.endpoint, unique("u")))
    configure(s3, bucket, rule("r", Expiration={"Days": 5}))
    expect_error(other.get_bucket_lifecycle_configuration, "AccessDenied", 403, Bucket=bucket)
    expect_error(configure, "AccessDenied", 403, other, bucket, rule("x", Expiration={"Days": 1}))
    expect_error(other.delete_bucket_lifecycle, "AccessDenied", 403, Bucket=bucket)
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "r"  # unchanged
