"""Object and bucket tagging through boto3 (default settings) against a real embedded server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.s3_helpers import MiB, expect_error, get_body, md5_b64, signed_request, unique
from tests.server_process import ServerProcess
from tests.test_users import add_user, user_client


def tag_set(tags: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def tags_of(s3: Any, bucket: str, key: str, **kwargs: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key, **kwargs)["TagSet"]}


def tagging_count(s3: Any, bucket: str, key: str) -> str | None:
    """x-amz-tagging-count as GET and HEAD give it (they must agree)."""
    head = s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count")
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count") == head
    assert got.get("TagCount") == (int(head) if head else None)
    return head


# -- object tagging --------------------------------------------------------------------------------------------


def test_put_get_delete_object_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"tagged body", Metadata={"m": "1"})
    before = s3.head_object(Bucket=bucket, Key="k")
    assert tags_of(s3, bucket, "k") == {} and tagging_count(s3, bucket, "k") is None
    tags = {"project": "tessera", "empty": "", "ünïcode key": "välue / with = signs"}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tag_set(tags))
    assert tags_of(s3, bucket, "k") == tags
    assert tagging_count(s3, bucket, "k") == "3"
    after = s3.head_object(Bucket=bucket, Key="k")
    # Tags are not the object: its data, ETag, date and metadata stay.
    for field in ("ETag", "LastModified", "Metadata", "ContentLength"):
        assert after[field] == before[field], field
    assert get_body(s3, bucket, "k") == b"tagged body"
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tag_set({"only": "one"}))
    assert tags_of(s3, bucket, "k") == {"only": "one"}
    assert s3.delete_object_tagging(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tags_of(s3, bucket, "k") == {} and tagging_count(s3, bucket, "k") is None
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_tags_of_a_multipart_object_keep_its_parts(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="a=1&b=2")["UploadId"]
    parts = []
    for n, body in ((1, b"x" * (5 * MiB)), (2, b"tail")):
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    assert tags_of(s3, bucket, "mp") == {"a": "1", "b": "2"}
    s3.put_object_tagging(Bucket=bucket, Key="mp", Tagging=tag_set({"c": "3"}))
    assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)["ContentLength"] == 4
    assert get_body(s3, bucket, "mp") == b"x" * (5 * MiB) + b"tail"


def test_tagging_header_on_put(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="h", Body=b"x", Tagging="team=storage&note=a%20b%26c&blank=")
    assert tags_of(s3, bucket, "h") == {"team": "storage", "note": "a b&c", "blank": ""}
    assert tagging_count(s3, bucket, "h") == "3"
    s3.put_object(Bucket=bucket, Key="h", Body=b"y")  # an overwrite without tags has none
    assert tags_of(s3, bucket, "h") == {}


def test_copy_tagging_directive(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source", Tagging="from=src")
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/src")
    assert tags_of(s3, bucket, "copied") == {"from": "src"}
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource=f"{bucket}/src", TaggingDirective="REPLACE", Tagging="new=1"
    )
    assert tags_of(s3, bucket, "replaced") == {"new": "1"}
    s3.copy_object(Bucket=bucket, Key="none", CopySource=f"{bucket}/src", TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "none") == {}
    expect_error(
        s3.copy_object, "InvalidArgument", 400, Bucket=bucket, Key="bad", CopySource=f"{bucket}/src",
        TaggingDirective="MERGE",
    )  # fmt: skip
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="bad")


def too_many(n: int) -> dict[str, str]:
    return {f"k{i}": str(i) for i in range(n)}


@pytest.mark.parametrize(
    ("tags", "code", "message"),
    [
        (too_many(11), "BadRequest", "Object tags cannot be greater than 10"),
        ({"k" * 129: "v"}, "InvalidTag", "The TagKey you have provided is too long, max 128"),
        ({"k": "v" * 257}, "InvalidTag", "The TagValue you have provided is too long, max 256"),
        ({"aws:created": "x"}, "InvalidTag", "Your TagKey cannot be prefixed with aws:"),
    ],
)
def test_object_tag_limits(s3: Any, bucket: str, tags: dict[str, str], code: str, message: str) -> None:
    s3.put_object(Bucket=bucket, Key="lim", Body=b"x", Tagging="keep=me")
    resp = expect_error(s3.put_object_tagging, code, 400, Bucket=bucket, Key="lim", Tagging=tag_set(tags))
    assert resp["Error"]["Message"] == message
    assert tags_of(s3, bucket, "lim") == {"keep": "me"}  # refused whole: nothing changed


def test_limits_count_characters_not_bytes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="u", Body=b"x")
    tags = {"é" * 128: "ü" * 256, **too_many(9)}  # 256 and 512 bytes of UTF-8
    s3.put_object_tagging(Bucket=bucket, Key="u", Tagging=tag_set(tags))
    assert tags_of(s3, bucket, "u") == tags


def test_duplicate_keys_and_malformed_bodies(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d", Body=b"x", Tagging="keep=me")
    dup = {"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}
    resp = expect_error(s3.put_object_tagging, "InvalidTag", 400, Bucket=bucket, Key="d", Tagging=dup)
    assert resp["Error"]["Message"] == "Cannot provide multiple Tags with the same key"
    for body in (b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>", b"<Tagging><oops", b"<Other/>"):
        resp_raw = signed_request(
            server, "PUT", f"/{bucket}/d?tagging", body=body, headers={"Content-MD5": md5_b64(body)}
        )
        assert (resp_raw.status, resp_raw.error()["Code"]) == (400, "MalformedXML"), body
    body = b"<Tagging><TagSet><Tag><Key></Key><Value>x</Value></Tag></TagSet></Tagging>"  # boto3 refuses it
    resp_raw = signed_request(server, "PUT", f"/{bucket}/d?tagging", body=body, headers={"Content-MD5": md5_b64(body)})
    assert (resp_raw.status, resp_raw.error()["Code"]) == (400, "InvalidTag")
    body = b"<Tagging><TagSet/></Tagging>"
    resp_raw = signed_request(server, "PUT", f"/{bucket}/d?tagging", body=body)
    assert (resp_raw.status, resp_raw.error()["Code"]) == (400, "InvalidRequest")  # no Content-MD5 or checksum
    assert tags_of(s3, bucket, "d") == {"keep": "me"}


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("a=1&a=2", "InvalidArgument"),
        ("&".join(f"k{i}=v" for i in range(11)), "BadRequest"),
        ("aws:x=1", "InvalidTag"),
        ("k=%ff%fe", "InvalidArgument"),
        ("k=" + "v" * 257, "InvalidTag"),
    ],
)
def test_tagging_header_refused(s3: Any, bucket: str, header: str, code: str) -> None:
    expect_error(s3.put_object, code, 400, Bucket=bucket, Key="hdr", Body=b"x", Tagging=header)
    expect_error(s3.create_multipart_upload, code, 400, Bucket=bucket, Key="hdr", Tagging=header)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="hdr")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_tagging_of_missing_objects_and_versions(s3: Any, bucket: str) -> None:
    expect_error(s3.get_object_tagging, "NoSuchKey", 404, Bucket=bucket, Key="ghost")
    expect_error(s3.put_object_tagging, "NoSuchKey", 404, Bucket=bucket, Key="ghost", Tagging=tag_set({"a": "b"}))
    expect_error(s3.delete_object_tagging, "NoSuchKey", 404, Bucket=bucket, Key="ghost")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="ghost")
    s3.put_object(Bucket=bucket, Key="v", Body=b"x", Tagging="a=1")
    assert tags_of(s3, bucket, "v", VersionId="null") == {"a": "1"}
    s3.put_object_tagging(Bucket=bucket, Key="v", VersionId="null", Tagging=tag_set({"b": "2"}))
    assert tags_of(s3, bucket, "v") == {"b": "2"}
    other = "0" * 32  # well formed, naming no version (ids of another form answer 400 InvalidArgument)
    expect_error(s3.get_object_tagging, "InvalidArgument", 400, Bucket=bucket, Key="v", VersionId="3HL4kqtJlc.rm")
    expect_error(s3.get_object_tagging, "NoSuchVersion", 404, Bucket=bucket, Key="v", VersionId=other)
    expect_error(
        s3.put_object_tagging, "NoSuchVersion", 404, Bucket=bucket, Key="v", VersionId=other, Tagging=tag_set({})
    )
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=bucket, Key="v", VersionId=other)
    assert tags_of(s3, bucket, "v") == {"b": "2"}
    expect_error(s3.get_object_tagging, "NoSuchBucket", 404, Bucket="no-such-bucket-here", Key="v")


# -- bucket tagging --------------------------------------------------------------------------------------------


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    resp = expect_error(s3.get_bucket_tagging, "NoSuchTagSet", 404, Bucket=bucket)
    assert resp["Error"]["Message"] == "The TagSet does not exist"
    tags = {f"cost-centre-{i}": f"v{i}" for i in range(50)}
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set(tags))
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == tags
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set({"team": "storage"}))
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "storage"}]
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(s3.get_bucket_tagging, "NoSuchTagSet", 404, Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="still", Body=b"here")  # the bucket works as before
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["still"]


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ({f"k{i}": "v" for i in range(51)}, "InvalidTag"),
        ({"aws:x": "1"}, "InvalidTag"),
        ({"k" * 129: "1"}, "InvalidTag"),
    ],
)
def test_bucket_tag_limits(s3: Any, bucket: str, tags: dict[str, str], code: str) -> None:
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set({"keep": "me"}))
    expect_error(s3.put_bucket_tagging, code, 400, Bucket=bucket, Tagging=tag_set(tags))
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "keep", "Value": "me"}]


def test_bucket_tagging_of_a_missing_bucket(s3: Any) -> None:
    expect_error(s3.get_bucket_tagging, "NoSuchBucket", 404, Bucket="no-such-bucket-here")
    expect_error(s3.put_bucket_tagging, "NoSuchBucket", 404, Bucket="no-such-bucket-here", Tagging=tag_set({}))


def test_tagging_methods_not_allowed(server: ServerProcess, bucket: str) -> None:
    for target in (f"/{bucket}?tagging", f"/{bucket}/k?tagging", f"/{bucket}/k?attributes"):
        resp = signed_request(server, "POST", target)
        assert (resp.status, resp.error()["Code"]) == (405, "MethodNotAllowed"), target


def test_hostile_tagging_bodies(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="h", Body=b"x", Tagging="keep=me")
    laughs = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f"<!DOCTYPE d [{laughs}]><Tagging><TagSet><Tag><Key>&l9;</Key><Value>v</Value></Tag></TagSet></Tagging>"
    cases = [
        (bomb.encode(), {}, "MalformedXML"),
        (b"<Tagging><TagSet/></Tagging>", {"Content-MD5": md5_b64(b"other")}, "BadDigest"),
        (b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>v</Value></Tag>" * 200_000 + b"</TagSet></Tagging>", {},
         "MaxMessageLengthExceeded"),
    ]  # fmt: skip
    for body, headers, code in cases:
        headers = headers or {"Content-MD5": md5_b64(body)}
        for target in (f"/{bucket}/h?tagging", f"/{bucket}?tagging"):
            resp = signed_request(server, "PUT", target, body=body, headers=headers)
            assert (resp.status, resp.error()["Code"]) == (400, code), (target, code)
    assert tags_of(s3, bucket, "h") == {"keep": "me"}
    expect_error(s3.get_bucket_tagging, "NoSuchTagSet", 404, Bucket=bucket)


def test_other_users_may_not_touch_tags(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="mine", Body=b"x", Tagging="owner=root")
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set({"owner": "root"}))
    other = user_client(server.endpoint, add_user(server.endpoint, unique("tagger")))
    expect_error(other.get_object_tagging, "AccessDenied", 403, Bucket=bucket, Key="mine")
    expect_error(other.put_object_tagging, "AccessDenied", 403, Bucket=bucket, Key="mine", Tagging=tag_set({}))
    expect_error(other.delete_object_tagging, "AccessDenied", 403, Bucket=bucket, Key="mine")
    expect_error(other.get_bucket_tagging, "AccessDenied", 403, Bucket=bucket)
    expect_error(other.delete_bucket_tagging, "AccessDenied", 403, Bucket=bucket)
    attrs = {"ObjectAttributes": ["ETag"]}
    expect_error(other.get_object_attributes, "AccessDenied", 403, Bucket=bucket, Key="mine", **attrs)
    expect_error(other.delete_object, "AccessDenied", 403, Bucket=bucket, Key="mine", IfMatch="*")
    expect_error(other.create_bucket, "BucketAlreadyExists", 409, Bucket=bucket)  # 200 is for the owner only
    assert tags_of(s3, bucket, "mine") == {"owner": "root"}
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "owner", "Value": "root"}]
