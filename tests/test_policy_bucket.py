"""Bucket policies through boto3 and raw anonymous requests: the operations, anonymous access, evaluation
order (explicit Deny wins), and each condition key a request sets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.policy_helpers import (
    ARN,
    User,
    anonymous,
    anonymous_client,
    make_user,
    policy,
    public_read,
    statement,
    user_arn,
)
from tests.s3_helpers import expect_error, unique
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> User:
    return make_user(server.endpoint, "alice-" + unique("u")[-6:])


@pytest.fixture(scope="module")
def bob(server: ServerProcess) -> User:
    return make_user(server.endpoint, "bob-" + unique("u")[-6:])


def test_put_get_delete_policy_and_status(s3: Any, bucket: str) -> None:
    expect_error(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)
    expect_error(lambda: s3.get_bucket_policy_status(Bucket=bucket), "NoSuchBucketPolicy", 404)
    doc = public_read(bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(doc)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    private = policy(statement("Allow", {"AWS": user_arn("someone")}, "s3:GetObject", f"{ARN}{bucket}/*"))
    s3.put_bucket_policy(Bucket=bucket, Policy=private)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    s3.delete_bucket_policy(Bucket=bucket)
    expect_error(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("not json", "valid JSON"),
        ("[]", "valid JSON"),
        ('{"Version": "2012-10-17"}', "Statement"),
        ('{"Version": "1999-01-01", "Statement": []}', "version"),
        (policy({"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}), "Effect"),
        (policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}), "Principal"),
        (policy(statement("Allow", "*", "s3:NoSuchThing", "*")), "invalid action"),
        (policy(statement("Allow", "*", "iam:PassRole", "*")), "invalid action"),
        (policy(statement("Allow", "*", "s3:GetObject", "arn:aws:s3:::other-bucket/*")), "invalid resource"),
        (policy(statement("Allow", {"CanonicalUser": "x"}, "s3:GetObject", "*")), "principal"),
        (
            policy(statement("Allow", "*", "s3:GetObject", "*", Condition={"StringFuzzy": {"aws:username": "a"}})),
            "operator",
        ),
        (
            policy(statement("Allow", "*", "s3:GetObject", "*", Condition={"IpAddress": {"aws:SourceIp": "nope"}})),
            "CIDR",
        ),
        (
            policy(statement("Allow", "*", "s3:GetObject", "*", Condition={"StringEquals": {"aws:Nonsense": "a"}})),
            "key",
        ),
        (policy({**statement("Allow", "*", "s3:GetObject", "*"), "NotAction": "s3:PutObject"}), "exactly one"),
    ],
)
def test_malformed_policies_are_refused_with_the_reason(s3: Any, bucket: str, doc: str, reason: str) -> None:
    resp = expect_error(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=doc), "MalformedPolicy", 400)
    assert reason.lower() in resp["Error"]["Message"].lower()
    expect_error(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)  # nothing stored


def test_not_principal_is_not_implemented(s3: Any, bucket: str) -> None:
    doc = json.dumps({"Statement": [{"Effect": "Deny", "NotPrincipal": {"AWS": "x"}, "Action": "*", "Resource": "*"}]})
    expect_error(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=doc), "NotImplemented", 501)


def test_anonymous_get_allowed_by_policy_put_refused(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub/a.txt", Body=b"hello")
    assert anonymous(server.endpoint, "GET", f"/{bucket}/pub/a.txt")[0] == 403
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket))
    assert anonymous(server.endpoint, "GET", f"/{bucket}/pub/a.txt") == (200, b"hello")
    assert anonymous(server.endpoint, "HEAD", f"/{bucket}/pub/a.txt")[0] == 200
    status, body = anonymous(server.endpoint, "PUT", f"/{bucket}/pub/a.txt", b"evil")
    assert status == 403 and b"AccessDenied" in body
    assert anonymous(server.endpoint, "DELETE", f"/{bucket}/pub/a.txt")[0] == 403
    assert anonymous(server.endpoint, "GET", f"/{bucket}?list-type=2")[0] == 403  # listing not granted
    assert anonymous(server.endpoint, "GET", "/")[0] == 403  # ListBuckets: never anonymous
    assert s3.get_object(Bucket=bucket, Key="pub/a.txt")["Body"].read() == b"hello"  # unchanged
    anon = anonymous_client(server.endpoint)
    assert anon.get_object(Bucket=bucket, Key="pub/a.txt")["Body"].read() == b"hello"
    expect_error(lambda: anon.put_object(Bucket=bucket, Key="x", Body=b"x"), "AccessDenied", 403)
    s3.delete_bucket_policy(Bucket=bucket)  # a removed right is gone at once
    assert anonymous(server.endpoint, "GET", f"/{bucket}/pub/a.txt")[0] == 403


def test_explicit_deny_beats_an_allow_from_another_statement(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="open/1", Body=b"1")
    s3.put_object(Bucket=bucket, Key="secret/1", Body=b"2")
    doc = policy(
        statement("Allow", "*", ["s3:GetObject", "s3:ListBucket"], [f"{ARN}{bucket}", f"{ARN}{bucket}/*"]),
        statement("Deny", "*", "s3:GetObject", f"{ARN}{bucket}/secret/*"),
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert anonymous(server.endpoint, "GET", f"/{bucket}/open/1") == (200, b"1")
    assert anonymous(server.endpoint, "GET", f"/{bucket}/secret/1")[0] == 403
    assert anonymous(server.endpoint, "GET", f"/{bucket}?list-type=2")[0] == 200
    # A Deny applies to the owner's own users too (not to the root).
    assert s3.get_object(Bucket=bucket, Key="secret/1")["Body"].read() == b"2"


def test_user_allowed_one_prefix_of_another_users_bucket(alice: User, bob: User) -> None:
    bucket = unique("alice")
    alice.s3.create_bucket(Bucket=bucket)
    alice.s3.put_object(Bucket=bucket, Key="shared/doc", Body=b"for bob")
    alice.s3.put_object(Bucket=bucket, Key="private/doc", Body=b"alice only")
    expect_error(lambda: bob.s3.get_object(Bucket=bucket, Key="shared/doc"), "AccessDenied", 403)
    doc = policy(
        statement("Allow", {"AWS": user_arn(bob.name)}, ["s3:GetObject", "s3:PutObject"], f"{ARN}{bucket}/shared/*"),
        statement(
            "Allow",
            {"AWS": [bob.access_key]},
            "s3:ListBucket",
            f"{ARN}{bucket}",
            Condition={"StringLike": {"s3:prefix": "shared/*"}},
        ),
    )
    alice.s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert bob.s3.get_object(Bucket=bucket, Key="shared/doc")["Body"].read() == b"for bob"
    bob.s3.put_object(Bucket=bucket, Key="shared/reply", Body=b"hi")
    expect_error(lambda: bob.s3.get_object(Bucket=bucket, Key="private/doc"), "AccessDenied", 403)
    expect_error(lambda: bob.s3.put_object(Bucket=bucket, Key="private/x", Body=b"x"), "AccessDenied", 403)
    expect_error(lambda: bob.s3.delete_object(Bucket=bucket, Key="shared/doc"), "AccessDenied", 403)
    keys = [o["Key"] for o in bob.s3.list_objects_v2(Bucket=bucket, Prefix="shared/")["Contents"]]
    assert keys == ["shared/doc", "shared/reply"]
    expect_error(lambda: bob.s3.list_objects_v2(Bucket=bucket, Prefix="private/"), "AccessDenied", 403)
    expect_error(lambda: bob.s3.list_objects_v2(Bucket=bucket), "AccessDenied", 403)
    assert bucket not in [b["Name"] for b in bob.s3.list_buckets()["Buckets"]]  # only a prefix may be listed
    expect_error(lambda: bob.s3.put_bucket_policy(Bucket=bucket, Policy=doc), "AccessDenied", 403)
    expect_error(lambda: bob.s3.delete_bucket(Bucket=bucket), "AccessDenied", 403)
    # Copying out of the shared prefix is a GetObject on the source; into another bucket of alice's is refused.
    other = unique("bob")
    bob.s3.create_bucket(Bucket=other)
    bob.s3.copy_object(Bucket=other, Key="copy", CopySource={"Bucket": bucket, "Key": "shared/doc"})
    src = {"Bucket": bucket, "Key": "private/doc"}
    expect_error(lambda: bob.s3.copy_object(Bucket=other, Key="c2", CopySource=src), "AccessDenied", 403)


def _condition_policy(bucket: str, condition: dict[str, Any]) -> str:
    return policy(
        statement(
            "Allow", "*", ["s3:GetObject", "s3:ListBucket"], [f"{ARN}{bucket}", f"{ARN}{bucket}/*"], Condition=condition
        )
    )


@pytest.mark.parametrize(
    ("condition", "allowed"),
    [
        ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, True),
        ({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}, False),
        ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, True),
        ({"Bool": {"aws:SecureTransport": "true"}}, False),
        ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, True),
        ({"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, False),
        ({"NumericGreaterThan": {"aws:EpochTime": 1577836800}}, True),
        ({"Null": {"aws:username": "true"}}, True),  # anonymous: no user name
        ({"Null": {"aws:username": "false"}}, False),
        ({"StringEquals": {"aws:PrincipalType": "Anonymous"}}, True),
        ({"StringNotEqualsIfExists": {"aws:username": "mallory"}}, True),
        ({"StringEqualsIfExists": {"aws:username": "mallory"}}, True),
        ({"StringEquals": {"aws:username": "mallory"}}, False),
    ],
)
def test_conditions_on_an_anonymous_get(
    server: ServerProcess, s3: Any, bucket: str, condition: dict[str, Any], allowed: bool
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    s3.put_bucket_policy(Bucket=bucket, Policy=_condition_policy(bucket, condition))
    assert anonymous(server.endpoint, "GET", f"/{bucket}/k")[0] == (200 if allowed else 403)


@pytest.mark.parametrize(
    ("condition", "query", "allowed"),
    [
        ({"StringEquals": {"s3:prefix": "docs/"}}, "?list-type=2&prefix=docs/", True),
        ({"StringEquals": {"s3:prefix": "docs/"}}, "?list-type=2&prefix=other/", False),
        ({"StringNotLike": {"s3:prefix": "secret*"}}, "?list-type=2&prefix=docs/", True),
        ({"StringNotLike": {"s3:prefix": "secret*"}}, "?list-type=2&prefix=secret/", False),
        ({"StringEquals": {"s3:delimiter": "/"}}, "?list-type=2&delimiter=/", True),
        ({"StringEquals": {"s3:delimiter": "/"}}, "?list-type=2", False),
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, "?list-type=2&max-keys=5", True),
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, "?list-type=2&max-keys=50", False),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "DOCS/"}}, "?list-type=2&prefix=docs/", True),
        ({"StringNotEqualsIgnoreCase": {"s3:prefix": "DOCS/"}}, "?list-type=2&prefix=docs/", False),
    ],
)
def test_conditions_on_listing_keys(
    server: ServerProcess, s3: Any, bucket: str, condition: dict[str, Any], query: str, allowed: bool
) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=_condition_policy(bucket, condition))
    assert anonymous(server.endpoint, "GET", f"/{bucket}{query}")[0] == (200 if allowed else 403)


def test_conditions_on_write_headers(server: ServerProcess, s3: Any, bucket: str, alice: User) -> None:
    """s3:x-amz-acl and s3:if-none-match: a user may only create new keys, never overwrite."""
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}
    )
    doc = policy(
        statement("Allow", {"AWS": user_arn(alice.name)}, "s3:PutObject", f"{ARN}{bucket}/*"),
        statement(
            "Deny",
            {"AWS": user_arn(alice.name)},
            "s3:PutObject",
            f"{ARN}{bucket}/*",
            Condition={"Null": {"s3:if-none-match": "true"}},
        ),
        statement(
            "Deny", "*", "s3:PutObject", f"{ARN}{bucket}/*", Condition={"StringEquals": {"s3:x-amz-acl": "public-read"}}
        ),
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    expect_error(lambda: alice.s3.put_object(Bucket=bucket, Key="n", Body=b"1"), "AccessDenied", 403)
    alice.s3.put_object(Bucket=bucket, Key="n", Body=b"1", IfNoneMatch="*")
    expect_error(
        lambda: alice.s3.put_object(Bucket=bucket, Key="n", Body=b"2", IfNoneMatch="*"), "PreconditionFailed", 412
    )
    owner = make_user(server.endpoint, "owner-" + unique("u")[-6:])
    mine = unique("acl")
    owner.s3.create_bucket(Bucket=mine, ObjectOwnership="BucketOwnerPreferred")
    owner.s3.put_bucket_policy(
        Bucket=mine,
        Policy=policy(
            statement(
                "Deny",
                "*",
                "s3:PutObject",
                f"{ARN}{mine}/*",
                Condition={"StringEquals": {"s3:x-amz-acl": "public-read"}},
            )
        ),
    )
    expect_error(lambda: owner.s3.put_object(Bucket=mine, Key="p", Body=b"1", ACL="public-read"), "AccessDenied", 403)
    owner.s3.put_object(Bucket=mine, Key="p", Body=b"1", ACL="private")


def test_aws_username_condition_and_user_principal(
    server: ServerProcess, s3: Any, bucket: str, alice: User, bob: User
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    doc = policy(
        statement(
            "Allow", "*", "s3:GetObject", f"{ARN}{bucket}/*", Condition={"StringLike": {"aws:username": "alice-*"}}
        )
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert alice.s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    expect_error(lambda: bob.s3.get_object(Bucket=bucket, Key="k"), "AccessDenied", 403)
    assert anonymous(server.endpoint, "GET", f"/{bucket}/k")[0] == 403


def test_not_action_and_not_resource(server: ServerProcess, s3: Any, bucket: str, bob: User) -> None:
    s3.put_object(Bucket=bucket, Key="a/1", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b/1", Body=b"2")
    doc = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": user_arn(bob.name)},
            "Action": "s3:*",
            "NotResource": f"{ARN}{bucket}/b/*",
        },
        {
            "Effect": "Deny",
            "Principal": {"AWS": user_arn(bob.name)},
            "NotAction": ["s3:Get*", "s3:List*"],
            "Resource": "*",
        },
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert bob.s3.get_object(Bucket=bucket, Key="a/1")["Body"].read() == b"1"
    expect_error(lambda: bob.s3.get_object(Bucket=bucket, Key="b/1"), "AccessDenied", 403)
    expect_error(lambda: bob.s3.put_object(Bucket=bucket, Key="a/2", Body=b"x"), "AccessDenied", 403)


def test_a_single_statement_object_and_action_wildcards(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    doc = json.dumps(
        {
            "Statement": {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "s3:Get*",
                "Resource": f"{ARN}{bucket}/?",
            }
        }
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=doc)
    assert anonymous(server.endpoint, "GET", f"/{bucket}/k") == (200, b"v")
    s3.put_object(Bucket=bucket, Key="kk", Body=b"v")
    assert anonymous(server.endpoint, "GET", f"/{bucket}/kk")[0] == 403  # ? is one character


def test_policy_on_missing_bucket_and_by_strangers(s3: Any, bob: User, bucket: str) -> None:
    expect_error(lambda: s3.put_bucket_policy(Bucket=unique("none"), Policy=public_read("x")), "NoSuchBucket", 404)
    expect_error(lambda: bob.s3.put_bucket_policy(Bucket=bucket, Policy=public_read(bucket)), "AccessDenied", 403)
    expect_error(lambda: bob.s3.get_bucket_policy(Bucket=bucket), "AccessDenied", 403)


def test_list_buckets_shows_what_a_policy_lets_a_user_list(alice: User, bob: User) -> None:
    bucket = unique("listed")
    alice.s3.create_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in bob.s3.list_buckets()["Buckets"]]
    grant = statement("Allow", {"AWS": user_arn(bob.name)}, "s3:ListBucket", f"{ARN}{bucket}")
    alice.s3.put_bucket_policy(Bucket=bucket, Policy=policy(grant))
    assert bucket in [b["Name"] for b in bob.s3.list_buckets(Prefix=bucket[:3])["Buckets"]]
    assert bob.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_version_is_read_with_get_object_version(alice: User, bob: User) -> None:
    bucket = unique("versioned")
    alice.s3.create_bucket(Bucket=bucket)
    alice.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = alice.s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    alice.s3.put_object(Bucket=bucket, Key="k", Body=b"v2")
    grant = statement("Allow", {"AWS": user_arn(bob.name)}, "s3:GetObject", f"{ARN}{bucket}/*")
    alice.s3.put_bucket_policy(Bucket=bucket, Policy=policy(grant))
    assert bob.s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    expect_error(lambda: bob.s3.get_object(Bucket=bucket, Key="k", VersionId=version), "AccessDenied", 403)
    versions = statement("Allow", {"AWS": user_arn(bob.name)}, "s3:GetObjectVersion", f"{ARN}{bucket}/*")
    alice.s3.put_bucket_policy(Bucket=bucket, Policy=policy(grant, versions))
    assert bob.s3.get_object(Bucket=bucket, Key="k", VersionId=version)["Body"].read() == b"v1"
    expect_error(lambda: bob.s3.list_object_versions(Bucket=bucket), "AccessDenied", 403)


def test_notification_configuration_is_judged_as_its_s3_actions(alice: User, bob: User) -> None:
    bucket = unique("notified")
    alice.s3.create_bucket(Bucket=bucket)
    expect_error(lambda: bob.s3.get_bucket_notification_configuration(Bucket=bucket), "AccessDenied", 403)
    grant = statement("Allow", {"AWS": user_arn(bob.name)}, "s3:GetBucketNotification", f"{ARN}{bucket}")
    alice.s3.put_bucket_policy(Bucket=bucket, Policy=policy(grant))
    assert "QueueConfigurations" not in bob.s3.get_bucket_notification_configuration(Bucket=bucket)
    empty: dict[str, Any] = {}
    put = bob.s3.put_bucket_notification_configuration
    expect_error(lambda: put(Bucket=bucket, NotificationConfiguration=empty), "AccessDenied", 403)
    writes = statement("Allow", {"AWS": user_arn(bob.name)}, "s3:PutBucketNotification", f"{ARN}{bucket}")
    alice.s3.put_bucket_policy(Bucket=bucket, Policy=policy(grant, writes))
    put(Bucket=bucket, NotificationConfiguration=empty)
