"""The figures of issue 10, for `python bench/emulator.py --runtime micropython`:

- one device-day (quiet-day, 24 h) with the firmware in the MicroPython VM: wall and CPU
  seconds (target <= 30 s wall);
- every built-in scenario at --heap 96K: passes (no device fault, no crash) or not, and the
  peak heap of each at the default heap;
- quiet-day over 7 virtual days: the largest live heap (gc.mem_alloc() after the superloop's
  gc.collect()) of each day, to show no growth; garbage waiting for a collection would only
  add noise.

Every heap figure is the firmware's: the emulator's own modules (ROM on a board) are measured
at VM start, added to -X heapsize and left out (`vm_rom_heap_bytes`; docs/HARDWARE.md).
"""
import resource
import time

from host import emulate, scenario


def _children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the VM processes, once reaped
    return usage.ru_utime + usage.ru_stime

DAY_S = 86400
TARGET_DAY_WALL_S = 30.0
HEAP_96K = 96 * 1024


def _run(name, hours=None, heap_bytes=None):
    sc = scenario.load(name)
    if hours is not None:
        sc["scenario"]["duration_s"] = hours * 3600
    started, cpu = time.perf_counter(), time.process_time() + _children_cpu_s()
    with emulate.one_core():
        sim = emulate.ScenarioRun(sc, runtime="micropython", heap_bytes=heap_bytes)
        try:
            sim.run()
            summary = sim.summary(time.perf_counter() - started)
            samples = {d: list(dev.vm.live_samples) for d, dev in sim.devices.items()}
            summary["live"] = max(dev.vm.peak_live_heap_bytes or 0 for dev in sim.devices.values())
            summary["rom"] = max(dev.vm.rom_heap_bytes or 0 for dev in sim.devices.values())
        finally:
            sim.close()
    return (summary, samples, time.perf_counter() - started,
            time.process_time() + _children_cpu_s() - cpu)


def _until_fault(name, heap_bytes):
    """Does the scenario run in full at heap_bytes? Stops at the first fault (a heap too small
    crash-loops at boot)."""
    sc = scenario.load(name)
    with emulate.one_core():
        sim = emulate.ScenarioRun(sc, runtime="micropython", heap_bytes=heap_bytes)
        try:
            t = 0
            while t < sim.duration_ms:
                t = min(sim.duration_ms, t + 5000)
                sim.world.run_until(t)
                for dev in sim.devices.values():
                    if dev.faults or dev.crashes:
                        what = (dev.faults[0][1:] if dev.faults else ("crash", dev.crashes[0][1]))
                        return False, "%s: %s" % what
        finally:
            sim.close()
    return True, ""


def bench_vm(quick=False):
    figures = {}
    summary, _s, wall, cpu = _run("quiet-day", hours=2 if quick else None)
    day_wall = wall * (DAY_S / summary["virtual_s"])
    figures.update(vm_day_wall_s=day_wall, vm_day_cpu_s=cpu * (DAY_S / summary["virtual_s"]),
                   vm_day_measured_virtual_s=summary["virtual_s"])
    # Lockstep: the host and the VM never run at once, so on an idle machine the wall time
    # is the CPU time of both; on a loaded one the wall time also counts waiting for a core.
    print("micropython one device-day (quiet-day): %.1f s wall, %.1f s CPU (this process and "
          "its VM processes)%s" % (
              day_wall, figures["vm_day_cpu_s"], " (scaled from 2 h)" if quick else ""))
    figures["vm_rom_heap_bytes"] = summary["rom"]
    peaks, lives, at_96k = {}, {}, {}
    for name in ([] if quick else scenario.builtin_names()):
        summary, _s, wall, _cpu = _run(name)
        peaks[name] = max(summary["peak_heap_bytes"].values())
        lives[name] = summary["live"]
        ok, why = _until_fault(name, HEAP_96K)
        at_96k[name] = ok
        print("  %-18s peak heap %6d bytes at a wake, live %6d (default heap), %.1f s; at "
              "--heap 96K: %s" % (name, peaks[name], lives[name], wall,
                                  "passes" if ok else "FAILS (%s)" % why))
    figures["vm_peak_heap_bytes"] = peaks
    figures["vm_peak_live_heap_bytes"] = lives
    figures["vm_passes_at_96k"] = at_96k
    days = 2 if quick else 7
    summary, samples, wall, _cpu = _run("quiet-day", hours=24 * days)
    (series,) = samples.values()
    firsts = []
    for day in range(days):
        day_samples = [b for t, b in series if day * DAY_S * 1000 <= t < (day + 1) * DAY_S * 1000]
        firsts.append(max(day_samples) if day_samples else None)
    figures["vm_quiet_day_peak_heap_by_day"] = firsts
    known = [b for b in firsts if b is not None]
    figures["vm_heap_growth_bytes_per_day"] = (known[-1] - known[0]) / max(1, len(known) - 1) \
        if len(known) > 1 else None
    print("quiet-day over %d days: largest live heap, day by day: %s (%.0f s wall)" % (
        days, firsts, wall))
    figures["vm_targets_met"] = {
        "one device-day <= 30 s wall": day_wall <= TARGET_DAY_WALL_S,
        "every built-in passes at --heap 96K": bool(at_96k) and all(at_96k.values()),
        # Growth, not jitter: the last day's live peak within 1 KiB of the first day's
        # (counters and queue indexes change an object's size by a few GC blocks).
        "no heap growth day to day": len(known) > 1 and known[-1] <= known[0] + 1024,
    }
    for target, met in figures["vm_targets_met"].items():
        print("target %-40s %s" % (target, "met" if met else "NOT met"))
    return figures
