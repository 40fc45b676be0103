"""The command line of `vigil emulate SCENARIO` and `vigil scenarios`: options, progress,
Ctrl-C and the printed summary. The run itself is host/emulate.py's `run`.
"""
import contextlib
import json
import os
import signal
import sys
import threading

from host import scenario as scenarios
from host.cliutil import OneLineParser
from host.emulate import KEY_ID, TraceError, device_key, firmware_tree, run
from host.keys import KeyStore
from host.keys_cli import write_private


def _clock(t_ms):
    s = int(t_ms // 1000)
    return "%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


def _ms(stats):
    if not stats["n"]:
        return "none measured"
    return "p50 %.0f ms, p95 %.0f ms, max %.0f ms (n=%d)" % (
        stats["p50"], stats["p95"], stats["max"], stats["n"])


def format_summary(summary, timeline):
    s = summary
    lines = ["scenario %s (seed %d): %s of virtual time in %.2f s wall (%.0fx real time)" % (
        s["scenario"], s["seed"], _clock(s["virtual_s"] * 1000), s["wall_s"],
        s["virtual_s"] / max(s["wall_s"], 1e-9)), "", "timeline:"]
    lines.extend("  %s  %s" % (_clock(t), text) for t, text in timeline[:60])
    if len(timeline) > 60:
        lines.append("  ... %d more events (--trace FILE keeps them all)" % (len(timeline) - 60))
    lines += [
        "",
        "frames: %d up, %d down%s" % (s["frames_up"], s["frames_down"], (
            "; refused at the centre: " + ", ".join(
                "%s %d" % kv for kv in sorted(s["frames_refused"].items())))
            if s["frames_refused"] else ""),
        "alarms: %d raised, %d acked, %d lost (long presses with no alarm at the centre, "
        "of %d)" % (s["alarms_raised"], s["alarms_acked"], s["alarms_lost"], s["presses_long"]),
        "haptic patterns felt: %s" % (", ".join(
            "%s %d" % kv for kv in sorted(s["haptic"].items())) or "none"),
        "device death or outage to NOT REPORTING: " + _ms(s["not_reporting_latency_ms"]),
        "proximity: %d true crossing(s) with no level at the wearer within 60 s, "
        "%d false warning(s)" % (s["proximity_missed"], s["proximity_false"]),
        "panic to transport ack: " + _ms(s["panic_to_ack_ms"]),
        "offender within warning radius to haptic warning: " + _ms(
            s["proximity_warn_latency_ms"]) + (
            "; %d crossing(s) never warned" % s["proximity_warnings_missed"]
            if s["proximity_warnings_missed"] else ""),
        "first tag report inside the radius to haptic warning: " + _ms(
            s["proximity_observed_latency_ms"]),
        "downlinks held for a sleeping device: " + _ms(s["downlink_wait_ms"]),
        "energy: %.2f mAh on %s (%.2f of it the board's constant draws), average %.3f mA, "
        "%s, battery lasts %.1f days" % (
            s["energy_mah"], s["profile"], s["board_mah"], s["avg_current_ma"],
            "no fix, so no physical floor" if s["floor_ratio"] is None else
            "%.1fx the physical floor" % s["floor_ratio"], s["projected_battery_days"]),
        "trace sha256: " + s["trace_sha256"],
    ]
    if s["crashes"]:
        lines.append("firmware crashes: %d (see the timeline)" % s["crashes"])
    if s.get("runtime") == "micropython":
        lines.append("MicroPython VM: peak heap %s bytes (gc.mem_alloc() at each wake, the "
                     "emulator's ROM modules left out)" % (
            ", ".join("device %s %s" % kv for kv in sorted(s["peak_heap_bytes"].items()))))
    for fault in s["device_faults"]:
        lines.append("device %s fault at %s: %s: %s" % (
            fault["device"], _clock(fault["t_ms"]), fault["kind"], fault["detail"]))
    return "\n".join(lines)


def _progress_bar(duration_s):
    if not sys.stderr.isatty() or duration_s < 3600:
        return None

    def show(fraction, now_ms):
        width = 30
        filled = int(fraction * width)
        sys.stderr.write("\r[%s%s] %3d%%  %s virtual" % (
            "#" * filled, "." * (width - filled), fraction * 100, _clock(now_ms)))
        if fraction >= 1:
            sys.stderr.write("\r" + " " * 60 + "\r")
        sys.stderr.flush()
    return show


@contextlib.contextmanager
def _ctrl_c():
    """Turn the first Ctrl-C into a request to stop, answered between run steps (a
    KeyboardInterrupt raised inside the scheduler could leave a firmware thread holding the
    baton, and the trace unwritten). A second Ctrl-C interrupts at once."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def on_sigint(_signum, _frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _runtime_options(args):
    """--runtime/--heap/--save-flash checked: the heap in bytes (None: the default), or False
    after printing a one-line error."""
    if args.save_flash and not os.path.isdir(args.save_flash):
        print("vigil emulate: --save-flash %s: not a directory" % args.save_flash,
              file=sys.stderr)
        return False
    heap_bytes = None
    if args.heap is not None:
        from host.emulator.vmtools import parse_heap
        if args.runtime != "micropython":
            print("vigil emulate: --heap needs --runtime micropython", file=sys.stderr)
            return False
        try:
            heap_bytes = parse_heap(args.heap)
        except ValueError as e:
            print("vigil emulate: --heap: %s" % e, file=sys.stderr)
            return False
    if args.runtime == "micropython":
        from host.emulator.vmtools import VmUnavailable, check_available
        try:
            check_available()
        except VmUnavailable as e:
            print("vigil emulate: --runtime micropython: %s" % e, file=sys.stderr)
            return False
    return heap_bytes


def main(argv):
    parser = OneLineParser(prog="vigil emulate", description=(
        "Run a scenario (a built-in name or a TOML file) on emulated devices against the "
        "emulated monitoring centre, in virtual time."))
    parser.add_argument("scenario", help="built-in name (see `vigil scenarios`) or FILE.toml")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trace", metavar="FILE.jsonl", help="write every event as JSON lines")
    parser.add_argument("--firmware", metavar="DIR", help=(
        "run another firmware tree: a checkout with firmware/ and protocol/, or a firmware "
        "folder; its stdout, tracebacks and REPL show in --trace as device_log events"))
    parser.add_argument("--record", metavar="FILE.pcapng",
                        help="record every device's link and the stimuli (pcapng)")
    parser.add_argument("--keys", metavar="FILE", help=(
        "write the run's device keys here (mode 0600; the key file format of `vigil decode "
        "--key-file` and `vigil centre --keys`)"))
    parser.add_argument("--report", metavar="FILE.html",
                        help="write the session report (one self-contained HTML file)")
    parser.add_argument("--runtime", choices=("cpython", "micropython"), default="cpython",
                        help="run the firmware under CPython (default) or in the real "
                        "MicroPython VM, one process per boot, on littlefs")
    parser.add_argument("--heap", metavar="SIZE", help="the VM's heap (-X heapsize), e.g. "
                        "96K (micropython runtime only; default 256K)")
    parser.add_argument("--save-flash", metavar="DIR", help="write each device's flash image "
                        "to DIR/device-ID.img at the end (read it with `vigil flash-image`)")
    args = parser.parse_args(argv)
    heap_bytes = _runtime_options(args)
    if heap_bytes is False:
        return 2
    firmware_files = None
    if args.firmware:
        try:
            firmware_files = firmware_tree(args.firmware)
        except (ValueError, OSError) as e:
            print("vigil emulate: %s" % e, file=sys.stderr)
            return 2
    try:
        sc = scenarios.load(args.scenario)
    except scenarios.ScenarioError as e:
        print("vigil emulate: %s" % e, file=sys.stderr)
        return 2
    if args.seed is not None and not 0 <= args.seed < 2**32:
        print("vigil emulate: --seed %d: must be 0 to 2**32-1" % args.seed, file=sys.stderr)
        return 2
    for option, path in (("--trace", args.trace), ("--report", args.report)):
        if not path:
            continue
        try:
            open(path, "w").close()
        except OSError as e:
            print("vigil emulate: %s %s: %s" % (option, path, e.strerror), file=sys.stderr)
            return 2
    if args.record:
        try:
            open(args.record, "w").close()
        except OSError as e:
            print("vigil emulate: --record %s: %s" % (args.record, e.strerror), file=sys.stderr)
            return 2
    if args.keys:
        seed = sc["scenario"]["seed"] if args.seed is None else args.seed
        keys = KeyStore((d["id"], KEY_ID, device_key(seed, d["id"])) for d in sc["device"])
        try:
            write_private(args.keys, keys.to_json() + "\n")
        except OSError as e:
            print("vigil emulate: --keys %s: %s" % (args.keys, e.strerror or e),
                  file=sys.stderr)
            return 2
    progress = None if args.json else _progress_bar(sc["scenario"]["duration_s"])
    try:
        with _ctrl_c() as stop:
            summary, timeline = run(sc, seed=args.seed, progress=progress,
                                    trace_path=args.trace, record_path=args.record,
                                    source=args.scenario, firmware_files=firmware_files,
                                    stop=stop, report_path=args.report,
                                    runtime=args.runtime, heap_bytes=heap_bytes,
                                    save_flash=args.save_flash)
    except TraceError as e:
        print("vigil emulate: %s" % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary, timeline))
    return 0


def main_scenarios(argv):
    parser = OneLineParser(prog="vigil scenarios",
                                     description="List the built-in scenarios.")
    parser.parse_args(argv)
    for name in scenarios.builtin_names():
        sc = scenarios.load(name)
        print("%-18s %6.1f h  %s" % (name, sc["scenario"]["duration_s"] / 3600,
                                     sc["scenario"]["description"]))
    return 0
