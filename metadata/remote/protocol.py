"""The metadata service's wire protocol, shared by the service (metadata/remote/service.py) and RemoteIndex.

Every Index method is one operation, `POST /v1/<method name>`, derived from the Index Protocol
itself so the service and its client cannot drift from the seam:

    request    msgpack map of the method's arguments by name (records as maps of their fields,
               as records.encode writes them); arguments with a default may be left out
    200        msgpack map {"result": <the return value>}
    error      JSON {"error": <kind>, "message": ..., plus the fields its exception carries}

Every /v1 request carries X-Tessera-Auth (cluster/auth.py) signed over the method, the path and
the sha256 of the body. Data is msgpack (compact, and what the records already are); errors are
JSON so a person with curl can read them. The service checks bodies strictly (unknown or missing
fields, wrong types: 400); the client reads answers leniently (fields it does not know, from a
newer service, are dropped), as records.decode does.

Error kinds (status): BucketAlreadyExists (409, with owner), BucketNotEmpty (409), DriveClaimed (409,
with drive_id and node_id), UserExists (409), NoSuchBucket (404), NoSuchUpload (404), NoSuchNode (404),
PreconditionFailed (412), ObjectLocked (403), IndexFull (507: no room on the index's disk; nothing was written),
InvalidArgument (400: the index refused a value, ValueError), BadRequest (400: the body does not fit),
Forbidden (403: signature), NotFound (404: no such operation), MethodNotAllowed (405), TooLarge (413),
InternalError (500).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from cluster.auth import ClusterAuthError
from metadata.index import (
    BucketAlreadyExists,
    BucketNotEmpty,
    DriveClaimed,
    Index,
    IndexFull,
    IndexUnavailable,
    MetadataError,
    NoSuchBucket,
    NoSuchNode,
    NoSuchUpload,
    ObjectLocked,
    PreconditionFailed,
    UserExists,
)
from metadata.records import OMIT_EMPTY

PREFIX = "/v1/"
MSGPACK = "application/msgpack"
MAX_BODY = 64 << 20  # a manifest of 10,000 parts is a few MB

# Safe to repeat: RemoteIndex may retry these. Every other operation changes the index.
READS = frozenset(
    (
        "get_bucket list_buckets get_object list_objects get_upload list_parts list_uploads list_nodes"
        " list_repairs repair_backlog list_users get_version latest_version list_versions"
        " bucket_usage list_notify_targets list_events event_backlog"
    ).split()
)


class WireError(ValueError):
    """A body that does not fit the protocol."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Any
    required: bool


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    params: tuple[Param, ...]
    result: Any  # the return type
    read: bool  # changes nothing: safe to retry

    @property
    def path(self) -> str:
        return PREFIX + self.name


def _operations() -> dict[str, Operation]:
    ops = {}
    for name, fn in inspect.getmembers(Index, inspect.isfunction):
        if name.startswith("_") or name == "close":
            continue
        hints = typing.get_type_hints(fn)
        params = tuple(
            Param(p.name, hints[p.name], p.default is inspect.Parameter.empty)
            for p in list(inspect.signature(fn).parameters.values())[1:]  # after self
        )
        ops[name] = Operation(name, params, hints["return"], name in READS)
    assert READS <= ops.keys(), READS - ops.keys()
    return ops


OPERATIONS: dict[str, Operation] = _operations()


# -- values <-> plain msgpack-able data


def dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Empty fields that records leave out (OMIT_EMPTY) are left out here too, so that a service from
        # before such a field still takes records that do not use it.
        return {
            f.name: dump(v)
            for f in dataclasses.fields(value)
            if (v := getattr(value, f.name)) or f.name not in OMIT_EMPTY
        }
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A dataclass's field types, and the names of the fields without a default."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = frozenset(
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    return {f.name: hints[f.name] for f in fields}, required


