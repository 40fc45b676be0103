"""`vigil replay`: send a recorded session into a transport, or into the emulated firmware.

    vigil replay FILE.pcapng --to tcp://host:port [--speed 1|N|max] [--direction up|down]
                 [--record OUT.pcapng]
    vigil replay FILE.pcapng... --to emu:// --check    # golden sessions: exit 1 on a difference
    vigil replay FILE.pcapng... --to emu:// --update   # re-record them from their scenario

Frames are scheduled against one absolute clock (start + recorded offset / speed), never by
sleeping between frames, so a long replay does not drift: a late frame makes no later frame
late. The scheduling error (actual send time minus the scheduled time) is reported as
p50/p99 at the end. Replies from the peer are read and counted, so a peer is never blocked
on a full socket.
"""
import argparse
import math
import sys
import threading
import time

DEFAULT_DIRECTION = "up"  # an integrator's back end receives what devices sent
SPIN_S = 0.0015  # sleep until this close to a frame's time, then spin (sleep overshoots)
# While replaying, another thread (the reply drain) holding the GIL must hand it over within
# this, not CPython's default 5 ms: that default alone would exceed the 2 ms error target.
SWITCH_INTERVAL_S = 0.0002


def parse_speed(text):
    if text == "max":
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number > 0 or max, got %r" % text) \
            from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("expected a number > 0 or max, got %r" % text)
    return value


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


class Scheduler:
    """Absolute-clock pacing. `clock()` returns seconds (monotonic); `sleep(s)` waits."""

    def __init__(self, speed, clock=time.perf_counter, sleep=time.sleep):
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.errors_s = []
        self._start = None
        self._first_ns = None

    def wait(self, t_ns):
        """Wait until the frame recorded at t_ns is due; returns the scheduled time."""
        if self._start is None:
            self._start = self.clock()
            self._first_ns = t_ns
        if math.isinf(self.speed):
            return self.clock()
        due = self._start + (t_ns - self._first_ns) / 1e9 / self.speed
        while True:
            left = due - self.clock()
            if left <= 0:
                return due
            if left > SPIN_S:
                self.sleep(left - SPIN_S)

    def sent(self, due):
        self.errors_s.append(self.clock() - due)

    def report(self):
        errors_ms = [e * 1000 for e in self.errors_s]
        return {"frames": len(errors_ms), "p50_ms": percentile(errors_ms, 0.50),
                "p99_ms": percentile(errors_ms, 0.99),
                "max_ms": max(errors_ms) if errors_ms else None}


def frames_to_send(packets, direction):
    return [(p.time_ns, p.data) for p in packets
            if not p.interface.is_stimuli and p.direction == direction]


def replay(frames, transport, speed, progress=None, clock=time.perf_counter,
           sleep=time.sleep):
    """Send [(t_ns, wire)] on `transport` on schedule; returns the Scheduler's report plus
    `received` (frames the peer sent back)."""
    received = [0]
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                if transport.recv(timeout_ms=50) is not None:
                    received[0] += 1
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    switch_interval_s = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval_s, SWITCH_INTERVAL_S))
    reader.start()
    scheduler = Scheduler(speed, clock, sleep)
    try:
        for i, (t_ns, wire) in enumerate(frames, 1):
            due = scheduler.wait(t_ns)
            transport.send(wire)
            scheduler.sent(due)
            if progress and (i % 256 == 0 or i == len(frames)):
                progress(i, len(frames))
    finally:
        stop.set()
        sys.setswitchinterval(switch_interval_s)
    if math.isinf(speed):
        scheduler.errors_s = []  # nothing was scheduled
    result = scheduler.report()
    result["sent"] = len(frames)
    stop.wait(0)
    reader.join(0.2)
    result["received"] = received[0]
    return result


def _progress(total_label):
    if not sys.stderr.isatty():
        return None

    def show(done, total):
        width = 30
        filled = done * width // max(total, 1)
        sys.stderr.write("\r[%s%s] %d/%d frames %s" % ("#" * filled, "." * (width - filled),
                                                        done, total, total_label))
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def _fmt_ms(value):
    return "-" if value is None else "%.3f ms" % value


