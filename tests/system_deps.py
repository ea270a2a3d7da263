"""Install what some tests need beyond the test extra: Debian packages (where this machine allows it: root
with apt-get), and s3fs in a directory of its own (its aiobotocore pins a botocore other than aws-cli's).

    python -m tests.system_deps      # part of the README's test command

libfaketime: the skewed-clock gateway test (tests/test_faults.py); rclone: the rclone client tests
(tests/test_rclone.py); chromium and chromium-driver: the console's browser tests (tests/test_console_*.py);
s3fs (from PyPI, into .test-deps/s3fs): tests/test_versioning.py runs it in a subprocess. Without root or
apt-get no package is installed and those tests skip, saying why; this command never fails the run on that
account.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Debian package -> a file that shows it is installed.
PACKAGES = {
    "libfaketime": "/usr/lib/*/faketime/libfaketime.so.1",
    "rclone": "/usr/bin/rclone",
    "chromium": "/usr/bin/chromium",  # the console tests' browser (tests/test_console_*.py) ...
    "chromium-driver": "/usr/bin/chromedriver",  # ... driven through Selenium
}


def missing() -> list[str]:
    return [pkg for pkg, probe in PACKAGES.items() if not glob.glob(probe)]


def _apt(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, check=False).returncode == 0


S3FS = Path(__file__).resolve().parent.parent / ".test-deps" / "s3fs"


def install_s3fs() -> None:
    if (S3FS / "s3fs").is_dir():
        return
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-warn-conflicts", "--target", str(S3FS), "s3fs>=2023.1"]
    if subprocess.run(cmd, check=False).returncode != 0:
        print("tests.system_deps: could not install s3fs; its test skips")


def main() -> int:
    install_s3fs()
    needed = missing()
    if not needed:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"tests.system_deps: not installing {' '.join(needed)} (needs root and apt-get); their tests skip")
        return 0
    install = ("install", "-y", "-q", "--no-install-recommends", *needed)
    if not _apt(*install):  # a fresh image has no package lists yet
        _apt("update", "-q")
        _apt(*install)
    if still := missing():
        print(f"tests.system_deps: could not install {' '.join(still)}; their tests skip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