def load(tp: Any, value: Any, strict: bool = True, where: str = "body") -> Any:
    """`value` (plain data) as an instance of type `tp`, checked all the way down; raises WireError.

    strict: unknown fields are an error (the service); otherwise they are dropped (the client).
    """
    origin = typing.get_origin(tp)
    if tp is type(None):
        if value is not None:
            raise WireError(f"{where}: expected nil")
        return None
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))  # only X | None occurs in the seam
        return load(inner, value, strict, where)
    if origin in (list, Sequence):  # a Sequence argument arrives as a list
        if not isinstance(value, list):
            raise WireError(f"{where}: expected an array")
        (item,) = typing.get_args(tp)
        return [load(item, v, strict, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise WireError(f"{where}: expected a map")
        kt, vt = typing.get_args(tp)
        return {load(kt, k, strict, f"{where} key"): load(vt, v, strict, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, strict, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WireError(f"{where}: expected a number")
        return float(value)
    if tp is bytes:  # msgpack's bin type (inline object data)
        if not isinstance(value, bytes):
            raise WireError(f"{where}: expected bytes")
        return value
    if tp in (int, str, bool):
        # bool is an int in Python, but not on the wire
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise WireError(f"{where}: expected {'an integer' if tp is int else 'a string' if tp is str else 'a bool'}")
        return value
    raise TypeError(f"the protocol cannot carry {tp!r}")  # a new type in the seam: teach load() about it


def _load_dataclass(cls: type, value: Any, strict: bool, where: str) -> Any:
    if not isinstance(value, dict):
        raise WireError(f"{where}: expected a map of {cls.__name__} fields")
    types_, required = _fields(cls)
    unknown = value.keys() - types_.keys()
    if unknown and strict:
        raise WireError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} for {cls.__name__}")
    missing = required - value.keys()
    if missing:
        raise WireError(f"{where}: missing field(s) {', '.join(sorted(missing))} of {cls.__name__}")
    kwargs = {k: load(t, value[k], strict, f"{where}.{k}") for k, t in types_.items() if k in value}
    return cls(**kwargs)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, UnicodeDecodeError...)
        raise WireError(f"body is not msgpack: {exc}") from None


# -- requests and answers


def encode_request(op: Operation, args: dict[str, Any]) -> bytes:
    unknown = args.keys() - {p.name for p in op.params}
    if unknown:  # a bug on this side: the service would answer 400
        raise TypeError(f"{op.name} takes no argument(s) {', '.join(sorted(unknown))}")
    return _pack({k: dump(v) for k, v in args.items()})


def decode_request(op: Operation, body: bytes) -> dict[str, Any]:
    """The keyword arguments for the Index method; raises WireError."""
    args = _unpack(body)
    if not isinstance(args, dict):
        raise WireError("body must be a map of arguments")
    known = {p.name: p for p in op.params}
    unknown = args.keys() - known.keys()
    if unknown:
        raise WireError(f"unknown argument(s) {', '.join(sorted(map(str, unknown)))} for {op.name}")
    missing = [p.name for p in op.params if p.required and p.name not in args]
    if missing:
        raise WireError(f"missing argument(s) {', '.join(missing)} for {op.name}")
    return {name: load(known[name].type, v, True, name) for name, v in args.items()}


def encode_result(value: Any) -> bytes:
    return _pack({"result": dump(value)})


def decode_result(op: Operation, body: bytes) -> Any:
    answer = _unpack(body)
    if not isinstance(answer, dict) or "result" not in answer:
        raise WireError("answer has no result")
    return load(op.result, answer["result"], strict=False, where="result")


# -- errors: each exception the index raises has a kind, so the client raises the very same type

_INDEX_ERRORS: dict[type[Exception], tuple[str, int]] = {
    BucketAlreadyExists: ("BucketAlreadyExists", 409),
    BucketNotEmpty: ("BucketNotEmpty", 409),
    DriveClaimed: ("DriveClaimed", 409),
    UserExists: ("UserExists", 409),
    NoSuchBucket: ("NoSuchBucket", 404),
    NoSuchUpload: ("NoSuchUpload", 404),
    NoSuchNode: ("NoSuchNode", 404),
    PreconditionFailed: ("PreconditionFailed", 412),
    ObjectLocked: ("ObjectLocked", 403),
    # 507 Insufficient Storage (RFC 4918), on the internal wire only: the gateway answers it as SlowDown.
    IndexFull: ("IndexFull", 507),
}
INVALID_ARGUMENT = ("InvalidArgument", 400)  # the index refused an argument (ValueError)
BAD_REQUEST = ("BadRequest", 400)  # the body does not fit the protocol
FORBIDDEN = ("Forbidden", 403)
INTERNAL = ("InternalError", 500)
# Errors aiohttp raises itself (routing, body size), by status.
HTTP_KINDS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "TooLarge",
    503: "Unavailable",
}
TRANSIENT = frozenset({502, 503, 504})


def error_document(exc: BaseException) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON document) for an exception the index raised on purpose; None for anything else."""
    for cls, (kind, status) in _INDEX_ERRORS.items():
        if isinstance(exc, cls):
            doc: dict[str, Any] = {"error": kind, "message": str(exc)}
            if isinstance(exc, BucketAlreadyExists):
                doc["owner"] = exc.owner
            elif isinstance(exc, DriveClaimed):
                doc.update(drive_id=exc.drive_id, node_id=exc.node_id)
            return status, doc
    if isinstance(exc, ValueError):
        kind, status = BAD_REQUEST if isinstance(exc, WireError) else INVALID_ARGUMENT
        return status, {"error": kind, "message": str(exc)}
    if isinstance(exc, IndexUnavailable):  # a replica coordinating found no quorum: the client may retry
        return 503, {"error": "Unavailable", "message": str(exc)}
    return None


def error_from(status: int, doc: Any) -> Exception:
    """The exception an error answer stands for (the client raises it)."""
    doc = doc if isinstance(doc, dict) else {}
    kind, message = doc.get("error"), str(doc.get("message", ""))
    try:
        if kind == "BucketAlreadyExists":
            return BucketAlreadyExists(str(doc["owner"]))
        if kind == "DriveClaimed":
            return DriveClaimed(str(doc["drive_id"]), str(doc["node_id"]))
    except KeyError:
        pass
    simple: dict[Any, type[Exception]] = {
        "BucketNotEmpty": BucketNotEmpty,
        "NoSuchBucket": NoSuchBucket,
        "NoSuchUpload": NoSuchUpload,
        "NoSuchNode": NoSuchNode,
        "UserExists": UserExists,
        "PreconditionFailed": PreconditionFailed,
        "ObjectLocked": ObjectLocked,
        "IndexFull": IndexFull,
        INVALID_ARGUMENT[0]: ValueError,
        BAD_REQUEST[0]: ValueError,
    }
    if kind in simple:
        return simple[kind](message)
    if status == 403:
        return ClusterAuthError(f"the metadata service refused our cluster signature ({message or status})")
    if status in TRANSIENT:
        return IndexUnavailable(f"metadata service unavailable ({status}): {message}")
    return MetadataError(f"metadata service answered {status} {kind or ''}: {message}".rstrip(": "))
