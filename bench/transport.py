"""Link round trips: over a pty (vigil's transport layer against raw pyserial), or over BLE.

    python bench/transport.py [--rounds N]               serial, target ratio <= 1.5
    python bench/transport.py --link ble [--rounds N]    BLE on bumble: median and p99

Serial:
An echo peer in a thread reads frames from the pty's master with raw os.read/os.write and
sends each one straight back. The host side sends a 40-byte HEARTBEAT-sized frame and waits
for its echo, either through `open_transport("serial://PTY")` (the base class: delimiter
splitting, timeouts, taps) or through a bare pyserial `Serial` on the same pty (write, then
read until the 0x00). Runs interleave (A, B, A, B...) so the machine's load hits both alike.
Prints the medians and their ratio. Target: ratio <= 1.5.

BLE: a frame written by the host (bleak's API on the bumble backend) to the unchanged firmware
driver (firmware/ble.py) on the emulated `bluetooth`, echoed back as an indication. In virtual
time bumble's LocalLink delivers a PDU at once, so the virtual round trip is the firmware's
polling (10 ms sleeps here) plus nothing for the radio; a real link adds one to two connection
intervals each way (45 ms on the emulated phone, 7.5-50 ms on real phones). The wall figure is
what the emulator costs per round trip on this machine.

Either way the last line is one JSON object.
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

REPO = Path(__file__).resolve().parent.parent
KEY = b"k" * 16


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


ECHO = '''
import bluetooth, time
from firmware.ble import BleLink
from protocol import codec
ring = codec.Keyring(); ring.add(7, 0, %r)
receiver = codec.Receiver(ring, downlink=True)
link = BleLink(bluetooth.BLE(), bluetooth.UUID, time.ticks_ms, max_queued=64)
sender = codec.Sender(7, 0, %r)
while True:
    for data in link.poll():
        for f in receiver.feed(data):
            if hasattr(f, "fields"):
                link.write(sender.seal("EVENT", {"kind": 3, "time_ms": f.counter, "value": 1}))
    time.sleep_ms(%d)
'''


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ble_main(args):
    from host.deploy import device_files
    from host.emulator import World
    from host.emulator.radio import radio_of
    from host.transport.ble import BumbleBackends

    files = device_files(REPO)
    files["/main.py"] = (ECHO % (KEY, KEY, args.poll_ms)).encode()
    with World(seed=1) as world:
        dev = world.add_device(7, files=files)
        world.run_until(1000)
        radio = radio_of(world)
        t = open_transport("ble://" + dev.ble.identity_address, timeout_ms=2000, runner=radio,
                           backend=BumbleBackends, bumble_device=radio.add_central(),
                           irks=[(dev.ble.irk, dev.ble.identity_address)])
        sender = codec.Sender(7, 0, KEY, downlink=True)
        ring = codec.Keyring()
        ring.add(7, 0, KEY)
        rx = codec.Receiver(ring)
        virtual_ms, wall_us = [], []
        for i in range(args.rounds):
            wire = sender.seal("COMMAND", {"command": 2, "arg": i % 200})
            v0, w0 = world.now_us, time.perf_counter()
            t.send(wire)
            got = []
            while not got:
                frame = t.recv(timeout_ms=2000)
                if frame is None:
                    raise SystemExit("round trip %d: no echo within 2 s" % i)
                got = [f for f in rx.feed(frame) if hasattr(f, "fields")]
            wall_us.append((time.perf_counter() - w0) * 1e6)
            virtual_ms.append((world.now_us - v0) / 1000)
        t.close()
    figures = {
        "link": "ble", "rounds": args.rounds, "firmware_poll_ms": args.poll_ms,
        "virtual_rtt_ms_median": round(statistics.median(virtual_ms), 3),
        "virtual_rtt_ms_p99": round(pct(virtual_ms, 99), 3),
        "wall_rtt_us_median": round(statistics.median(wall_us), 1),
        "wall_rtt_us_p99": round(pct(wall_us, 99), 1),
        "mtu": 247,
    }
    print("BLE round trip over bumble, %d frames (COMMAND down, EVENT up, indications):" % args.rounds)
    print("  virtual: median %.1f ms, p99 %.1f ms (firmware polls every %d ms; bumble adds 0)"
          % (figures["virtual_rtt_ms_median"], figures["virtual_rtt_ms_p99"], args.poll_ms))
    print("  wall:    median %.0f us, p99 %.0f us per round trip on this machine"
          % (figures["wall_rtt_us_median"], figures["wall_rtt_us_p99"]))
    print(json.dumps(figures, sort_keys=True))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link", choices=("serial", "ble"), default="serial")
    parser.add_argument("--rounds", type=int, default=None,
                        help="round trips (default 2000 serial, 300 BLE)")
    parser.add_argument("--poll-ms", type=int, default=10, help="BLE: the firmware's poll")
    args = parser.parse_args(argv)
    if args.link == "ble":
        args.rounds = args.rounds or 300
        return ble_main(args)
    args.rounds = args.rounds or 2000
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
    print(json.dumps({"link": "serial", "frame_bytes": len(wire), "rounds": args.rounds,
                      "vigil_median_us": round(vigil_us, 1), "raw_median_us": round(raw_us, 1),
                      "ratio": round(ratio, 3), "target_ratio": 1.5, "ok": ratio <= 1.5}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
