"""How the replicated index stores manifests in its objects and versions tables: as encoded, or rewritten in place
by update_part (a revision, which outranks the version it rewrites at the same timestamp). In the replica room
because a store reads the size of each manifest it merges, for its usage totals (packed.py)."""

from __future__ import annotations

import struct

from metadata.records import ObjectManifest, Usage, decode, encode, stored_fields, version_usage
from metadata.replica.merge import Entry

# A manifest update_part rewrote is stored as _REVISED, its revision number (u32) and the encoded manifest.
# No encoded record starts with 0xff (msgpack maps start with 0x8X, 0xde or 0xdf, inline manifests with 0xc1),
# so at one timestamp a revision's bytes rank above the original's and above every earlier revision's.
_REVISED = b"\xff"
_REVISION = struct.Struct(">I")
_REVISED_HEAD = len(_REVISED) + _REVISION.size


def _record(value: bytes | memoryview) -> bytes | memoryview:
    """The encoded manifest in stored bytes (a revision's head left out)."""
    return value[_REVISED_HEAD:] if value[:1] == _REVISED else value


def revision(value: bytes) -> int:
    return _REVISION.unpack_from(value, len(_REVISED))[0] if value.startswith(_REVISED) else 0


def decode_manifest(value: bytes, with_inline: bool = True) -> ObjectManifest:
    return decode(ObjectManifest, _record(value), with_inline)


def stored_usage(value: bytes | memoryview) -> Usage:
    """usage_of() the manifest stored as `value`, without decoding it whole (at every write of one). ValueError
    if it is not a manifest (a replica merges what its peers send)."""
    try:
        d = stored_fields(_record(value))
    except (ValueError, struct.error) as exc:
        raise ValueError(f"not a stored manifest: {exc}") from None
    size = d.get("size", 0) if isinstance(d, dict) else None
    if type(size) is not int or size < 0:
        raise ValueError("not a stored manifest")
    return version_usage(size, bool(d.get("delete_marker")))


def stored_marker(value: bytes) -> bool:
    """Whether the manifest stored as `value` is a delete marker, without decoding it whole (listings)."""
    return bool(stored_fields(_record(value)).get("delete_marker"))


def manifest(e: Entry | None) -> ObjectManifest | None:
    return None if e is None or e.tombstone else decode_manifest(e.value)


def revised(e: Entry, man: ObjectManifest) -> bytes:
    """The bytes of `man` as the next revision of entry `e`."""
    return _REVISED + _REVISION.pack(revision(e.value) + 1) + encode(man)
