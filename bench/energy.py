"""Average current, battery days and downlink reach of every built-in scenario on both board
profiles (docs/HARDWARE.md "Board profiles", docs/LINK.md). Prints a table, then one JSON
object as the last line.

    python bench/energy.py [--scenarios quiet-day,commute] [--link uart|ble|both]

--link ble runs the same scenarios with the device linked over BLE through the wearer's phone
(firmware/ble.py listen windows, host/emulator/phone.py) instead of the UART/modem link.
"""
import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host import scenario as scenarios  # noqa: E402
from host.emulate import run  # noqa: E402

PROFILES = ("esp32-devkitc", "product")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", help="comma-separated built-in names (default: all)")
    parser.add_argument("--link", choices=("uart", "ble", "both"), default="uart",
                        help="the device's link (default: uart, the serial/modem design)")
    args = parser.parse_args(argv)
    links = ("uart", "ble") if args.link == "both" else (args.link,)
    names = args.scenarios.split(",") if args.scenarios else scenarios.builtin_names()
    results = {}
    print("%-18s %-14s %-5s %9s %8s %10s %12s" % ("scenario", "profile", "link", "avg mA",
                                                  "days", "x floor", "downlink max"))
    for name, profile, link in itertools.product(names, PROFILES, links):
        sc = scenarios.load(name)
        sc["scenario"]["profile"] = profile
        if link == "ble":
            sc["link"]["kind"] = "ble"
        summary, _ = run(sc)
        wait = summary["downlink_wait_ms"]["max"]
        key = "%s/%s" % (name, profile) + ("/ble" if link == "ble" else "")
        results[key] = {
            "avg_current_ma": summary["avg_current_ma"],
            "projected_battery_days": summary["projected_battery_days"],
            "floor_ratio": summary["floor_ratio"],
            "downlink_wait_max_ms": wait,
            "alarms_lost": summary["alarms_lost"],
            "device_faults": len(summary["device_faults"]),
        }
        print("%-18s %-14s %-5s %9.3f %8.1f %10s %12s" % (
            name, profile, link, summary["avg_current_ma"], summary["projected_battery_days"],
            "-" if summary["floor_ratio"] is None else "%.2f" % summary["floor_ratio"],
            "-" if wait is None else "%.0f ms" % wait), flush=True)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
