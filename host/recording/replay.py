"""`vigil replay`: send a recorded session into a transport, or into the emulated firmware.

    vigil replay FILE.pcapng --to tcp://host:port [--speed 1|N|max] [--direction up|down]
                 [--record OUT.pcapng]
    vigil replay FILE.pcapng... --to emu:// --check    # golden sessions: exit 1 on a difference
    vigil replay FILE.pcapng... --to emu:// --update   # re-record them from their scenario

Frames are scheduled against one absolute clock (start + recorded offset / speed), never by
sleeping between frames, so a long replay does not drift: a late frame makes no later frame
late. The scheduling error (actual send time minus the scheduled time) is reported as
p50/p99 at the end. Replies from the peer are read and counted while waiting, so a peer is
never blocked on a full socket. `--realtime` replays at real-time priority, which a busy
machine needs for a p99 within 2 ms (bench/recording.py).
"""
import argparse
import gc
import math
import os
import sys
import time

DEFAULT_DIRECTION = "up"  # an integrator's back end receives what devices sent
# Sleep until this close to a frame's time, then spin: a sleep overshoots by about 0.1 ms
# on an idle machine. No longer: at a frame a millisecond a longer spin keeps the process
# always busy, and the kernel's fair scheduler then takes the CPU from it for milliseconds.
SPIN_S = 0.0003
# While replaying, another thread (a tap, a transport's own thread) holding the GIL must
# hand it over within this, not CPython's default 5 ms: that alone exceeds the 2 ms target.
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


def replay(frames, transport, speed, progress=None, clock=time.perf_counter, sleep=None,
           realtime=False):
    """Send [(t_ns, wire)] on `transport` on schedule; returns the Scheduler's report plus
    `received` (frames the peer sent back) and `realtime` (whether it ran at real-time
    priority: asked for and permitted).

    The wait before each frame is spent reading the peer's frames (recv with the time left
    as its timeout), on this thread: a second reader thread would have to take the GIL
    from the sender, and on a busy machine a thread holding it can be descheduled for
    milliseconds. `sleep` replaces that wait (tests with a fake clock)."""
    received = [0]
    peer = [True]

    def wait_reading(seconds):
        if peer[0]:
            try:
                if transport.recv(timeout_ms=seconds * 1000) is not None:
                    received[0] += 1
                return
            except OSError:  # the peer has gone (or cannot be read): only wait from now on
                peer[0] = False
        time.sleep(seconds)

    scheduler = Scheduler(speed, clock, sleep or wait_reading)
    at_max = math.isinf(speed)
    switch_interval_s = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval_s, SWITCH_INTERVAL_S))
    restore_policy = _realtime() if realtime else None
    # No garbage collection while on the clock: a full collection of a big process takes
    # tens of milliseconds, and would land on whichever frame's allocation triggered it.
    # What exists now is frozen (never scanned again); the replay itself makes no cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        for i, (t_ns, wire) in enumerate(frames, 1):
            due = scheduler.wait(t_ns)
            transport.send(wire)
            scheduler.sent(due)
            if at_max and sleep is None:
                wait_reading(0)  # never waits, so read what came back after each frame
            if progress and (i % 256 == 0 or i == len(frames)):
                progress(i, len(frames))
    finally:
        sys.setswitchinterval(switch_interval_s)
        if restore_policy is not None:
            restore_policy()
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    if at_max:
        scheduler.errors_s = []  # nothing was scheduled
    result = scheduler.report()
    result["sent"] = len(frames)
    result["received"] = received[0]
    result["realtime"] = restore_policy is not None
    return result


REALTIME_PRIORITY = 10  # SCHED_FIFO, low among real-time tasks (kernel threads use 50+)


def _realtime():
    """Run this thread at real-time priority (SCHED_FIFO) while replaying: it then runs as
    soon as its sleep ends, whatever else the machine is doing (it sleeps most of the time,
    so it takes little from anyone). Returns the function that restores the old policy, or
    None if not permitted (it needs root or CAP_SYS_NICE; Linux only), after saying so."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (AttributeError, OSError) as e:
        print("vigil replay: --realtime: not permitted here (%s); replaying at normal "
              "priority" % (getattr(e, "strerror", None) or e), file=sys.stderr)
        return None
    return lambda: os.sched_setscheduler(0, policy, param)


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
    parser.add_argument("--realtime", action="store_true", help=(
        "replay at real-time priority (SCHED_FIFO; needs root or CAP_SYS_NICE): on a busy "
        "machine, the way to keep the scheduling error within a few milliseconds"))
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
        result = replay(frames, transport, args.speed, _progress("to " + args.to),
                        realtime=args.realtime)
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
