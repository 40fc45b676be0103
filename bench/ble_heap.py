"""What the BLE link costs MicroPython's heap, on the real VM (`--runtime micropython`), against
the UART link it replaces. Prints figures; the last line is one JSON object.

    python bench/ble_heap.py [--frames 32] [--frame-bytes 100] [--app-minutes 10]
                             [--min-heap LOW HIGH STEP]

The probe is a main.py run by the MicroPython unix port on the emulated board's littlefs:
gc.mem_alloc() after gc.collect() before and after importing firmware/link.py and building
its Link, then importing firmware/ble.py and building a BleLink whose
queue is full (`max_queued` frames of `frame-bytes`, the driver's worst case). persist.py is
imported first: the app has it whatever the link. The VM cannot
be given an exact worst case over the emulated radio, so the probe hands the driver a
stand-in `BLE` object that returns handles and does nothing: the figure is the driver's code,
its state and its queue, which is what BLE adds to MicroPython's heap. `--app-minutes` also
runs the whole firmware on the VM over each link (the emulated radio through the VM bridge)
and reports the peak of gc.mem_alloc() at its wakes, overall and after the first minute. NimBLE's
host and the controller live in the IDF heap, outside MicroPython's (docs/HARDWARE.md).
The pip VM is 64-bit: objects and bytecode are up to 1.4 times their ESP32 size; with
VIGIL_MICROPYTHON set to the 32-bit build of bench/build_vm32.sh, the figures are the board's
(`word_bits` in the JSON says which).
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host.emulator.vmtools import VmUnavailable, check_available  # noqa: E402

PROBE = """
import gc, os, time
from firmware import persist  # noqa: F401 - the app imports it whatever the link
try:
    os.mkdir("/state")
except OSError:
    pass


class Uart:
    def write(self, data):
        return len(data)

    def any(self):
        return 0


class StandInBLE:
    def active(self, *a):
        return True

    def config(self, *a, **k):
        return None

    def irq(self, handler):
        self.handler = handler

    def gap_advertise(self, *a, **k):
        pass

    def gatts_register_services(self, services):
        return ((1, 2),)

    def gatts_set_buffer(self, *a):
        pass

    def gatts_indicate(self, *a):
        raise OSError(107)


gc.collect()
before = gc.mem_alloc()
from firmware import link as uart_link
ulink = uart_link.Link(Uart())
gc.collect()
print("uart-probe", before, gc.mem_alloc())
gc.collect()
before = gc.mem_alloc()
from firmware import ble
gc.collect()
imported = gc.mem_alloc()
link = ble.BleLink(StandInBLE(), str, time.ticks_ms, max_queued=%(frames)d,
                   secrets="/state/ble.bin")
link.ble.handler(30, (10, b"irk", bytes(16)))
for n in range(%(frames)d):
    link.write(bytes(%(frame_bytes)d))
gc.collect()
print("ble-probe", before, imported, gc.mem_alloc(), len(link._queue))
"""


def probe(frames, frame_bytes):
    from host.deploy import device_files
    from host.emulator import World

    files = device_files(REPO)
    files["/main.py"] = (PROBE % {"frames": frames, "frame_bytes": frame_bytes}).encode()
    found = {}
    with World(seed=0) as world:
        dev = world.add_device(1, files=files, runtime="micropython", heap_bytes=512 * 1024)
        world.run_until(5000)
        for _t, line in dev.log:
            if line.startswith(("ble-probe", "uart-probe")):
                name, *numbers = line.split()
                found[name] = [int(n) for n in numbers]
        if set(found) != {"ble-probe", "uart-probe"}:
            raise RuntimeError("the probe printed %r" % [line for _t, line in dev.log][-8:])
        found["word_bits"] = 8 * dev.vm.word_bytes
    return found


def app_peak(link, minutes, heap_kib):
    """(peak gc.mem_alloc() at a wake, the same from the first minute on or None, faults) of
    the whole firmware on the VM, quiet-day on the product profile, over `link` ("uart" or
    "ble"). The boot's peak (imports, before the link exists) comes first on both links."""
    from host import emulate, scenario

    sc = scenario.load("quiet-day")
    sc["scenario"]["profile"] = "product"
    if link == "ble":
        sc["link"]["kind"] = "ble"
    sim = emulate.ScenarioRun(sc, runtime="micropython", heap_bytes=heap_kib * 1024)
    try:
        sim.world.run_until(minutes * 60_000)
        devices = list(sim.devices.values())
        peak = max(d.vm.peak_heap_bytes or 0 for d in devices)
        later = [b for d in devices for t, b in d.vm.heap_samples if t >= 60_000]
        if link == "ble":
            assert all(p.stats["connects"] for p in sim.peers.values()), "no BLE connection"
        faults = ["%s: %s" % (k, x) for d in devices for _t, k, x in d.faults]
        faults += [text for d in devices for _t, text in d.crashes]
    finally:
        sim.close()
    return peak, (max(later) if later else None), faults


