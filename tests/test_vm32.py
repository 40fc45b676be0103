"""Issue 10: the firmware's heap on a 32-bit MicroPython VM (the ESP32's word size), next to
the 64-bit pip VM. The 32-bit binary comes from bench/build_vm32.sh (not part of `make
test`: it needs gcc-multilib and a few minutes); the tests that need it skip without it.
docs/HARDWARE.md "RAM and boot time" has the figures."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from host.deploy import device_files
from host.emulate import REPO
from host.emulator import World
from host.emulator.vmtools import VM_ENV, VmUnavailable, check_available, vm_binary, vm_command

from .vm import needs_micropython

BUILD_SCRIPT = REPO / "bench" / "build_vm32.sh"
micropython = pytest.mark.micropython


def _vm32_path():
    """Where bench/build_vm32.sh puts the 32-bit binary (VIGIL_MICROPYTHON32 overrides)."""
    if os.environ.get("VIGIL_MICROPYTHON32"):
        return Path(os.environ["VIGIL_MICROPYTHON32"])
    commit = re.search(r"^MICROPYTHON_COMMIT=([0-9a-f]{40})", BUILD_SCRIPT.read_text(),
                       re.M).group(1)
    cache = os.environ.get("VIGIL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vigil")
    return Path(cache) / ("micropython-%s-32bit" % commit[:10]) / "micropython"


VM32 = _vm32_path()
needs_vm32 = pytest.mark.skipif(
    not os.access(VM32, os.X_OK),
    reason="no 32-bit MicroPython at %s (build it with bench/build_vm32.sh; needs "
           "gcc-multilib)" % VM32)


def test_a_vigil_micropython_that_is_not_there_is_one_line(monkeypatch):
    monkeypatch.setenv(VM_ENV, "/nonexistent/micropython")
    with pytest.raises(VmUnavailable) as e:
        check_available()
    assert "VIGIL_MICROPYTHON=/nonexistent/micropython" in str(e.value)
    assert "\n" not in str(e.value)


def test_vigil_micropython_names_the_binary_and_unset_keeps_the_default(monkeypatch):
    monkeypatch.setenv(VM_ENV, "/bin/true")
    assert vm_command() == ["/bin/true"] == vm_command(flash_fd=5)  # no launcher for it
    assert vm_binary() == "/bin/true"
    monkeypatch.delenv(VM_ENV)
    assert vm_binary() is None  # the pip VM, as before


def _run(binary, code):
    out = subprocess.run([str(binary), "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


# What the firmware does with UTC in ms (core.utc_ms: 1.78e12 now), CRC-32s and u32 fields:
# on the ESP32 (31-bit small ints) each result is a bignum on the heap; on the 64-bit VM
# (62-bit small ints) none is. `keep` holds the results so the collection cannot free them.
_BIGNUM_PROBE = """
import gc, binascii, struct
utc_ms = 1780000000000
keep = [None] * 4
gc.collect()
before = gc.mem_alloc()
keep[0] = utc_ms + 1234
keep[1] = binascii.crc32(b"vigil")
keep[2] = struct.unpack("<I", b"\\xff\\xff\\xff\\xf0")[0]
keep[3] = (1 << 30) - 30000 + 40000
gc.collect()
print(gc.mem_alloc() - before)
"""


@micropython
@needs_vm32
@needs_micropython
def test_utc_ms_crc32_and_u32_fields_are_bignums_only_on_32_bit():
    (grown_32,) = _run(VM32, _BIGNUM_PROBE)
    (grown_64,) = _run(vm_command()[0], _BIGNUM_PROBE)
    assert int(grown_64) == 0
    # 4 bignums of one or two 16-byte GC blocks each (96 bytes measured)
    assert int(grown_32) >= 4 * 16, grown_32


def test_the_build_script_pins_the_pip_vms_version():
    text = BUILD_SCRIPT.read_text()
    assert "MICROPY_PY_FFI=0" in text and "-m32" in text
    assert re.search(r"^MBEDTLS_COMMIT=[0-9a-f]{40}", text, re.M)


_IMPORTS = b"""
import gc
gc.collect()
before = gc.mem_alloc()
from firmware import app, board, gnss, store, persist
from protocol import codec, crypto, framing, messages
gc.collect()
print("heap-probe", before, gc.mem_alloc())
"""


def _imports_heap():
    files = device_files(REPO)
    files["/main.py"] = _IMPORTS
    with World(seed=0) as world:
        dev = world.add_device(1, files=files, runtime="micropython", heap_bytes=256 * 1024)
        world.run_until(5000)
        (line,) = [line for _t, line in dev.log if line.startswith("heap-probe")]
        _, before, after = line.split()
        return int(after) - int(before), dev.vm.word_bytes, dev.vm.rom_heap_bytes


@micropython
@needs_vm32
@needs_micropython
def test_the_firmware_imports_on_both_vms_and_32_bit_takes_less_heap(monkeypatch):
    """The imports probe of bench/heap.py on both VMs: the same .mpy files, so the difference
    is the word size alone (measured: 79 KB on 32-bit, 112 KB on 64-bit, 0.71)."""
    monkeypatch.delenv(VM_ENV, raising=False)
    heap_64, word_64, rom_64 = _imports_heap()
    monkeypatch.setenv(VM_ENV, str(VM32))
    heap_32, word_32, rom_32 = _imports_heap()
    assert (word_64, word_32) == (8, 4)
    assert 0.55 < heap_32 / heap_64 < 0.85, (heap_32, heap_64)
    assert rom_32 < rom_64


@micropython
@needs_vm32
@needs_micropython
def test_a_scenario_gives_the_same_trace_on_the_32_bit_vm(monkeypatch):
    """The firmware runs unchanged on 31-bit small ints: the frames on the wire are the same
    bytes as under CPython (an overflow that behaved differently would change the hash)."""
    from host import emulate, scenario

    sc = scenario.load("panic-walk")
    sc["scenario"]["duration_s"] = 1800  # the panic is held at 1500 s
    cpython = emulate.run(sc, runtime="cpython")[0]
    monkeypatch.setenv(VM_ENV, str(VM32))
    vm32 = emulate.run(sc, runtime="micropython", heap_bytes=128 * 1024)[0]
    assert vm32["device_faults"] == [] and vm32["crashes"] == 0
    assert vm32["alarms_acked"] == cpython["alarms_acked"] >= 1
    assert vm32["trace_sha256"] == cpython["trace_sha256"]
