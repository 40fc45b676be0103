"""Link round trip over a pty: vigil's transport layer against raw pyserial, side by side.

    python bench/transport.py [--rounds N]

An echo peer in a thread reads frames from the pty's master with raw os.read/os.write and
sends each one straight back. The host side sends a 40-byte HEARTBEAT-sized frame and waits
for its echo, either through `open_transport("serial://PTY")` (the base class: delimiter
splitting, timeouts, taps) or through a bare pyserial `Serial` on the same pty (write, then
read until the 0x00). Runs interleave (A, B, A, B...) so the machine's load hits both alike.
Prints the medians and their ratio; the last line is one JSON object. Target: ratio <= 1.5.
"""
import argparse
import json
import os
import select
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import serial  # noqa: E402

from host.transport import open_transport  # noqa: E402
from protocol import codec  # noqa: E402


def echo_peer(master_fd, stop):
    buf = b""
    while not stop.is_set():
        readable, _, _ = select.select([master_fd], [], [], 0.1)
        if not readable:
            continue
        try:
            buf += os.read(master_fd, 65536)
        except OSError:
            return
        while b"\x00" in buf:
            frame, buf = buf.split(b"\x00", 1)
            os.write(master_fd, frame + b"\x00")


def frame():
    sender = codec.Sender(1004, 0, bytes(16))
    return sender.seal("HEARTBEAT", dict(battery_mv=3900, battery_pct=80, charging=0,
                                         link_quality=90, queue_depth=0, uptime_s=60, status=0,
                                         mode=1, interval_s=900))


def vigil_round(link, wire):
    start = time.perf_counter_ns()
    link.send(wire)
    got = link.recv(timeout_ms=2000)
    elapsed = time.perf_counter_ns() - start
    assert got == wire, got
    return elapsed


def raw_round(port, wire):
    start = time.perf_counter_ns()
    port.write(wire)
    got = port.read_until(b"\x00")
    elapsed = time.perf_counter_ns() - start
    assert got == wire, got
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args(argv)
    master, slave = os.openpty()
    import tty
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop = threading.Event()
    peer = threading.Thread(target=echo_peer, args=(master, stop), daemon=True)
    peer.start()
    wire = frame()
    link = open_transport("serial://" + path, timeout_ms=2000)
    port = serial.Serial(path, timeout=2)
    for _ in range(100):  # warm up both paths
        vigil_round(link, wire)
        raw_round(port, wire)
    vigil_ns, raw_ns = [], []
    for _ in range(args.rounds):
        vigil_ns.append(vigil_round(link, wire))
        raw_ns.append(raw_round(port, wire))
    stop.set()
    link.close()
    port.close()
    peer.join(1)
    os.close(master)
    os.close(slave)
    vigil_us = statistics.median(vigil_ns) / 1000
    raw_us = statistics.median(raw_ns) / 1000
    ratio = vigil_us / raw_us
    print("frame: %d bytes, %d round trips each, interleaved, same pty" % (len(wire), args.rounds))
    print("vigil transport (serial://): median %.1f us" % vigil_us)
    print("raw pyserial:                median %.1f us" % raw_us)
    print("ratio: %.2f (target <= 1.5)" % ratio)
    print(json.dumps({"frame_bytes": len(wire), "rounds": args.rounds,
                      "vigil_median_us": round(vigil_us, 1), "raw_median_us": round(raw_us, 1),
                      "ratio": round(ratio, 3), "target_ratio": 1.5, "ok": ratio <= 1.5}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