def runs_at(link, minutes, heap_kib):
    """Whether the whole firmware runs `minutes` of quiet-day (esp32-devkitc) over `link` on a
    VM heap of heap_kib with no fault (MemoryError, VM death) and no crash."""
    from host import emulate, scenario

    sc = scenario.load("quiet-day")
    if link == "ble":
        sc["link"]["kind"] = "ble"
    with emulate.one_core():
        sim = emulate.ScenarioRun(sc, runtime="micropython", heap_bytes=heap_kib * 1024)
        try:
            t = 0
            while t < minutes * 60_000:         # stop at the first fault: a crash loop is slow
                t = min(minutes * 60_000, t + 5000)
                sim.world.run_until(t)
                if any(d.faults or d.crashes for d in sim.devices.values()):
                    return False
            return True
        finally:
            sim.close()


def min_heap_kib(link, minutes, low, high, step):
    """Bisection over KiB, as bench/heap.py: the smallest heap that runs."""
    if not runs_at(link, minutes, high):
        return None
    while high - low > step:
        mid = (low + high) // 2
        if runs_at(link, minutes, mid):
            high = mid
        else:
            low = mid
    return high


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=32, help="max_queued (the driver's)")
    parser.add_argument("--frame-bytes", type=int, default=100)
    parser.add_argument("--app-minutes", type=float, default=0,
                        help="also run the whole firmware this long on each link (quiet-day, "
                             "product profile) and report its peak heap at a wake")
    parser.add_argument("--heap-kib", type=int, default=256, help="the VM's heap for that run")
    parser.add_argument("--min-heap", nargs=3, type=int, metavar=("LOW", "HIGH", "STEP"),
                        help="also find the smallest heap (KiB) that runs --app-minutes of "
                             "quiet-day on each link, by bisection")
    args = parser.parse_args(argv)
    try:
        check_available()
    except VmUnavailable as e:
        print("bench/ble_heap.py: %s" % e, file=sys.stderr)
        return 2
    found = probe(args.frames, args.frame_bytes)
    before, imported, full, queued = found["ble-probe"]
    u_before, u_built = found["uart-probe"]
    figures = {
        "ble_import_bytes": imported - before,
        "ble_link_full_queue_bytes": full - imported,
        "ble_total_bytes": full - before,
        "uart_link_total_bytes": u_built - u_before,
        "ble_minus_uart_bytes": (full - before) - (u_built - u_before),
        "frames": queued,
        "frame_bytes": args.frame_bytes,
        "word_bits": found["word_bits"],
    }
    print("BLE link on the MicroPython VM (%d-bit): imports %d B, the link with %d queued "
          "frames of %d B %d B, %d B in all" % (figures["word_bits"], figures["ble_import_bytes"], queued,
                                                args.frame_bytes,
                                                figures["ble_link_full_queue_bytes"],
                                                figures["ble_total_bytes"]))
    print("UART link: %d B in all; BLE costs %d B more" % (figures["uart_link_total_bytes"],
                                                          figures["ble_minus_uart_bytes"]))
    if args.app_minutes:
        for link in ("uart", "ble"):
            peak, later, faults = app_peak(link, args.app_minutes, args.heap_kib)
            figures["app_%s_peak_heap_bytes" % link] = peak
            figures["app_%s_after_first_minute_peak_bytes" % link] = later
            figures["app_%s_faults" % link] = faults
            print("whole firmware over %s, %.0f min of quiet-day: peak %d B at a wake, %s after "
                  "the first minute%s" % (link, args.app_minutes, peak,
                                          "no wake" if later is None else "%d B" % later,
                                          "; faults: %s" % faults if faults else ""))
        figures["app_minutes"] = args.app_minutes
        if args.min_heap:
            low, high, step = args.min_heap
            for link in ("uart", "ble"):
                kib = min_heap_kib(link, args.app_minutes, low, high, step)
                figures["app_%s_min_heap_kib" % link] = kib
                print("smallest heap that runs %.0f min of quiet-day over %s: %s (%d KiB steps)"
                      % (args.app_minutes, link, "not even %d KiB" % high if kib is None
                         else "%d KiB" % kib, step))
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
