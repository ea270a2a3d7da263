"""Canned ACLs, ownership controls and the public access block, through boto3 and anonymous requests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policy_helpers import ARN, User, anonymous, make_user, policy, public_read, statement
from tests.s3_helpers import expect_error, signed_request, unique
from tests.server_process import ServerProcess

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture(scope="module")
def carol(server: ServerProcess) -> User:
    return make_user(server.endpoint, "carol-" + unique("u")[-6:])


@pytest.fixture
def acl_bucket(s3: Any) -> str:
    """A bucket that takes ACLs (ObjectWriter), unlike S3's default BucketOwnerEnforced."""
    name = unique("acl")
    s3.create_bucket(Bucket=name, ObjectOwnership="ObjectWriter")
    return name


def _grants(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("URI") or g["Grantee"].get("Type", ""), g["Permission"]) for g in acl["Grants"]}


def test_new_buckets_enforce_bucket_ownership(s3: Any, bucket: str) -> None:
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert _grants(acl) == {("CanonicalUser", "FULL_CONTROL")}
    name = unique("pub")
    expect_error(lambda: s3.create_bucket(Bucket=name, ACL="public-read"), "InvalidBucketAclWithObjectOwnership", 400)
    expect_error(lambda: s3.head_bucket(Bucket=name), "404", 404)  # nothing created
    expect_error(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"), "AccessControlListNotSupported", 400)
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    expect_error(
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read"),
        "AccessControlListNotSupported",
        400,
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    expect_error(
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="m", ACL="public-read"),
        "AccessControlListNotSupported",
        400,
    )


def test_ownership_controls_put_get_delete(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "ObjectWriter"}]
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    enforced = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    expect_error(
        lambda: s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=enforced),
        "InvalidBucketAclWithObjectOwnership",
        400,
    )
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    expect_error(lambda: s3.get_bucket_ownership_controls(Bucket=bucket), "OwnershipControlsNotFoundError", 404)
    resp = signed_request(
        server,
        "PUT",
        f"/{bucket}?ownershipControls",
        b"<OwnershipControls><Rule><ObjectOwnership>Mine</ObjectOwnership></Rule></OwnershipControls>",
    )
    assert resp.status == 400 and resp.error()["Code"] == "MalformedXML"


def test_public_read_bucket_acl_lists_but_does_not_read_objects(
    server: ServerProcess, s3: Any, acl_bucket: str
) -> None:
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"v")
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}?list-type=2")[0] == 403
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read")
    assert _grants(s3.get_bucket_acl(Bucket=acl_bucket)) == {("CanonicalUser", "FULL_CONTROL"), (ALL_USERS, "READ")}
    status, body = anonymous(server.endpoint, "GET", f"/{acl_bucket}?list-type=2")
    assert status == 200 and b"<Key>k</Key>" in body
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/k")[0] == 403  # READ on a bucket is listing, as S3
    assert anonymous(server.endpoint, "PUT", f"/{acl_bucket}/new", b"x")[0] == 403


def test_public_read_write_bucket_acl_takes_anonymous_writes(server: ServerProcess, s3: Any, acl_bucket: str) -> None:
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read-write")
    assert (ALL_USERS, "WRITE") in _grants(s3.get_bucket_acl(Bucket=acl_bucket))
    assert anonymous(server.endpoint, "PUT", f"/{acl_bucket}/drop", b"dropped")[0] == 200
    assert s3.get_object(Bucket=acl_bucket, Key="drop")["Body"].read() == b"dropped"
    assert anonymous(server.endpoint, "DELETE", f"/{acl_bucket}/drop")[0] == 204
    assert anonymous(server.endpoint, "DELETE", f"/{acl_bucket}")[0] == 403  # never the bucket itself
    assert anonymous(server.endpoint, "PUT", f"/{acl_bucket}?acl", **{"x-amz-acl": "private"})[0] == 403
    chunked = {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": "1"}
    status, body = anonymous(server.endpoint, "PUT", f"/{acl_bucket}/framed", b"1\r\nx\r\n0\r\n\r\n", **chunked)
    assert status == 400 and b"InvalidRequest" in body


def test_authenticated_read_bucket_acl(server: ServerProcess, s3: Any, acl_bucket: str, carol: User) -> None:
    s3.put_bucket_acl(Bucket=acl_bucket, ACL="authenticated-read")
    assert (AUTH_USERS, "READ") in _grants(s3.get_bucket_acl(Bucket=acl_bucket))
    assert carol.s3.list_objects_v2(Bucket=acl_bucket)["KeyCount"] == 0
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}?list-type=2")[0] == 403
    expect_error(lambda: carol.s3.put_object(Bucket=acl_bucket, Key="x", Body=b"x"), "AccessDenied", 403)


