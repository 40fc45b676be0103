"""`vigil report RUN -o report.html`: the session report of a `vigil emulate --trace` file or
of a recording (pcapng; decrypted with `--key-file`, else only its routing headers show)."""
import argparse
import sys

from . import ReportError, write_report


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil report", description=(
        "Write one self-contained HTML file (map, timeline, power, latencies, summary) for "
        "a run: a `vigil emulate --trace` JSONL file or a recording (pcapng)."))
    parser.add_argument("run", metavar="RUN", help="a --trace JSONL file or a .pcapng recording")
    parser.add_argument("-o", "--output", metavar="FILE.html", default="report.html",
                        help="where to write the report (default report.html)")
    parser.add_argument("--key-file", metavar="F", help=(
        "JSON device keys (see host/keys.py) to decrypt a recording; without them a "
        "recording's report shows only who sent how much when"))
    parser.add_argument("--tiles", metavar="URL", help=(
        "draw online map tiles under the tracks, e.g. https://tile.example/{z}/{x}/{y}.png "
        "(off by default: the report fetches nothing)"))
    args = parser.parse_args(argv)
    try:
        source = args.run
        from .recording import is_recording, records_of_recording

        if is_recording(args.run):
            keystore = None
            if args.key_file:
                from host.keys import KeyFileError, load_keys
                try:
                    keystore = load_keys(args.key_file)
                except KeyFileError as e:
                    raise ReportError("--key-file %s" % e) from None
            source = records_of_recording(args.run, keystore)
        elif args.key_file:
            raise ReportError("--key-file is for a recording; %s is not pcapng" % args.run)
        write_report(source, args.output, tiles=args.tiles)
    except ReportError as e:
        print("vigil report: %s" % e, file=sys.stderr)
        return 2
    print("vigil report: wrote %s" % args.output, file=sys.stderr)
    return 0
