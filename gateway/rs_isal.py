"""Missing data payloads rebuilt by calling ISA-L (bundled with pyeclib) directly, without the GIL.

pyeclib's decode holds the GIL and copies every fragment through buffers of its own; a degraded
read spends more time there than in the maths. This module does only the maths: the same Cauchy
matrix liberasurecode's isa_l_rs_cauchy backend encodes with, inverted for the fragments at hand,
applied by ec_encode_data (a ctypes call, so the GIL is released while it runs). A self-check
against pyeclib (gateway/erasure.py) decides, once per scheme and process, whether it is used.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Sequence

import pyeclib

_Bytes = bytes | bytearray | memoryview


@functools.cache
def _lib() -> ctypes.CDLL | None:
    """The ISA-L library pyeclib's wheel bundles, with the four calls used here typed; None if absent."""
    libs = os.path.join(os.path.dirname(os.path.dirname(pyeclib.__file__)), "pyeclib.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libisal*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            for name in ("ec_encode_data", "ec_init_tables", "gf_gen_cauchy1_matrix", "gf_invert_matrix"):
                getattr(lib, name)
        except (OSError, AttributeError):
            continue
        u8p = ctypes.POINTER(ctypes.c_ubyte)
        lib.gf_gen_cauchy1_matrix.argtypes = [u8p, ctypes.c_int, ctypes.c_int]
        lib.gf_gen_cauchy1_matrix.restype = None
        lib.gf_invert_matrix.argtypes = [u8p, u8p, ctypes.c_int]
        lib.gf_invert_matrix.restype = ctypes.c_int
        lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, u8p, u8p]
        lib.ec_init_tables.restype = None
        lib.ec_encode_data.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            u8p,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.ec_encode_data.restype = None
        return lib
    return None


@functools.cache
def _tables(k: int, m: int, survivors: tuple[int, ...], missing: tuple[int, ...]) -> ctypes.Array[ctypes.c_ubyte]:
    """ISA-L's expanded tables that turn the k `survivors` into the `missing` data payloads."""
    lib = _lib()
    assert lib is not None
    n = k + m
    encode = (ctypes.c_ubyte * (n * k))()
    lib.gf_gen_cauchy1_matrix(encode, n, k)
    rows = (ctypes.c_ubyte * (k * k))()
    for r, i in enumerate(survivors):
        ctypes.memmove(ctypes.byref(rows, r * k), ctypes.byref(encode, i * k), k)
    inverse = (ctypes.c_ubyte * (k * k))()
    if lib.gf_invert_matrix(rows, inverse, k) != 0:
        raise ValueError(f"fragments {survivors} of {k}+{m} do not determine the data")
    wanted = (ctypes.c_ubyte * (len(missing) * k))()
    for r, d in enumerate(missing):
        ctypes.memmove(ctypes.byref(wanted, r * k), ctypes.byref(inverse, d * k), k)
    tables = (ctypes.c_ubyte * (32 * k * len(missing)))()
    lib.ec_init_tables(k, len(missing), wanted, tables)
    return tables


def rebuild_data(k: int, m: int, payloads: dict[int, _Bytes], missing: Sequence[int]) -> list[bytearray]:
    """The payloads of data fragments `missing` from k others (fragment index -> payload, equal sizes)."""
    lib = _lib()
    if lib is None:
        raise RuntimeError("ISA-L is not available")
    survivors = tuple(sorted(payloads)[:k])
    size = len(payloads[survivors[0]])
    tables = _tables(k, m, survivors, tuple(missing))
    # bytes can be pointed at as they are; a view of something read-only has to be copied first.
    keep = [p if isinstance(p, bytes) else bytes(p) for p in (payloads[i] for i in survivors)]
    sources = (ctypes.c_void_p * k)(*(ctypes.cast(ctypes.c_char_p(p), ctypes.c_void_p).value for p in keep))
    out = [bytearray(size) for _ in missing]
    targets = (ctypes.c_void_p * len(missing))(
        *(ctypes.addressof(ctypes.c_char.from_buffer(b)) if size else None for b in out)
    )
    if size:
        lib.ec_encode_data(size, k, len(missing), tables, sources, targets)
    return out
