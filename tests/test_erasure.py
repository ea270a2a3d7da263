"""Segment coding (gateway/erasure.py): the fast path for data fragments agrees with pyeclib."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.erasure import Scheme, _driver


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 8), m=st.integers(1, 4), size=st.integers(1, 300_000), seed=st.integers(0, 2**32 - 1))
def test_decode_from_any_k_fragments_gives_the_segment(k: int, m: int, size: int, seed: int) -> None:
    scheme = Scheme(k, m)
    data = os.urandom(size)
    frags = scheme.encode(data)
    assert scheme._join_data(frags[:k]) == data  # the systematic fast path
    assert scheme.decode(frags[:k]) == _driver(k, m).decode(frags[:k]) == data
    chosen = sorted(range(k + m), key=lambda i: (i * 2654435761 + seed) % 4294967296)[:k]
    assert scheme.decode([frags[i] for i in sorted(chosen)]) == data  # parity among them: pyeclib decodes


def test_anything_but_k_data_fragments_in_order_goes_to_pyeclib() -> None:
    scheme = Scheme(4, 2)
    data = os.urandom(5000)
    frags = scheme.encode(data)
    assert scheme._join_data([frags[1], frags[0], frags[2], frags[3]]) is None  # out of order
    assert scheme._join_data(frags[:3]) is None  # too few
    assert scheme._join_data([frags[0], frags[1], frags[2], frags[4]]) is None  # a parity fragment
    damaged = bytearray(frags[0])
    damaged[59] ^= 1  # the header magic
    assert scheme._join_data([bytes(damaged), *frags[1:4]]) is None
    assert scheme._join_data([frags[0][:70], *frags[1:4]]) is None  # shorter than a header
    assert scheme.decode([frags[1], frags[2], frags[3], frags[5]]) == data
