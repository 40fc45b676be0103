"""`vigil centre`: the monitoring-centre emulator, standalone on real time.

    vigil centre --listen tcp://127.0.0.1:7000 --keys keys.json [--db evidence.sqlite]

Each accepted connection is one link (one or more devices behind it). Prints one line per
event; Ctrl-C stops it cleanly. The key file format is in host/keys.py.
"""
import argparse
import datetime
import queue
import sys
import threading
import time

from host.centre.centre import Centre, CentreConfig
from host.centre.proximity import ProximityConfig
from host.cliutil import OneLineParser, finite, whole
from host.keys import KeyFileError, load_keys
from host.transport import BadUrl, TransportClosed, listen


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
    return p


class Server:
    """Runs a Centre over listeners: one reader thread per link and per listener feed one
    queue; only the main thread touches the Centre."""

    def __init__(self, centre, listeners, out=sys.stdout):
        self.centre = centre
        self.listeners = listeners
        self.out = out
        self.links = {}
        self._queue = queue.Queue()
        self._next_link = 1
        self._lock = threading.Lock()

    def print(self, text):
        print(text, file=self.out, flush=True)

    def start(self):
        for listener in self.listeners:
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                transport = listener.accept(timeout_ms=None)
            except (OSError, ValueError):
                return
            if transport is None:
                return
            with self._lock:
                link_id = "link%d" % self._next_link
                self._next_link += 1
            self._queue.put(("open", link_id, transport))
            threading.Thread(target=self._read, args=(link_id, transport), daemon=True).start()

    def _read(self, link_id, transport):
        while True:
            try:
                frame = transport.recv(timeout_ms=None)
            except OSError as e:
                self._queue.put(("closed", link_id, e))
                return
            self._queue.put(("data", link_id, frame))

    def step(self, max_wait_s=0.5):
        """Wait for one input or the centre's next deadline, and handle it."""
        deadline = self.centre.next_deadline_ms()
        wait_s = max_wait_s if deadline is None else min(
            max_wait_s, max(0.0, (deadline - utc_ms()) / 1000))
        try:
            kind, link_id, payload = self._queue.get(timeout=wait_s)
        except queue.Empty:
            kind = None
        now_ms = utc_ms()
        if kind == "open":
            self.links[link_id] = payload
            self.print("%s link_open %s %s" % (format_time(now_ms), link_id, payload.url))
        elif kind == "closed":
            self.links.pop(link_id, None)
            self.print("%s link_closed %s" % (format_time(now_ms), link_id))
        elif kind == "data":
            for wire in self.centre.receive(link_id, payload, now_ms):
                self._send(link_id, wire)
        for target, wire in self.centre.tick(now_ms):
            self._send(target, wire)

    def _send(self, link_id, wire):
        transport = self.links.get(link_id)
        if transport is None:
            return  # the link went away; the centre retries when the device is heard again
        try:
            transport.send(wire)
        except (TransportClosed, OSError):
            self.links.pop(link_id, None)

    def close(self):
        for listener in self.listeners:
            listener.close()
        for transport in list(self.links.values()):
            transport.close()
        self.centre.close()


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

    listeners = []
    try:
        centre = Centre(keys, config, evidence=args.db, on_event=on_event)
        for url in args.listen:
            listener = listen(url)
            listeners.append(listener)
            peer = getattr(getattr(listener, "transport", None), "peer_path", None)
            print("listening on %s%s" % (listener.url, " (peer %s)" % peer if peer else ""),
                  flush=True)
    except (BadUrl, OSError) as e:
        for listener in listeners:
            listener.close()
        print("vigil centre: %s" % e, file=sys.stderr)
        return 2
    server = Server(centre, listeners)
    server.start()
    try:
        while True:
            server.step()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("stopped: %d frames up, %d down, refused %s" % (
        centre.frames_up, centre.frames_down, centre.refused or "none"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
