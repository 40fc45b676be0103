"""`vigil report RUN -o report.html`: the session report of a `vigil emulate --trace` file."""
import argparse
import sys

from . import ReportError, write_report


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil report", description=(
        "Write one self-contained HTML file (map, timeline, power, latencies, summary) for "
        "a run: a `vigil emulate --trace` JSONL file."))
    parser.add_argument("run", metavar="RUN", help="a --trace JSONL file")
    parser.add_argument("-o", "--output", metavar="FILE.html", default="report.html",
                        help="where to write the report (default report.html)")
    parser.add_argument("--tiles", metavar="URL", help=(
        "draw online map tiles under the tracks, e.g. https://tile.example/{z}/{x}/{y}.png "
        "(off by default: the report fetches nothing)"))
    args = parser.parse_args(argv)
    if args.run.endswith((".pcapng", ".pcap")):
        print("vigil report: %s: pcapng recordings are not supported yet; give a --trace "
              "JSONL file" % args.run, file=sys.stderr)
        return 2
    try:
        write_report(args.run, args.output, tiles=args.tiles)
    except ReportError as e:
        print("vigil report: %s" % e, file=sys.stderr)
        return 2
    print("vigil report: wrote %s" % args.output, file=sys.stderr)
    return 0
