"""`vigil centre`: the monitoring-centre emulator, standalone on real time.

    vigil centre --listen tcp://127.0.0.1:7000 --keys keys.json [--db evidence.sqlite]

Each accepted connection is one link (one or more devices behind it), served on one asyncio
loop (host/centre/server.py). Prints one line per event; Ctrl-C stops it cleanly. The key file format is in host/keys.py.
"""
import argparse
import asyncio
import datetime
import signal
import sys
import time

from host.centre.centre import Centre, CentreConfig
from host.centre.proximity import ProximityConfig
from host.centre.server import CentreServer
from host.cliutil import OneLineParser, finite, whole
from host.keys import KeyFileError, load_keys
from host.transport import BadUrl, listen


def utc_ms():
    return time.time_ns() // 1_000_000


def format_time(ms):
    stamp = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def _pair(text):
    victim, sep, offender = text.partition(":")
    if not sep or not victim.isdigit() or not offender.isdigit():
        raise argparse.ArgumentTypeError("expected VICTIM_ID:OFFENDER_ID, got %r" % text)
    return int(victim), int(offender)


def parser():
    p = OneLineParser(prog="vigil centre", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", action="append", required=True, metavar="URL",
                   help="where devices connect: tcp://HOST:PORT (PORT 0 picks one), pty://, "
                        "serial:///dev/... (repeatable)")
    p.add_argument("--keys", required=True, metavar="FILE",
                   help='JSON list of {"device_id", "key_id", "key": 32 hex digits}')
    p.add_argument("--db", default=":memory:", metavar="PATH",
                   help="SQLite evidence log (append-only; default: in memory)")
    p.add_argument("--operator-delay-s", type=finite(0, 86400), default=5.0,
                   help="the operator acks each alarm this long after it arrives (default 5)")
    p.add_argument("--heartbeat-s", type=whole(1, 86400), default=900,
                   help="expected heartbeat interval; 2 missed = NOT_REPORTING (default 900)")
    p.add_argument("--pair", type=_pair, action="append", default=[], metavar="VICTIM:OFFENDER",
                   help="pair a victim device with an offender's ankle tag (repeatable)")
    p.add_argument("--warning-m", type=finite(high=1e6, above=0), default=1000.0,
                   help="proximity warning radius (default 1000)")
    p.add_argument("--alarm-m", type=finite(high=1e6, above=0), default=500.0,
                   help="proximity alarm radius, below --warning-m (default 500)")
    p.add_argument("--prealert-m", type=finite(0, 1e7), default=None,
                   help="keep the victim's device tracking while the offender is this close "
                        "(default 3 x --warning-m; 0 = never)")
    p.add_argument("--record", metavar="FILE.pcapng",
                   help="record every link's frames both ways (pcapng, host/recording)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.alarm_m >= args.warning_m:
        print("vigil centre: --alarm-m %g must be below --warning-m %g" % (
            args.alarm_m, args.warning_m), file=sys.stderr)
        return 2
    try:
        keys = load_keys(args.keys)
    except KeyFileError as e:
        print("vigil centre: %s" % e, file=sys.stderr)
        return 2
    try:
        proximity = ProximityConfig(warning_m=args.warning_m, alarm_m=args.alarm_m,
                                    prealert_m=args.prealert_m)
    except ValueError as e:
        print("vigil centre: %s" % e, file=sys.stderr)
        return 2
    config = CentreConfig(
        heartbeat_s=args.heartbeat_s,
        operator_ack_delay_ms=int(args.operator_delay_s * 1000),
        pairs=dict(args.pair),
        proximity=proximity)

    def on_event(event):
        print(format_time(event.time_ms) + " " + event.line().split(" ", 1)[1], flush=True)

    try:
        centre = Centre(keys, config, evidence=args.db, on_event=on_event)
    except OSError as e:
        print("vigil centre: %s" % e, file=sys.stderr)
        return 2
    recorder = None
    if args.record:
        from host.recording.tap import Recorder

        try:
            recorder = Recorder(args.record, meta={"transport": ",".join(args.listen)})
        except OSError as e:
            centre.close()
            print("vigil centre: --record %s: %s" % (args.record, e.strerror or e),
                  file=sys.stderr)
            return 2
    try:
        code = asyncio.run(_serve(centre, args.listen, recorder))
    finally:
        centre.close()
        if recorder is not None:
            recorder.close()
    if code:
        return code
    print("stopped: %d frames up, %d down, refused %s" % (
        centre.frames_up, centre.frames_down, centre.refused or "none"), flush=True)
    return 0


async def _serve(centre, urls, recorder=None):
    """Listen on every URL (TCP natively on the loop, others through host.transport), then
    serve until Ctrl-C or SIGTERM."""
    def on_link(what, link_id, peer):
        now = format_time(utc_ms())
        print("%s link_%s %s%s" % (now, what, link_id, " " + peer if peer else ""), flush=True)

    server_class = CentreServer
    if recorder is not None:
        from host.recording.tap import recording_centre_server

        server_class = recording_centre_server(recorder)
    server = server_class(centre, clock=utc_ms, on_link=on_link)
    try:
        for url in urls:
            if url.startswith("tcp://"):
                print("listening on %s" % await server.start_tcp(url), flush=True)
                continue
            listener = listen(url)
            peer = getattr(getattr(listener, "transport", None), "peer_path", None)
            server.add_listener(listener)
            print("listening on %s%s" % (listener.url, " (peer %s)" % peer if peer else ""),
                  flush=True)
    except (BadUrl, OSError) as e:
        await server.close()
        print("vigil centre: %s" % e, file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.run(stop)
    finally:
        await server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
