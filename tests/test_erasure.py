"""Segment coding (gateway/objects/erasure.py): the fast paths (joining data fragments, rebuilding missing ones
with ISA-L) agree with pyeclib."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.objects import rs_isal
from gateway.objects.erasure import Scheme, _agrees_with_pyeclib, _driver


def pyeclib_decode(k: int, m: int, fragments: list[bytes] | list[bytearray]) -> bytes:
    return _driver(k, m).decode([bytes(f) for f in fragments])


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 8), m=st.integers(1, 4), size=st.integers(0, 300_000))
def test_isal_encodes_exactly_what_pyeclib_encodes(k: int, m: int, size: int) -> None:
    data = os.urandom(size)
    assert [bytes(f) for f in rs_isal.encode(k, m, data)] == _driver(k, m).encode(data)
    assert [bytes(f) for f in Scheme(k, m).encode(memoryview(data))] == _driver(k, m).encode(data)


def test_fragments_of_the_isal_encoder_go_to_pyeclib_as_bytes() -> None:
    scheme = Scheme(4, 2)
    data = os.urandom(100_000)
    frags = scheme.encode(data)
    assert isinstance(frags[0], bytearray)
    assert scheme.decode(frags) == data  # more than k: not joined, decoded by pyeclib
    rebuilt = scheme.reconstruct(dict(enumerate(frags[1:5], start=1)), [0, 5])
    assert rebuilt == [bytes(frags[0]), bytes(frags[5])]


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 8), m=st.integers(1, 4), size=st.integers(1, 300_000), seed=st.integers(0, 2**32 - 1))
def test_decode_from_any_k_fragments_gives_the_segment(k: int, m: int, size: int, seed: int) -> None:
    scheme = Scheme(k, m)
    data = os.urandom(size)
    frags = scheme.encode(data)
    assert scheme._join(frags[:k]) == data  # the systematic fast path
    assert scheme.decode(frags[:k]) == pyeclib_decode(k, m, frags[:k]) == data
    chosen = sorted(range(k + m), key=lambda i: (i * 2654435761 + seed) % 4294967296)[:k]
    some = [frags[i] for i in chosen]  # parity among them, in any order: missing data rebuilt with ISA-L
    assert scheme._join(some) == pyeclib_decode(k, m, some) == data
    assert scheme.decode(some) == data


def test_every_loss_of_m_fragments_is_rebuilt_as_pyeclib_decodes() -> None:
    for k, m in [(4, 2), (2, 1), (6, 3), (10, 4)]:
        scheme = Scheme(k, m)
        data = os.urandom(k * 4096 + 17)
        frags = scheme.encode(data)
        for lost in itertools.combinations(range(k + m), m):
            kept = [f for i, f in enumerate(frags) if i not in lost]
            assert scheme._join(kept) == pyeclib_decode(k, m, kept) == data, (k, m, lost)


def test_fragments_that_do_not_fit_go_to_pyeclib() -> None:
    scheme = Scheme(4, 2)
    data = os.urandom(5000)
    frags = scheme.encode(data)
    other = scheme.encode(os.urandom(9000))  # another segment: other sizes
    assert scheme._join(frags[:3]) is None  # too few
    assert scheme._join([frags[0], frags[0], frags[2], frags[4]]) is None  # one index twice
    assert scheme._join([other[0], *frags[1:4]]) is None  # not one segment's
    damaged = bytearray(frags[0])
    damaged[59] ^= 1  # the header magic
    assert scheme._join([bytes(damaged), *frags[1:4]]) is None
    assert scheme._join([frags[0][:70], *frags[1:4]]) is None  # shorter than a header
    assert scheme.decode([frags[1], frags[2], frags[3], frags[5]]) == data


def test_a_failing_or_disagreeing_isal_check_keeps_pyeclib(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bool:
        raise OSError("no ISA-L here")

    assert _agrees_with_pyeclib(4, 2, "encoding", "writes", broken) is False
    assert _agrees_with_pyeclib(4, 2, "encoding", "writes", lambda: False) is False
    assert _agrees_with_pyeclib(4, 2, "encoding", "writes", lambda: True) is True
    assert sum("writes use pyeclib" in r.getMessage() for r in caplog.records) == 2


def test_rebuild_reads_payloads_in_place_and_lets_go_of_them() -> None:
    k, m, h = 4, 2, rs_isal.HEADER_LEN
    frags = [bytes(f) for f in rs_isal.encode(k, m, os.urandom(k * 1000 + 3))]
    owned = bytearray(frags[1][h:])  # a writable source beside read-only views of bytes
    payloads = {1: owned, 2: memoryview(frags[2])[h:], 3: memoryview(frags[3])[h:], 4: memoryview(frags[4])[h:]}
    assert rs_isal.rebuild_data(k, m, payloads, [0]) == [bytearray(frags[0][h:])]
    owned.extend(b"x")  # BufferError if the rebuild still held a view of it
    owned.pop()

    payloads[4] = memoryview(frags[4] * 2)[2 * h :: 2]  # not contiguous: refused, and the others let go
    with pytest.raises(BufferError):
        rs_isal.rebuild_data(k, m, payloads, [0])
    owned.extend(b"x")
