"""ListObjects v1 and v2 against a real `tessera server`, with boto3."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

import pytest

from tests.s3_helpers import expect_error, signed_request, unique
from tests.server_process import ServerProcess

TREE = [
    "a/1",
    "a/2",
    "a/b/3",
    "a/b/4",
    "a/c/5",
    "b/1",
    "b/2/x",
    "c",
    "d",
    "e/",
    "e/f",
    "z z+z",
]
ODD = [
    "odd/with space",
    "odd/plus+sign",
    "odd/percent%20",
    "odd/amp&lt;",
    "odd/<xml>",
    "odd/hash#?q=1",
    "odd/tilde~",
    "odd/ünïcödé",
    "odd/日本",
    "odd/emoji😀",
    "odd/\ue000private-use",
    "odd/trailing space ",
    "odd/tab\tinside",
]
LONG_BASE = "long/" + "p" * 700  # past LMDB's 511-byte key limit: these keys are stored hashed


def _put_all(s3: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))


def _utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(set(keys), key=lambda k: k.encode())


@pytest.fixture(scope="module")
def tree(s3: Any) -> str:
    name = unique("tree")
    s3.create_bucket(Bucket=name)
    _put_all(s3, name, TREE)
    return name


def _keys(page: dict[str, Any]) -> list[str]:
    return [o["Key"] for o in page.get("Contents", [])]


def _prefixes(page: dict[str, Any]) -> list[str]:
    return [p["Prefix"] for p in page.get("CommonPrefixes", [])]


# -- basics ---------------------------------------------------------------------------------------------------


def test_empty_bucket(s3: Any, bucket: str) -> None:
    v2 = s3.list_objects_v2(Bucket=bucket)
    assert "Contents" not in v2
    assert (v2["KeyCount"], v2["IsTruncated"], v2["MaxKeys"], v2["Name"]) == (0, False, 1000, bucket)
    v1 = s3.list_objects(Bucket=bucket)
    assert "Contents" not in v1
    assert v1["IsTruncated"] is False


@pytest.mark.parametrize("version", [1, 2])
def test_whole_listing(s3: Any, tree: str, version: int) -> None:
    page = s3.list_objects_v2(Bucket=tree) if version == 2 else s3.list_objects(Bucket=tree)
    assert _keys(page) == _utf8_sorted(TREE)
    assert page["IsTruncated"] is False
    first = page["Contents"][0]
    assert first["Size"] == len(first["Key"])
    assert first["StorageClass"] == "STANDARD"
    assert first["ETag"].startswith('"')
    if version == 2:
        assert page["KeyCount"] == len(TREE)
        assert "Owner" not in first
    else:
        assert first["Owner"]["ID"]


def test_fetch_owner(s3: Any, tree: str) -> None:
    page = s3.list_objects_v2(Bucket=tree, FetchOwner=True, MaxKeys=1)
    owner = page["Contents"][0]["Owner"]
    assert owner["ID"] and owner["DisplayName"]
    assert owner["ID"] == s3.list_buckets()["Owner"]["ID"]


@pytest.mark.parametrize(
    ("prefix", "delimiter", "keys", "prefixes"),
    [
        ("", "/", ["c", "d", "z z+z"], ["a/", "b/", "e/"]),
        ("a/", "/", ["a/1", "a/2"], ["a/b/", "a/c/"]),
        ("a/b/", "/", ["a/b/3", "a/b/4"], []),
        ("a", "/", [], ["a/"]),
        ("a/b", "/", [], ["a/b/"]),
        ("e/", "/", ["e/", "e/f"], []),
        ("b", "", ["b/1", "b/2/x"], []),
        ("", "z", ["a/1", "a/2", "a/b/3", "a/b/4", "a/c/5", "b/1", "b/2/x", "c", "d", "e/", "e/f"], ["z"]),
        ("", "+", [k for k in _utf8_sorted(TREE) if "+" not in k], ["z z+"]),
        ("nothing", "/", [], []),
        ("", "b/", ["a/1", "a/2", "a/c/5", "c", "d", "e/", "e/f", "z z+z"], ["a/b/", "b/"]),
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_prefix_and_delimiter(
    s3: Any, tree: str, version: int, prefix: str, delimiter: str, keys: list[str], prefixes: list[str]
) -> None:
    call = s3.list_objects_v2 if version == 2 else s3.list_objects
    page = call(Bucket=tree, Prefix=prefix, Delimiter=delimiter)
    assert _keys(page) == keys
    assert _prefixes(page) == prefixes
    if version == 2:
        assert page["KeyCount"] == len(keys) + len(prefixes)
    assert page.get("Prefix", "") == prefix
    assert page.get("Delimiter", "") == delimiter


def test_max_keys_zero(s3: Any, tree: str) -> None:
    v2 = s3.list_objects_v2(Bucket=tree, MaxKeys=0)
    assert "Contents" not in v2
    assert (v2["KeyCount"], v2["MaxKeys"], v2["IsTruncated"]) == (0, 0, False)
    v1 = s3.list_objects(Bucket=tree, MaxKeys=0)
    assert "Contents" not in v1
    assert v1["IsTruncated"] is False


def test_max_keys_above_limit_is_capped(s3: Any, tree: str) -> None:
    page = s3.list_objects_v2(Bucket=tree, MaxKeys=5000)
    assert _keys(page) == _utf8_sorted(TREE)


# -- pagination -----------------------------------------------------------------------------------------------


def test_v2_continuation_by_hand(s3: Any, tree: str) -> None:
    seen: list[str] = []
    kwargs: dict[str, Any] = {}
    for _ in range(20):
        page = s3.list_objects_v2(Bucket=tree, MaxKeys=5, **kwargs)
        assert page["KeyCount"] == len(page.get("Contents", []))
        assert page["KeyCount"] <= 5
        seen += _keys(page)
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        assert page["KeyCount"] == 5
        kwargs = {"ContinuationToken": page["NextContinuationToken"]}
        assert s3.list_objects_v2(Bucket=tree, MaxKeys=5, **kwargs)["ContinuationToken"] == kwargs["ContinuationToken"]
    assert seen == _utf8_sorted(TREE)


def test_v2_start_after(s3: Any, tree: str) -> None:
    page = s3.list_objects_v2(Bucket=tree, StartAfter="a/b/3")
    assert page["StartAfter"] == "a/b/3"
    assert _keys(page) == [k for k in _utf8_sorted(TREE) if k > "a/b/3"]
    # StartAfter need not be a key, and is ignored once a continuation token is given.
    page = s3.list_objects_v2(Bucket=tree, StartAfter="b", MaxKeys=2)
    assert _keys(page) == ["b/1", "b/2/x"]
    nxt = s3.list_objects_v2(Bucket=tree, StartAfter="b", MaxKeys=2, ContinuationToken=page["NextContinuationToken"])
    assert _keys(nxt) == ["c", "d"]
    assert _keys(s3.list_objects_v2(Bucket=tree, StartAfter="zzz")) == []


def test_v1_marker_by_hand(s3: Any, tree: str) -> None:
    seen: list[str] = []
    marker = ""
    for _ in range(20):
        page = s3.list_objects(Bucket=tree, MaxKeys=4, Marker=marker)
        assert page.get("Marker", "") == marker
        seen += _keys(page)
        if not page["IsTruncated"]:
            break
        marker = page.get("NextMarker") or page["Contents"][-1]["Key"]
    assert seen == _utf8_sorted(TREE)


@pytest.mark.parametrize("delimiter", ["", "/"])
@pytest.mark.parametrize("operation", ["list_objects", "list_objects_v2"])
def test_paginators(s3: Any, tree: str, operation: str, delimiter: str) -> None:
    full = getattr(s3, operation)(Bucket=tree, Delimiter=delimiter)
    pages = list(
        s3.get_paginator(operation).paginate(Bucket=tree, Delimiter=delimiter, PaginationConfig={"PageSize": 2})
    )
    assert len(pages) > 1
    assert all(len(p.get("Contents", [])) + len(p.get("CommonPrefixes", [])) <= 2 for p in pages)
    assert [k for p in pages for k in _keys(p)] == _keys(full)
    assert [c for p in pages for c in _prefixes(p)] == _prefixes(full)


def test_delimiter_pagination_by_hand(s3: Any, tree: str) -> None:
    """A page may end on a common prefix; the next one must not repeat it or list keys under it."""
    items: list[str] = []
    token: dict[str, Any] = {}
    for _ in range(20):
        page = s3.list_objects_v2(Bucket=tree, Delimiter="/", MaxKeys=1, **token)
        assert page["KeyCount"] == 1
        items += _keys(page) + _prefixes(page)
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    assert items == ["a/", "b/", "c", "d", "e/", "z z+z"]
    v1: list[str] = []
    marker = ""
    for _ in range(20):
        page = s3.list_objects(Bucket=tree, Delimiter="/", MaxKeys=1, Marker=marker)
        v1 += _keys(page) + _prefixes(page)
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert v1 == items


def test_invalid_continuation_token(server: ServerProcess, tree: str) -> None:
    resp = signed_request(server, "GET", f"/{tree}?list-type=2&continuation-token=%25%25%25")
    assert resp.status == 400
    assert resp.error()["Code"] == "InvalidArgument"


@pytest.mark.parametrize("query", ["max-keys=-1", "max-keys=abc", "encoding-type=base64", "list-type=3"])
def test_invalid_arguments(server: ServerProcess, tree: str, query: str) -> None:
    resp = signed_request(server, "GET", f"/{tree}?{query}")
    assert resp.status == 400
    assert resp.error()["Code"] == "InvalidArgument"


# -- odd keys and url encoding ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd(s3: Any) -> str:
    name = unique("odd")
    s3.create_bucket(Bucket=name)
    _put_all(s3, name, ODD)
    return name


@pytest.mark.parametrize("operation", ["list_objects", "list_objects_v2"])
def test_odd_keys_round_trip(s3: Any, odd: str, operation: str) -> None:
    """boto3 asks for encoding-type=url by default and decodes the answer."""
    page = getattr(s3, operation)(Bucket=odd)
    assert _keys(page) == _utf8_sorted(ODD)
    pages = s3.get_paginator(operation).paginate(Bucket=odd, PaginationConfig={"PageSize": 3})
    assert [k for p in pages for k in _keys(p)] == _utf8_sorted(ODD)


def test_encoding_type_url_raw(s3: Any, odd: str) -> None:
    """Asked explicitly, botocore leaves the encoded values alone: check what the server sent."""
    page = s3.list_objects_v2(Bucket=odd, EncodingType="url", Prefix="odd/", Delimiter="/", StartAfter="odd/ a")
    assert page["EncodingType"] == "url"
    raw = _keys(page)
    assert [unquote_plus(k) for k in raw] == _utf8_sorted(ODD)
    for key in raw:
        assert all(c not in key for c in " +<>&#?\t") and key.isascii(), key
    assert page["Prefix"] == "odd/"
    assert page["StartAfter"] == "odd/%20a"


def test_encoding_type_url_common_prefixes(s3: Any, bucket: str) -> None:
    _put_all(s3, bucket, ["sp ace/1", "pl+us/2", "ok/3"])
    page = s3.list_objects(Bucket=bucket, Delimiter="/", EncodingType="url")
    assert sorted(unquote_plus(p) for p in _prefixes(page)) == ["ok/", "pl+us/", "sp ace/"]
    assert "sp ace/" not in _prefixes(page) and "pl+us/" not in _prefixes(page)


@pytest.mark.parametrize("key", ODD)
def test_each_odd_key_as_prefix_and_start_after(s3: Any, odd: str, key: str) -> None:
    """Odd characters in query parameters (prefix, start-after) survive signing and parsing."""
    assert _keys(s3.list_objects_v2(Bucket=odd, Prefix=key)) == [key]
    after = [k for k in _utf8_sorted(ODD) if k.encode() > key.encode()]
    assert _keys(s3.list_objects_v2(Bucket=odd, StartAfter=key)) == after
    assert _keys(s3.list_objects(Bucket=odd, Marker=key)) == after


def test_prefix_and_delimiter_with_odd_characters(s3: Any, odd: str) -> None:
    page = s3.list_objects_v2(Bucket=odd, Prefix="odd/p", Delimiter="%")
    assert _keys(page) == ["odd/plus+sign"]
    assert _prefixes(page) == ["odd/percent%"]
    assert _keys(s3.list_objects_v2(Bucket=odd, Prefix="odd/<")) == ["odd/<xml>"]
    assert _keys(s3.list_objects_v2(Bucket=odd, Prefix="odd/emoji😀")) == ["odd/emoji😀"]


# -- long keys ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_keys(s3: Any) -> tuple[str, list[str]]:
    name = unique("long")
    s3.create_bucket(Bucket=name)
    keys = [LONG_BASE + s for s in ["a", "b", "c/x", "c/y", "é"]]
    keys.append("long/" + "q" * (1024 - 6) + "z")
    keys.append("long/" + "q" * (1024 - 6) + "a")
    keys.append("long/" + "p" * 1019)
    assert all(len(k.encode()) <= 1024 for k in keys)
    _put_all(s3, name, keys)
    return name, keys


def test_long_keys_sorted(s3: Any, long_keys: tuple[str, list[str]]) -> None:
    name, keys = long_keys
    assert _keys(s3.list_objects_v2(Bucket=name)) == _utf8_sorted(keys)
    pages = s3.get_paginator("list_objects").paginate(Bucket=name, PaginationConfig={"PageSize": 2})
    assert [k for p in pages for k in _keys(p)] == _utf8_sorted(keys)


def test_long_keys_delimiter_and_start_after(s3: Any, long_keys: tuple[str, list[str]]) -> None:
    name, keys = long_keys
    page = s3.list_objects_v2(Bucket=name, Prefix=LONG_BASE, Delimiter="/")
    assert _prefixes(page) == [LONG_BASE + "c/"]
    rest = [k for k in _utf8_sorted(keys) if k.startswith(LONG_BASE) and "/" not in k[len(LONG_BASE) :]]
    assert _keys(page) == rest
    assert len(rest) == 4
    longest = max(keys, key=lambda k: (len(k.encode()), k))
    after = s3.list_objects_v2(Bucket=name, StartAfter=_utf8_sorted(keys)[0])
    assert _keys(after) == _utf8_sorted(keys)[1:]
    assert longest in _keys(s3.list_objects_v2(Bucket=name, Prefix=longest))


# -- consistency ----------------------------------------------------------------------------------------------


def test_listing_right_after_write(s3: Any, bucket: str) -> None:
    for i in range(5):
        key = f"rw/{i}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * i)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="rw/")["Contents"]
        assert listed[-1]["Key"] == key
        assert listed[-1]["Size"] == i
    s3.put_object(Bucket=bucket, Key="rw/0", Body=b"bigger")
    assert s3.list_objects_v2(Bucket=bucket, Prefix="rw/0")["Contents"][0]["Size"] == 6
    s3.delete_object(Bucket=bucket, Key="rw/2")
    assert _keys(s3.list_objects_v2(Bucket=bucket, Prefix="rw/")) == ["rw/0", "rw/1", "rw/3", "rw/4"]


def test_checksum_algorithm_in_listing(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="sum", Body=b"x", ChecksumAlgorithm="SHA256")
    item = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert item["ChecksumAlgorithm"] == ["SHA256"]
    assert item["ChecksumType"] == "FULL_OBJECT"


def test_list_missing_bucket(s3: Any) -> None:
    expect_error(s3.list_objects_v2, "NoSuchBucket", 404, Bucket=unique("none"))
