"""The hostile S3 corpus shared by the embedded-server and the cluster runs: numbers that are not plain
decimals, half-valid DeleteObjects bodies, odd location constraints and keys, and the helpers that send them."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tests.s3_helpers import RawResponse, send, sign
from tests.server_process import ServerProcess

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

SUPERSCRIPT_TWO, FULLWIDTH_ONE, LONG = "\u00b2", "\uff11", "9" * 5000

# What follows a valid first <Object> in a DeleteObjects body that must delete nothing: (tail, test id).
DELETE_TAILS = [
    ("<Object><Key>b</Key></Object><Object><VersionId>x</VersionId></Object>", "object-without-key"),
    ("<Object><Key>b</Key></Object><Quiet>maybe</Quiet>", "quiet-not-boolean"),
    ("<Object><Key>x</Key></Object>" * 1000, "too-many"),  # 1001 keys with the first one
]

# Query parameters that must be ASCII decimals: {bucket}, {id} (an upload of key "mp") and {v} (the value).
QUERY_NUMBER_VALUES = [SUPERSCRIPT_TWO, FULLWIDTH_ONE, "+1", " 1", "1_0", LONG]
QUERY_NUMBER_TARGETS = [
    ("PUT", "/{bucket}/mp?uploadId={id}&partNumber={v}"),
    ("GET", "/{bucket}/obj?partNumber={v}"),
    ("GET", "/{bucket}?max-keys={v}"),
    ("GET", "/{bucket}?list-type=2&max-keys={v}"),
    ("GET", "/{bucket}?uploads&max-uploads={v}"),
    ("GET", "/{bucket}/mp?uploadId={id}&max-parts={v}"),
    ("GET", "/{bucket}/mp?uploadId={id}&part-number-marker={v}"),
    ("GET", "/?max-buckets={v}"),
]
COMPLETE_PART_NUMBERS = [SUPERSCRIPT_TWO, FULLWIDTH_ONE, "-1", LONG]  # MalformedXML
HEADER_NUMBERS = [SUPERSCRIPT_TWO, FULLWIDTH_ONE, LONG]  # x-amz-mp-object-size, x-amz-decoded-content-length
CONTENT_LENGTHS = [SUPERSCRIPT_TWO, "1" + FULLWIDTH_ONE, "+5", LONG]  # refused by the HTTP parser
COPY_SOURCE_RANGES = [f"bytes=0-{FULLWIDTH_ONE}", f"bytes={SUPERSCRIPT_TWO}-3", "bytes=0-" + LONG]

FOREIGN_CONSTRAINTS = [
    ("us-east-1\n", "InvalidLocationConstraint"),
    ("us-east-1\r\nX-Injected: 1", "InvalidLocationConstraint"),
    ("not a region", "InvalidLocationConstraint"),
    ("eu-west-1", "IllegalLocationConstraintException"),
]
OVERRIDE_PARAMS = ["response-content-type", "response-content-disposition", "response-expires"]
UTF8_ONLY_HEADERS = ["Content-Disposition", "Content-Type", "Cache-Control"]

ODD_KEYS = ["nul\x00key", "soh\x01key", "bell\x07key", "nl\nkey", "cr\rkey", "crlf\r\nkey", "tab\tkey", "nc\uffffkey"]


def short(value: object) -> str:
    """A test id for long parameters."""
    return re.sub("9{40,}", lambda m: f"<{len(m.group())} nines>", str(value))


def signed_utf8(
    server: ServerProcess, method: str, target: str, headers: dict[str, str], **options: Any
) -> RawResponse:
    """A signed request whose header values go out as UTF-8, as a client that means '\u00b2' or '\uff11'
    sends them. options: body, payload_hash."""
    body: bytes = options.get("body", b"")
    payload_hash = options.get("payload_hash") or hashlib.sha256(body).hexdigest()
    signed = sign(server, method, target, {"Content-Length": str(len(body)), **headers}, payload_hash)
    # http.client sends bytes as they are; a str it encodes as latin-1, which '\uff11' is not.
    utf8: Any = {name: value.encode() for name, value in signed.headers.items()}
    return send(server, method, target, utf8, body)


def assert_error(resp: RawResponse, code: str, status: int) -> dict[str, str]:
    assert resp.status == status, (resp.status, resp.body)
    err = resp.error()
    assert err["Code"] == code, err
    return err


def complete_body(part_number: str, etag: str) -> bytes:
    """A CompleteMultipartUpload document with one part."""
    part = f"<Part><PartNumber>{part_number}</PartNumber><ETag>{etag}</ETag></Part>"
    return f"<CompleteMultipartUpload>{part}</CompleteMultipartUpload>".encode()


def location_body(constraint: str) -> bytes:
    inner = f"<LocationConstraint>{constraint}</LocationConstraint>"
    return f"<CreateBucketConfiguration>{inner}</CreateBucketConfiguration>".encode()


def delete_body(tail: str) -> bytes:
    """A DeleteObjects document: a valid <Object> for key "a", then `tail`."""
    return f"<Delete><Object><Key>a</Key></Object>{tail}</Delete>".encode()
