"""Conditional requests (If-Match, If-None-Match, If-(Un)Modified-Since) on GET, HEAD and PUT."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from email.utils import formatdate
from typing import Any

import pytest

from tests.s3_helpers import (
    expect_error,
    get_body,
    signed_request,
)
from tests.server_process import ServerProcess

# -- conditional requests ------------------------------------------------------------------------------------


@pytest.fixture
def conditional(s3: Any, bucket: str) -> tuple[str, str, datetime]:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="c")
    return bucket, put["ETag"], head["LastModified"]


@pytest.mark.parametrize("op", ["get_object", "head_object"])
def test_if_match(s3: Any, conditional: tuple[str, str, datetime], op: str) -> None:
    bucket, etag, _ = conditional
    call = getattr(s3, op)
    assert call(Bucket=bucket, Key="c", IfMatch=etag)["ETag"] == etag
    assert call(Bucket=bucket, Key="c", IfMatch="*")["ETag"] == etag
    assert call(Bucket=bucket, Key="c", IfMatch=f'"nope", {etag}')["ETag"] == etag
    code = "PreconditionFailed" if op == "get_object" else "412"
    expect_error(call, code, 412, Bucket=bucket, Key="c", IfMatch='"0123456789abcdef0123456789abcdef"')


@pytest.mark.parametrize("op", ["get_object", "head_object"])
def test_if_none_match(s3: Any, conditional: tuple[str, str, datetime], op: str) -> None:
    bucket, etag, _ = conditional
    call = getattr(s3, op)
    expect_error(call, "304", 304, Bucket=bucket, Key="c", IfNoneMatch=etag)
    expect_error(call, "304", 304, Bucket=bucket, Key="c", IfNoneMatch="*")
    assert call(Bucket=bucket, Key="c", IfNoneMatch='"0123456789abcdef0123456789abcdef"')["ETag"] == etag


@pytest.mark.parametrize("op", ["get_object", "head_object"])
def test_if_modified_since(s3: Any, conditional: tuple[str, str, datetime], op: str) -> None:
    bucket, etag, modified = conditional
    call = getattr(s3, op)
    expect_error(call, "304", 304, Bucket=bucket, Key="c", IfModifiedSince=modified)
    expect_error(call, "304", 304, Bucket=bucket, Key="c", IfModifiedSince=modified + timedelta(hours=1))
    assert call(Bucket=bucket, Key="c", IfModifiedSince=modified - timedelta(hours=1))["ETag"] == etag


@pytest.mark.parametrize("op", ["get_object", "head_object"])
def test_if_unmodified_since(s3: Any, conditional: tuple[str, str, datetime], op: str) -> None:
    bucket, etag, modified = conditional
    call = getattr(s3, op)
    code = "PreconditionFailed" if op == "get_object" else "412"
    expect_error(call, code, 412, Bucket=bucket, Key="c", IfUnmodifiedSince=modified - timedelta(hours=1))
    assert call(Bucket=bucket, Key="c", IfUnmodifiedSince=modified)["ETag"] == etag
    # If-Match that holds makes a failing If-Unmodified-Since irrelevant (RFC 7232 order, as S3).
    past = modified - timedelta(hours=1)
    assert call(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=past)["ETag"] == etag


def test_not_modified_carries_validators(server: ServerProcess, conditional: tuple[str, str, datetime]) -> None:
    bucket, etag, modified = conditional
    for method in ("GET", "HEAD"):
        resp = signed_request(server, method, f"/{bucket}/c", headers={"If-None-Match": etag})
        assert (resp.status, resp.body) == (304, b"")
        assert resp.headers["ETag"] == etag
        assert resp.headers["Last-Modified"] == formatdate(modified.timestamp(), usegmt=True)
        assert resp.headers["x-amz-request-id"]


def test_conditional_put_races(s3: Any, bucket: str) -> None:
    """Of concurrent If-None-Match: * writes of one key exactly one wins, and its bytes are the object."""

    def attempt(i: int) -> int:
        try:
            s3.put_object(Bucket=bucket, Key="race", Body=f"writer {i}".encode(), IfNoneMatch="*")
            return i
        except s3.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return -1

    with ThreadPoolExecutor(6) as pool:
        winners = [i for i in pool.map(attempt, range(6)) if i >= 0]
    assert len(winners) == 1
    assert get_body(s3, bucket, "race") == f"writer {winners[0]}".encode()


def test_conditional_put_if_none_match(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="new", Body=b"first", IfNoneMatch="*")
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=bucket, Key="new", Body=b"second", IfNoneMatch="*")
    assert get_body(s3, bucket, "new") == b"first"


def test_conditional_put_if_match(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="m", Body=b"v1")["ETag"]
    etag2 = s3.put_object(Bucket=bucket, Key="m", Body=b"v2", IfMatch=etag)["ETag"]
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=bucket, Key="m", Body=b"v3", IfMatch=etag)
    assert get_body(s3, bucket, "m") == b"v2"
    assert s3.head_object(Bucket=bucket, Key="m")["ETag"] == etag2
    expect_error(s3.put_object, "NoSuchKey", 404, Bucket=bucket, Key="absent", Body=b"v", IfMatch=etag)
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="absent")
