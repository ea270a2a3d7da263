"""The running Tessera's version, as every service reports it (admin status, the Server header)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("tessera")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "unknown"

SERVER = f"Tessera/{VERSION}"  # the Server header's value
