"""BLE round trip on bumble: a frame written by the host (bleak API on the bumble backend)
to the unchanged firmware driver (firmware/ble.py) on the emulated `bluetooth`, echoed back
as an indication. Prints figures; the last line is one JSON object.

    python bench/ble.py [--n 300]

Virtual time: bumble's LocalLink delivers a PDU at once, so the virtual round trip is the
firmware's polling (10 ms sleeps here) plus nothing for the radio; a real link adds one to
two connection intervals each way (45 ms on the emulated phone, 7.5-50 ms on real phones).
The wall figure is what the emulator costs per round trip on this machine.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.deploy import device_files  # noqa: E402
from host.emulator import World  # noqa: E402
from host.emulator.radio import radio_of  # noqa: E402
from host.transport import open_transport  # noqa: E402
from host.transport.ble import BumbleBackends  # noqa: E402
from protocol import codec  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
KEY = b"k" * 16
ECHO = '''
import bluetooth, time
from firmware.ble import BleLink
from protocol import codec
ring = codec.Keyring(); ring.add(7, 0, %r)
link = BleLink(bluetooth.BLE(), bluetooth.UUID, codec.Receiver(ring, downlink=True),
               max_queued=64)
sender = codec.Sender(7, 0, %r)
while True:
    for f in link.poll():
        link.write(sender.seal("EVENT", {"kind": 3, "time_ms": f.counter, "value": 1}))
    time.sleep_ms(%d)
'''


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--poll-ms", type=int, default=10)
    args = ap.parse_args(argv)
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
        for i in range(args.n):
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
        "n": args.n, "firmware_poll_ms": args.poll_ms,
        "virtual_rtt_ms_median": round(statistics.median(virtual_ms), 3),
        "virtual_rtt_ms_p99": round(pct(virtual_ms, 99), 3),
        "wall_rtt_us_median": round(statistics.median(wall_us), 1),
        "wall_rtt_us_p99": round(pct(wall_us, 99), 1),
        "mtu": 247,
    }
    print("BLE round trip over bumble, %d frames (COMMAND down, EVENT up, indications):" % args.n)
    print("  virtual: median %.1f ms, p99 %.1f ms (firmware polls every %d ms; bumble adds 0)"
          % (figures["virtual_rtt_ms_median"], figures["virtual_rtt_ms_p99"], args.poll_ms))
    print("  wall:    median %.0f us, p99 %.0f us per round trip on this machine"
          % (figures["wall_rtt_us_median"], figures["wall_rtt_us_p99"]))
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
