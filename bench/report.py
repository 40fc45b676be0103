"""Session report of a 7-device-day trace: build time and file size (issue 14 targets:
<= 5 s, <= 3 MB).

Seven devices for 24 h each: four paired with an offender who walks in and out again, three
commuting by bike, two panic presses. The emulator run that makes the trace is timed apart;
the target is the report alone (`vigil report RUN -o report.html`), from the --trace file and
from the same run's recording (pcapng, with its keys).

    python bench/report.py [--keep DIR] [--quick]

--quick runs the same seven devices for one hour only (a smoke test of the bench).

Last line: one JSON object.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host import emulate  # noqa: E402
from host import scenario as scenarios  # noqa: E402
from host.recording import emu  # noqa: E402
from host.report import write_report  # noqa: E402
from host.report.recording import records_of_recording  # noqa: E402

HOME = (52.0907, 5.1214)


def scenario_toml(duration_s=86400):
    lines = ['[scenario]', 'name = "bench-report-7-device-days"',
             'description = "Seven devices for a day: four offender approaches, three commutes"',
             'duration_s = %d' % duration_s, 'seed = 14', '']
    for i in range(7):
        lat = HOME[0] + 0.01 * i
        lon = HOME[1]
        lines += ['[[device]]', 'id = %d' % (2001 + i), 'location = [%.4f, %.4f]' % (lat, lon)]
        if i < 4:
            lines.append('offender = %d' % (9001 + i))
        else:
            lines.append(
                'route = { start_s = %d, speed_kmh = 15.0, waypoints = [[%.4f, %.4f], '
                '[%.4f, %.4f, 28800], [%.4f, %.4f]] }' % (
                    1800 + 600 * i, lat, lon, lat + 0.02, lon - 0.1, lat, lon))
        if i in (1, 5):
            lines.append('button = [{ at_s = %d, hold_ms = 2500 }]' % (20000 + 3000 * i))
        lines.append('')
    for i in range(4):
        lat = HOME[0] + 0.01 * i
        lines += ['[[offender]]', 'id = %d' % (9001 + i),
                  'location = [%.4f, %.4f]' % (lat + 0.03, HOME[1]), 'report_s = 30',
                  'route = { start_s = %d, speed_kmh = 5.0, waypoints = [[%.4f, %.4f], '
                  '[%.4f, %.4f, 1200], [%.4f, %.4f]] }' % (
                      14400 * (i + 1), lat + 0.03, HOME[1], lat + 0.004, HOME[1],
                      lat + 0.03, HOME[1] + 0.01), '']
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="keep the trace and the report here")
    parser.add_argument("--quick", action="store_true", help="one hour instead of a day")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.keep or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        toml = out_dir / "bench-report.toml"
        toml.write_text(scenario_toml(3600 if args.quick else 86400))
        trace = out_dir / "bench-report.jsonl"
        record = out_dir / "bench-report.pcapng"
        started = time.perf_counter()
        sc = scenarios.load(str(toml))
        summary, _timeline = emulate.run(sc, trace_path=str(trace), record_path=str(record))
        emulate_s = time.perf_counter() - started
        keys = emu.session_keys(sc, sc["scenario"]["seed"])
        html = out_dir / "bench-report.html"
        started, cpu_started = time.perf_counter(), time.process_time()
        write_report(str(trace), str(html))
        report_s = time.perf_counter() - started
        # CPU time as well: on a shared machine the wall time also counts other people's work.
        report_cpu_s = time.process_time() - cpu_started
        # The same run's recording: `vigil report RUN.pcapng --key-file F`.
        html_rec = out_dir / "bench-report-pcapng.html"
        started, cpu_started = time.perf_counter(), time.process_time()
        write_report(records_of_recording(str(record), keys), str(html_rec))
        pcapng_s = time.perf_counter() - started
        pcapng_cpu_s = time.process_time() - cpu_started
        result = {
            "device_days": summary["devices"] * summary["virtual_s"] / 86400,
            "trace_bytes": os.path.getsize(trace),
            "report_bytes": os.path.getsize(html),
            "report_s": round(report_s, 3),
            "report_cpu_s": round(report_cpu_s, 3),
            "emulate_s": round(emulate_s, 3),
            "recording_bytes": os.path.getsize(record),
            "pcapng_report_bytes": os.path.getsize(html_rec),
            "pcapng_report_s": round(pcapng_s, 3),
            "pcapng_report_cpu_s": round(pcapng_cpu_s, 3),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "quick": args.quick,
            "target_report_s": 5.0,
            "target_report_bytes": 3 * 1024 * 1024,
        }
    print("%.2f-device-day trace: %.1f MB, emulated in %.1f s" % (
        result["device_days"], result["trace_bytes"] / 1e6, result["emulate_s"]))
    print("report: %.2f MB in %.2f s wall, %.2f s CPU (targets: <= 3 MB, <= 5 s)" % (
        result["report_bytes"] / 1e6, result["report_s"], result["report_cpu_s"]))
    print("report from the recording (%.1f MB pcapng, with keys): %.2f MB in %.2f s wall, "
          "%.2f s CPU" % (result["recording_bytes"] / 1e6, result["pcapng_report_bytes"] / 1e6,
                          result["pcapng_report_s"], result["pcapng_report_cpu_s"]))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
