"""Index records (metadata/records.py): the encoding is what msgpack makes of dataclasses.asdict."""

from __future__ import annotations

import dataclasses

import msgpack

from metadata.records import (
    OMIT_EMPTY,
    DriveRecord,
    NodeRecord,
    ObjectManifest,
    PartRecord,
    RepairEntry,
    decode,
    encode,
)


def _part(n: int, inline: bytes | None = None) -> PartRecord:
    return PartRecord(n, f"{n:032x}", 5, "e" * 32, ["d1", "d2"], 4, 2, 1 << 20, 1.5, {"CRC32": "AAAAAA=="}, [1], inline)


def _manifest(parts: list[PartRecord]) -> ObjectManifest:
    return ObjectManifest(
        "b", "k", "0" * 32, 10, "e" * 32, 2.5, "owner", parts, "text/plain", {"Cache-Control": "no"}, {"a": "1"}
    )


def test_records_encode_as_asdict_and_round_trip() -> None:
    records = [
        _manifest([_part(1), _part(2)]),
        NodeRecord("n1", "http://127.0.0.1:1", "z", [DriveRecord("d1", 10, 5), DriveRecord("d2", 20, 1)], 1.0, 2.0),
        RepairEntry(3, "a" * 32, 0, 2, "b", "k", "scrub", "d1", 4.0),
    ]
    tagged = _manifest([_part(1)])
    tagged.tags = {"a": "b"}
    records.append(tagged)
    locked = _manifest([_part(1)])
    locked.lock_mode, locked.lock_until, locked.legal_hold = "COMPLIANCE", 3.5, "ON"  # object lock's fields
    records.append(locked)
    for rec in records:
        # Empty tags, versioning, object lock and access fields are left out (most objects have none); a record
        # without them decodes to none.
        plain = {k: v for k, v in dataclasses.asdict(rec).items() if v or k not in OMIT_EMPTY}
        assert encode(rec) == msgpack.packb(plain, use_bin_type=True)
        assert decode(type(rec), encode(rec)) == rec


def test_inline_parts_are_stored_after_the_map_and_left_unchanged() -> None:
    parts = [_part(1, b"abc"), _part(2), _part(3, b"")]
    rec = _manifest(parts)
    raw = encode(rec)
    assert [p.inline for p in rec.parts] == [b"abc", None, b""]  # encoding took nothing from the record
    assert decode(ObjectManifest, raw) == rec
    assert [p.inline for p in decode(ObjectManifest, raw, with_inline=False).parts] == [None, None, None]
