"""ISA-L, the C library pyeclib's wheel bundles, loaded for ctypes calls (which run without the GIL).

The gateway calls it for Reed-Solomon (gateway/objects/rs_isal.py) and for the CRC32 of request bodies
(gateway/s3/checksums.py).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import pyeclib


@functools.cache
def library(*symbols: str) -> ctypes.CDLL | None:
    """The bundled ISA-L that exports every one of `symbols`; None if there is none. Each distinct set of
    symbols gets a handle of its own, so that callers typing their functions do not meet."""
    libs = os.path.join(os.path.dirname(os.path.dirname(pyeclib.__file__)), "pyeclib.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libisal*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            for name in symbols:
                getattr(lib, name)
        except (OSError, AttributeError):
            continue
        return lib
    return None
