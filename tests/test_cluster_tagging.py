"""Tags and conditional deletes through a `tessera dev` cluster: two gateways over the replicated index (three
metadata replicas), where tags are rewritten in place under the key's lock and conditional deletes are locked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cli.dev import DevCluster
from tests.s3_helpers import MiB, dev_client, expect_error, unique


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path_factory.mktemp("tagging"), nodes=3, metas=3, gateways=2, ec="2+1")
    c.start()
    yield c
    c.stop()


def clients(c: DevCluster) -> tuple[Any, Any]:
    return dev_client(c, 1, retries={"max_attempts": 1}), dev_client(c, 2, retries={"max_attempts": 1})


def tags_of(s3: Any, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def test_tags_across_gateways(cluster: DevCluster) -> None:
    a, b = clients(cluster)
    bucket = unique("tags")
    a.create_bucket(Bucket=bucket)
    body = b"z" * (3 * MiB)  # erasure-coded on the nodes, not inline
    etag = a.put_object(Bucket=bucket, Key="k", Body=body, Tagging="team=storage")["ETag"]
    assert tags_of(b, bucket, "k") == {"team": "storage"}
    b.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "x", "Value": "1"}]})
    assert tags_of(a, bucket, "k") == {"x": "1"}
    head = a.head_object(Bucket=bucket, Key="k")
    assert head["ETag"] == etag and head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"
    assert b.get_object(Bucket=bucket, Key="k")["Body"].read() == body
    b.delete_object_tagging(Bucket=bucket, Key="k")
    assert tags_of(a, bucket, "k") == {}
    # Multipart create keeps its tags through Complete; copy takes the source's.
    up = a.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="a=1&b=2")["UploadId"]
    part = a.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"part")
    done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    b.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=done)
    b.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/mp")
    assert tags_of(a, bucket, "mp") == tags_of(a, bucket, "copy") == {"a": "1", "b": "2"}
    # Bucket tags, set through one gateway, read through the other.
    a.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "cost", "Value": "42"}]})
    assert b.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "cost", "Value": "42"}]
    b.delete_bucket_tagging(Bucket=bucket)
    expect_error(a.get_bucket_tagging, "NoSuchTagSet", 404, Bucket=bucket)
    attrs = b.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag", "ObjectSize"])
    assert (attrs["ETag"], attrs["ObjectSize"]) == (etag.strip('"'), len(body))


def test_conditional_deletes_across_gateways(cluster: DevCluster) -> None:
    a, b = clients(cluster)
    bucket = unique("cond")
    a.create_bucket(Bucket=bucket)
    old = a.put_object(Bucket=bucket, Key="k", Body=b"old")["ETag"]
    new = b.put_object(Bucket=bucket, Key="k", Body=b"new")["ETag"]
    expect_error(a.delete_object, "PreconditionFailed", 412, Bucket=bucket, Key="k", IfMatch=old)
    assert b.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    # Two gateways race to delete the same version: exactly one deletes it, the other finds nothing.
    outcomes: list[str] = []

    def delete(s3: Any) -> None:
        try:
            s3.delete_object(Bucket=bucket, Key="k", IfMatch=new)
            outcomes.append("deleted")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=delete, args=(s3,)) for s3 in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["NoSuchKey"] * 3 + ["deleted"], outcomes
    expect_error(b.head_object, "404", 404, Bucket=bucket, Key="k")
    etags = {k: a.put_object(Bucket=bucket, Key=k, Body=k.encode())["ETag"] for k in ("x", "y")}
    objects = [{"Key": "x", "ETag": etags["x"]}, {"Key": "y", "ETag": etags["x"]}]
    resp = b.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    assert [d["Key"] for d in resp["Deleted"]] == ["x"]
    assert [(e["Key"], e["Code"]) for e in resp["Errors"]] == [("y", "PreconditionFailed")]
    assert [o["Key"] for o in a.list_objects_v2(Bucket=bucket)["Contents"]] == ["y"]
