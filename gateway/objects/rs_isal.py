"""Reed-Solomon by calling ISA-L (bundled with pyeclib) directly, without the GIL.

pyeclib holds the GIL while it encodes and decodes, and copies every fragment through buffers of
its own. This module does the same maths with the same Cauchy matrix liberasurecode's
isa_l_rs_cauchy backend uses: parity for whole fragments, written byte for byte as pyeclib writes
them (its 80-byte header included), and missing data payloads rebuilt with that matrix inverted
for the fragments at hand. ec_encode_data and memmove are ctypes calls, so the GIL is released
while they run. Self-checks against pyeclib (gateway/objects/erasure.py) decide, once per scheme and
process, whether each is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import struct
import zlib
from collections.abc import Iterator, Sequence

from cluster import isal

_Bytes = bytes | bytearray | memoryview


@functools.cache
def _lib() -> ctypes.CDLL | None:
    """The ISA-L library pyeclib's wheel bundles, with the four calls used here typed; None if absent."""
    lib = isal.library("ec_encode_data", "ec_init_tables", "gf_gen_cauchy1_matrix", "gf_invert_matrix")
    if lib is None:
        return None
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
    out = [bytearray(size) for _ in missing]
    if not size:
        return out
    targets = (ctypes.c_void_p * len(missing))(*(ctypes.addressof(ctypes.c_char.from_buffer(b)) for b in out))
    with _addresses([payloads[i] for i in survivors]) as addresses:
        sources = (ctypes.c_void_p * k)(*addresses)
        lib.ec_encode_data(size, k, len(missing), tables, sources, targets)
    return out


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer (in the stable ABI since 3.11)."""

    _fields_ = (
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    )


# PYFUNCTYPE: called with the GIL held, and a Python error the call sets is raised.
_get_buffer = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)(
    ("PyObject_GetBuffer", ctypes.pythonapi)
)
_release_buffer = ctypes.PYFUNCTYPE(None, ctypes.POINTER(_PyBuffer))(("PyBuffer_Release", ctypes.pythonapi))
_PYBUF_SIMPLE = 0  # contiguous bytes, read-only allowed


@contextlib.contextmanager
def _addresses(buffers: Sequence[_Bytes]) -> Iterator[list[int]]:
    """Where each buffer's bytes are, held in place until the block ends. ctypes points only at
    writable buffers or whole bytes objects; the payloads are read-only views into fragments, and
    copying them was a fifth of a degraded read's event-loop time."""
    held: list[_PyBuffer] = []
    try:
        for b in buffers:
            view = _PyBuffer()
            _get_buffer(b, ctypes.byref(view), _PYBUF_SIMPLE)
            held.append(view)
        yield [v.buf for v in held]
    finally:
        for view in held:
            _release_buffer(ctypes.byref(view))


# liberasurecode's fragment header as isa_l_rs_cauchy writes it (packed, little-endian): idx, payload
# size, backend metadata size (0), segment size, checksum type (1: none), eight checksum words (0),
# checksum mismatch (0), backend id (7), backend version; then magic, library version, the CRC-32 of
# the 59 bytes before the magic, and zero padding to 80 bytes.
HEADER_LEN = 80
_META = struct.Struct("<IIIQB32xBBI")
_TRAILER = struct.Struct("<III")
_BACKEND_ID, _BACKEND_VERSION, _MAGIC, _LIBEC_VERSION = 7, 0x20E01, 0xB0C5ECC, 0x10800


@functools.cache
def _parity_tables(k: int, m: int) -> ctypes.Array[ctypes.c_ubyte]:
    lib = _lib()
    assert lib is not None
    encode = (ctypes.c_ubyte * ((k + m) * k))()
    lib.gf_gen_cauchy1_matrix(encode, k + m, k)
    parity_rows = (ctypes.c_ubyte * (m * k)).from_buffer(encode, k * k)
    tables = (ctypes.c_ubyte * (32 * k * m))()
    lib.ec_init_tables(k, m, parity_rows, tables)
    return tables


def encode(k: int, m: int, segment: bytes) -> list[bytearray]:
    """The k+m fragments of a segment, as pyeclib's isa_l_rs_cauchy encodes them."""
    lib = _lib()
    if lib is None:
        raise RuntimeError("ISA-L is not available")
    n = len(segment)
    size = -(-n // k)  # each data payload; the last is padded with zeros
    fragments = [bytearray(HEADER_LEN + size) for _ in range(k + m)]
    addresses = [ctypes.addressof(ctypes.c_char.from_buffer(f)) + HEADER_LEN for f in fragments]
    source = ctypes.cast(ctypes.c_char_p(segment), ctypes.c_void_p).value or 0
    for i in range(k):
        length = min(size, n - i * size)
        if length > 0:
            ctypes.memmove(addresses[i], source + i * size, length)
    if size:
        data = (ctypes.c_void_p * k)(*addresses[:k])
        parity = (ctypes.c_void_p * m)(*addresses[k:])
        lib.ec_encode_data(size, k, m, _parity_tables(k, m), data, parity)
    for i, frag in enumerate(fragments):
        _META.pack_into(frag, 0, i, size, 0, n, 1, 0, _BACKEND_ID, _BACKEND_VERSION)
        _TRAILER.pack_into(frag, _META.size, _MAGIC, _LIBEC_VERSION, zlib.crc32(memoryview(frag)[: _META.size]))
    return fragments
