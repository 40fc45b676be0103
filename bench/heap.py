"""The smallest MicroPython heap (-X heapsize) on which the whole firmware runs a simulated
day under `--runtime micropython`: prints figures, then one JSON object as the last line.

    python bench/heap.py [--scenario quiet-day] [--hours 24] [--low 32] [--high 512] [--step 4]

Bisection over KiB: a heap passes when the scenario runs its whole duration with no device
fault (no MemoryError anywhere, no VM death) and no firmware crash; a failing heap stops at
its first fault. Also reports what the heap holds at the smallest size: the imports alone
(every firmware module loaded, before the superloop) and the peak of gc.mem_alloc() at the
wakes. The VM here is the 64-bit unix port: objects and bytecode are up to twice their
ESP32 (32-bit) size, so the figures are pessimistic for the board.
"""
import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host import emulate, scenario  # noqa: E402
from host.emulator.vm import VmUnavailable, check_available  # noqa: E402

TARGET_KIB = 80


def trial(name, hours, heap_kib):
    """(passed, peak heap bytes, faults, wall s) of one run at heap_kib."""
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
            peaks = [d.vm.peak_heap_bytes or 0 for d in sim.devices.values()]
        finally:
            sim.close()
    passed = not faults and not crashes
    return passed, max(peaks), faults + crashes, time.perf_counter() - started


IMPORTS_PROBE = b"""
import gc
gc.collect()
before = gc.mem_alloc()
from firmware import app, board, gnss, nmea, store, persist
from protocol import codec, crypto, framing, messages
gc.collect()
print("heap-probe", before, gc.mem_alloc())
"""


def imports_heap():
    """(bytes before, bytes after) importing every firmware module in the VM, on littlefs."""
    from host.deploy import device_files
    from host.emulator import World

    files = device_files(REPO)
    files["/main.py"] = IMPORTS_PROBE
    with World(seed=0) as world:
        dev = world.add_device(1, files=files, runtime="micropython", heap_bytes=512 * 1024)
        world.run_until(5000)
        for _t, line in dev.log:
            if line.startswith("heap-probe"):
                _, before, after = line.split()
                return int(before), int(after)
    raise RuntimeError("the import probe printed nothing: %r" % dev.log[-5:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="quiet-day")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--low", type=int, default=32, help="KiB known or assumed to fail")
    parser.add_argument("--high", type=int, default=512, help="KiB expected to pass")
    parser.add_argument("--step", type=int, default=4, help="resolution in KiB")
    args = parser.parse_args(argv)
    try:
        check_available()
    except VmUnavailable as e:
        print("bench/heap.py: %s" % e, file=sys.stderr)
        return 2
    started = time.perf_counter()
    before, after = imports_heap()
    print("imports: %d bytes of heap before the firmware, %d after importing all of it "
          "(%d for the firmware's modules)" % (before, after, after - before))
    low, high = args.low, args.high
    ok, peak, faults, wall = trial(args.scenario, args.hours, high)
    print("%4d KiB: %s (peak %d bytes at a wake, %.1f s)" % (
        high, "passes" if ok else "FAILS: " + faults[0], peak, wall))
    if not ok:
        print("bench/heap.py: the firmware does not run even at %d KiB" % high, file=sys.stderr)
        return 1
    best_peak = peak
    while high - low > args.step:
        mid = (low + high) // 2
        ok, peak, faults, wall = trial(args.scenario, args.hours, mid)
        print("%4d KiB: %s (%.1f s)" % (mid, ("passes, peak %d bytes at a wake" % peak)
                                        if ok else "fails: " + faults[0], wall))
        if ok:
            high, best_peak = mid, peak
        else:
            low = mid
    figures = {
        "scenario": args.scenario,
        "hours": args.hours,
        "min_heap_kib": high,
        "resolution_kib": args.step,
        "peak_heap_bytes_at_min": best_peak,
        "imports_heap_bytes": after - before,
        "vm_baseline_heap_bytes": before,
        "target_kib": TARGET_KIB,
        "target_met": high <= TARGET_KIB,
        "word_bits": 64,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print("smallest heap that runs %s for %.0f h: %d KiB (target <= %d KiB: %s); the imports "
          "alone take %d bytes" % (args.scenario, args.hours, high, TARGET_KIB,
                                   "met" if figures["target_met"] else "NOT met",
                                   after - before))
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
