"""Bucket event notifications on the embedded server: configured through boto3, delivered to a real HTTP receiver
the test runs (aiohttp on loopback), at least once, through the receiver being down and the server being killed
(docs/notifications.md)."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.s3_helpers import data, expect_error, signed_request, unique
from tests.server_process import ServerProcess, start_server
from tests.test_admin_embedded import admin
from tests.webhook_receiver import Receiver

MiB = 1 << 20
BAD_ARG = "InvalidArgument"


def add_target(srv: ServerProcess, name: str, receiver: Receiver) -> None:
    res = admin(srv, "notify", "add", name, "--webhook", receiver.url, "--auth-token", receiver.token)
    assert res.returncode == 0 and f"arn:tessera:sqs::{name}" in res.stdout, res.stderr


def configure(s3: Any, bucket: str, target: str, events: list[str], **filters: str) -> None:
    rule: dict[str, Any] = {"Id": "r1", "QueueArn": f"arn:tessera:sqs::{target}", "Events": events}
    if filters:
        rule["Filter"] = {"Key": {"FilterRules": [{"Name": n, "Value": v} for n, v in filters.items()]}}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [rule]})


def worker_counters(srv: ServerProcess) -> dict[str, Any]:
    res = admin(srv, "status", "--json")
    assert res.returncode == 0, res.stderr
    workers = json.loads(res.stdout)["workers"]
    return next(w["counters"] for w in workers if w["name"] == "notify")


def scraped(srv: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(srv.endpoint + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name)


def test_events_matching_the_rules_are_delivered(server: ServerProcess, s3: Any, receiver: Receiver) -> None:
    target, bucket = unique("t"), unique()
    s3.create_bucket(Bucket=bucket)
    add_target(server, target, receiver)
    configure(s3, bucket, target, ["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"], prefix="logs/", suffix=".txt")
    got = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    assert got[0]["QueueArn"] == f"arn:tessera:sqs::{target}"
    assert sorted(r["Value"] for r in got[0]["Filter"]["Key"]["FilterRules"]) == [".txt", "logs/"]
    put = s3.put_object(Bucket=bucket, Key="logs/a b.txt", Body=b"hello")
    s3.put_object(Bucket=bucket, Key="logs/skip.bin", Body=b"no")  # suffix does not match
    s3.put_object(Bucket=bucket, Key="other/c.txt", Body=b"no")  # prefix does not match
    s3.copy_object(Bucket=bucket, Key="logs/copy.txt", CopySource={"Bucket": bucket, "Key": "logs/a b.txt"})
    up = s3.create_multipart_upload(Bucket=bucket, Key="logs/mp.txt")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="logs/mp.txt", UploadId=up, PartNumber=1, Body=data(MiB))["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    s3.complete_multipart_upload(Bucket=bucket, Key="logs/mp.txt", UploadId=up, MultipartUpload=parts)
    s3.delete_object(Bucket=bucket, Key="logs/copy.txt")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "logs/mp.txt"}, {"Key": "logs/none.txt"}]})
    want = {
        ("ObjectCreated:Put", "logs/a+b.txt"),  # keys are URL-encoded, as S3 sends them
        ("ObjectCreated:Copy", "logs/copy.txt"),
        ("ObjectCreated:CompleteMultipartUpload", "logs/mp.txt"),
        ("ObjectRemoved:Delete", "logs/copy.txt"),
        ("ObjectRemoved:Delete", "logs/mp.txt"),  # DeleteObjects; logs/none.txt did not exist: no event
    }
    receiver.wait_for("five events", lambda: receiver.keys() >= want)
    assert receiver.keys() == want and receiver.refused == 0
    first = next(r for r in receiver.got() if r["eventName"] == "ObjectCreated:Put")
    assert first["eventSource"] == "tessera:s3" and first["eventVersion"] == "2.1"
    assert first["s3"]["bucket"]["name"] == bucket
    assert first["s3"]["object"]["size"] == 5 and f'"{first["s3"]["object"]["eTag"]}"' == put["ETag"]
    assert first["s3"]["object"]["sequencer"]
    mp = next(r for r in receiver.got() if r["eventName"] == "ObjectCreated:CompleteMultipartUpload")
    assert mp["s3"]["object"]["size"] == MiB
    assert worker_counters(server)["delivered"] >= 5
    assert scraped(server, "tessera_events_delivered_total") >= 5


def test_versioned_deletes_report_markers_and_versions(server: ServerProcess, s3: Any, receiver: Receiver) -> None:
    target, bucket = unique("t"), unique()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    add_target(server, target, receiver)
    configure(s3, bucket, target, ["s3:ObjectRemoved:*"])
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=version)
    receiver.wait_for("two removals", lambda: len(receiver.got()) >= 2)
    by_name = {r["eventName"]: r["s3"]["object"].get("versionId") for r in receiver.got()}
    assert by_name == {"ObjectRemoved:DeleteMarkerCreated": marker, "ObjectRemoved:Delete": version}


@pytest.mark.parametrize(
    "rule, code",
    [
        ({"QueueArn": "arn:tessera:sqs::nosuchtarget", "Events": ["s3:ObjectCreated:*"]}, "InvalidArgument"),
        ({"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}, "InvalidArgument"),
        ({"QueueArn": "TARGET", "Events": ["s3:ObjectRestore:Post"]}, "InvalidArgument"),
        (
            {
                "QueueArn": "TARGET",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "middle", "Value": "x"}]}},
            },
            "InvalidArgument",
        ),
    ],
)
def test_bad_configurations_are_refused_and_change_nothing(
    server: ServerProcess, s3: Any, receiver: Receiver, rule: dict[str, Any], code: str
) -> None:
    target, bucket = unique("t"), unique()
    s3.create_bucket(Bucket=bucket)
    add_target(server, target, receiver)
    if rule["QueueArn"] == "TARGET":
        rule = {**rule, "QueueArn": f"arn:tessera:sqs::{target}"}
    config = {"QueueConfigurations": [rule]}
    expect_error(s3.put_bucket_notification_configuration, code, 400, Bucket=bucket, NotificationConfiguration=config)
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)


@pytest.mark.parametrize(
    "method, body, status, code",
    [
        ("PUT", b"<NotificationConfiguration><oops", 400, "MalformedXML"),
        ("PUT", b"<Other/>", 400, "MalformedXML"),
        (
            "PUT",
            b"<NotificationConfiguration><TopicConfiguration/></NotificationConfiguration>",
            400,
            "InvalidArgument",
        ),
        (
            "PUT",
            b"<NotificationConfiguration><QueueConfiguration/></NotificationConfiguration>",
            400,
            "InvalidArgument",
        ),
        ("DELETE", b"", 405, "MethodNotAllowed"),
    ],
)
def test_raw_bad_requests_answer_s3_errors(
    server: ServerProcess, s3: Any, bucket: str, method: str, body: bytes, status: int, code: str
) -> None:
    resp = signed_request(server, method, f"/{bucket}?notification", body=body)
    assert (resp.status, resp.error()["Code"]) == (status, code)
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200  # a DELETE deleted nothing


def test_minio_arn_form_and_clearing(server: ServerProcess, s3: Any, receiver: Receiver) -> None:
    target, bucket = unique("t"), unique()
    s3.create_bucket(Bucket=bucket)
    add_target(server, target, receiver)
    rule = {"QueueArn": f"arn:minio:sqs::{target}:webhook", "Events": ["s3:ObjectCreated:Put"]}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [rule]})
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    receiver.wait_for("one event", lambda: len(receiver.got()) == 1)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)


def test_no_event_lost_with_the_receiver_down_and_the_server_killed(tmp_path: Path, receiver: Receiver) -> None:
    srv = start_server(tmp_path / "server", extra=("--scrub-interval", "0"))
    try:
        s3 = srv.client()
        bucket = unique()
        s3.create_bucket(Bucket=bucket)
        add_target(srv, "hook", receiver)
        configure(s3, bucket, "hook", ["s3:ObjectCreated:*"])
        receiver.down()
        for i in range(10):
            s3.put_object(Bucket=bucket, Key=f"before-{i}", Body=os.urandom(100))
        receiver.wait_for("a failed delivery", lambda: worker_counters(srv)["retried"] >= 1)
        os.kill(srv.pid, signal.SIGKILL)  # acknowledged writes, events not delivered: they are in the index
        srv.proc.wait()
        srv.stop()
        srv = start_server(tmp_path / "server", extra=("--scrub-interval", "0"))
        s3 = srv.client()
        for i in range(10):
            s3.put_object(Bucket=bucket, Key=f"after-{i}", Body=os.urandom(100))
        receiver.up()
        want = {("ObjectCreated:Put", f"{when}-{i}") for when in ("before", "after") for i in range(10)}
        receiver.wait_for("every event", lambda: receiver.keys() >= want)
        assert receiver.keys() == want
        receiver.wait_for("an empty queue", lambda: worker_counters(srv)["backlog"] == 0)
    finally:
        srv.stop()