def main(argv=None):
    from host.recording import RecordingError, read_all
    from host.recording import emu as emu_sessions
    from host.transport import BadUrl, open_transport

    parser = argparse.ArgumentParser(prog="vigil replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE.pcapng")
    parser.add_argument("--to", metavar="URL", default="emu://",
                        help="where to send: a transport URL, or emu:// with --check/--update")
    parser.add_argument("--speed", type=parse_speed, default=1.0,
                        help="1 = as recorded, N = N times faster, max = no waiting")
    parser.add_argument("--direction", choices=("up", "down"), default=DEFAULT_DIRECTION,
                        help="which frames to send: up (device -> host, default) or down")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="emu:// only: replay into the emulated firmware and diff its uplinks")
    mode.add_argument("--update", action="store_true",
                      help="emu:// only: re-record each session from its scenario and seed")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--record", metavar="FILE.pcapng",
                        help="record the replay itself: what was sent and what came back")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    emu = args.to.lower().startswith("emu://")
    if (args.check or args.update) and not emu:
        print("vigil replay: --check and --update need --to emu://", file=sys.stderr)
        return 2
    if emu and not (args.check or args.update):
        print("vigil replay: emu:// replays need --check (diff against the recording) or "
              "--update (re-record)", file=sys.stderr)
        return 2
    if emu:
        return _golden(args, emu_sessions)
    if len(args.files) != 1:
        print("vigil replay: one FILE at a time to %s" % args.to, file=sys.stderr)
        return 2
    try:
        reader, packets = read_all(args.files[0])
        transport = open_transport(args.to)
    except (RecordingError, BadUrl, OSError) as e:
        print("vigil replay: %s" % e, file=sys.stderr)
        return 2
    if reader.error:
        print("vigil replay: %s: %s (replaying the packets before it)"
              % (args.files[0], reader.error), file=sys.stderr)
    frames = frames_to_send(packets, args.direction)
    recorder = None
    try:
        if args.record:
            from host.recording.tap import Recorder

            recorder = Recorder(args.record, meta={"transport": args.to,
                                                   "replay_of": args.files[0]})
            recorder.attach(transport, sent=args.direction)  # this side plays the sender
        result = replay(frames, transport, args.speed, _progress("to " + args.to))
    except OSError as e:
        print("vigil replay: %s: %s" % (args.record if recorder is None and args.record
                                        else args.to, e.strerror or e), file=sys.stderr)
        return 2
    finally:
        transport.close()
        if recorder is not None:
            recorder.close()
    if args.json:
        import json
        print(json.dumps(result, sort_keys=True))
    else:
        print("replayed %d %s frames to %s at %s; %d received back; scheduling error p50 %s, "
              "p99 %s, max %s" % (result["sent"], args.direction, args.to,
                                  "max speed" if math.isinf(args.speed) else
                                  "%gx" % args.speed, result["received"],
                                  _fmt_ms(result["p50_ms"]), _fmt_ms(result["p99_ms"]),
                                  _fmt_ms(result["max_ms"])))
    return 0


def _golden(args, emu_sessions):
    failed = False
    for path in args.files:
        try:
            if args.update:
                summary = emu_sessions.update(path)
                print("%s: re-recorded (%s, seed %d, %d frames up, %d down)" % (
                    path, summary["scenario"], summary["seed"], summary["frames_up"],
                    summary["frames_down"]))
                continue
            result = emu_sessions.check(path)
        except (emu_sessions.RecordingError, OSError) as e:
            print("vigil replay: %s" % e, file=sys.stderr)
            return 2
        if result.differences:
            failed = True
            print("%s: DIFFERENT: %d differences (%d frames recorded, %d produced)" % (
                path, len(result.differences), len(result.recorded), len(result.produced)))
            for line in result.differences[:40]:
                print("  " + line)
        else:
            print("%s: same (%d device frames, %.2f s)" % (path, len(result.recorded),
                                                           result.wall_s))
    return 1 if failed else 0