@pytest.mark.parametrize(
    ("acl", "anyone", "users"),
    [
        ("private", False, False),
        ("public-read", True, True),
        ("public-read-write", True, True),
        ("authenticated-read", False, True),
        ("bucket-owner-read", False, False),
        ("bucket-owner-full-control", False, False),
    ],
)
def test_object_canned_acls(
    server: ServerProcess, s3: Any, acl_bucket: str, carol: User, acl: str, anyone: bool, users: bool
) -> None:
    s3.put_object(Bucket=acl_bucket, Key="put", Body=b"p", ACL=acl)
    s3.copy_object(Bucket=acl_bucket, Key="copied", CopySource={"Bucket": acl_bucket, "Key": "put"}, ACL=acl)
    up = s3.create_multipart_upload(Bucket=acl_bucket, Key="multi", ACL=acl)
    part = s3.upload_part(Bucket=acl_bucket, Key="multi", UploadId=up["UploadId"], PartNumber=1, Body=b"m")
    s3.complete_multipart_upload(
        Bucket=acl_bucket,
        Key="multi",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    for key in ("put", "copied", "multi"):
        assert (anonymous(server.endpoint, "GET", f"/{acl_bucket}/{key}")[0] == 200) is anyone, key
        got = 200
        try:
            carol.s3.get_object(Bucket=acl_bucket, Key=key)
        except Exception:
            got = 403
        assert (got == 200) is users, key
    grants = _grants(s3.get_object_acl(Bucket=acl_bucket, Key="put"))
    assert (("CanonicalUser", "FULL_CONTROL") in grants) and ((ALL_USERS, "READ") in grants) is acl.startswith("public")


def test_put_object_acl_changes_only_the_acl(server: ServerProcess, s3: Any, acl_bucket: str) -> None:
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"body", Metadata={"m": "1"})
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/k")[0] == 403
    s3.put_object_acl(Bucket=acl_bucket, Key="k", ACL="public-read")
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/k") == (200, b"body")
    assert s3.head_object(Bucket=acl_bucket, Key="k")["Metadata"] == {"m": "1"}
    s3.put_object_acl(Bucket=acl_bucket, Key="k", ACL="private")
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/k")[0] == 403
    expect_error(lambda: s3.put_object_acl(Bucket=acl_bucket, Key="none", ACL="private"), "NoSuchKey", 404)


def test_grants_to_others_are_not_implemented_and_bad_acls_refused(s3: Any, acl_bucket: str) -> None:
    expect_error(lambda: s3.put_bucket_acl(Bucket=acl_bucket, GrantRead="id=abc"), "NotImplemented", 501)
    expect_error(
        lambda: s3.put_object(Bucket=acl_bucket, Key="g", Body=b"x", GrantRead="id=abc"), "NotImplemented", 501
    )
    policy_doc = {
        "Owner": {"ID": "x"},
        "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}],
    }
    expect_error(lambda: s3.put_bucket_acl(Bucket=acl_bucket, AccessControlPolicy=policy_doc), "NotImplemented", 501)
    expect_error(lambda: s3.put_bucket_acl(Bucket=acl_bucket, ACL="everyone-please"), "InvalidArgument", 400)
    assert _grants(s3.get_bucket_acl(Bucket=acl_bucket)) == {("CanonicalUser", "FULL_CONTROL")}  # unchanged


def test_public_access_block_put_get_delete(s3: Any, bucket: str) -> None:
    expect_error(lambda: s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration", 404)
    config = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False,
    }
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=config)
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == config
    s3.delete_public_access_block(Bucket=bucket)
    expect_error(lambda: s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration", 404)


def _block(s3: Any, bucket: str, **settings: bool) -> None:
    names = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={n: settings.get(n, False) for n in names})


def test_block_public_policy_and_acls(s3: Any, acl_bucket: str) -> None:
    _block(s3, acl_bucket, BlockPublicPolicy=True, BlockPublicAcls=True)
    expect_error(lambda: s3.put_bucket_policy(Bucket=acl_bucket, Policy=public_read(acl_bucket)), "AccessDenied", 403)
    narrowed = policy(
        statement(
            "Allow",
            "*",
            "s3:GetObject",
            f"{ARN}{acl_bucket}/*",
            Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}},
        )
    )
    s3.put_bucket_policy(Bucket=acl_bucket, Policy=narrowed)  # not public: one source address only
    expect_error(lambda: s3.put_bucket_acl(Bucket=acl_bucket, ACL="public-read"), "AccessDenied", 403)
    expect_error(lambda: s3.put_object(Bucket=acl_bucket, Key="k", Body=b"x", ACL="public-read"), "AccessDenied", 403)
    s3.put_object(Bucket=acl_bucket, Key="k", Body=b"x", ACL="private")


def test_ignore_public_acls_and_restrict_public_buckets(
    server: ServerProcess, s3: Any, acl_bucket: str, carol: User
) -> None:
    s3.put_object(Bucket=acl_bucket, Key="acl", Body=b"a", ACL="public-read")
    s3.put_object(Bucket=acl_bucket, Key="pol", Body=b"p")
    s3.put_bucket_policy(Bucket=acl_bucket, Policy=public_read(acl_bucket))
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/acl")[0] == 200
    _block(s3, acl_bucket, IgnorePublicAcls=True)
    s3.delete_bucket_policy(Bucket=acl_bucket)
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/acl")[0] == 403
    s3.put_bucket_policy(Bucket=acl_bucket, Policy=public_read(acl_bucket))
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/pol")[0] == 200
    _block(s3, acl_bucket, RestrictPublicBuckets=True)
    assert anonymous(server.endpoint, "GET", f"/{acl_bucket}/pol")[0] == 403
    assert carol.s3.get_object(Bucket=acl_bucket, Key="pol")["Body"].read() == b"p"  # users of the account still
