"""The rig's end of TEST_INJECT (SPEC 4.6, firmware/inject.py): stimuli for a test build
that has no relay or simulator wired to it, sent down its link as frames sealed with the
test key (key id 0xFF) and the TEST flag.

    injector = TestInjector(dut.link, device_id, test_key, utc_ms=dut.utc_ms)
    drivers = inject_drivers(injector)    # button, gps, battery, power (reset only)

A test key is not a wearer's key: `test_key()` derives the emulated boards' from the seed
(published, like the scenario keys); a bench board's is written by provisioning a test
build. The downlink counter starts at the wall clock's deciseconds since 2026, so a board
that kept its replay window (no reset between two rig sessions) still accepts the next
session's first frame: every TEST_INJECT is replay-checked like any downlink.
"""
import hashlib
import struct
import time

from firmware import inject as fw
from firmware.battery import _OCV
from host.transport import TransportTimeout
from protocol import codec, host_tables
from protocol import host_constants as constants

_EPOCH_2026_S = 1767225600
MAX_WAYPOINTS = (host_tables.MAX_PAYLOAD - 1 - struct.calcsize(fw._ROUTE_HEAD)) // 8


class InjectError(RuntimeError):
    """A TEST_INJECT could not be delivered; one line."""


def test_key(seed, device_id):
    """The emulated boards' test key: from the seed, reproducible, never a real device's."""
    return hashlib.sha256(b"vigil-test-key|%d|%d" % (seed, device_id)).digest()[:16]


def load_rig_key(path, device_id):
    """A bench board's test key from the rig key file `vigil provision --test-key` wrote."""
    import json

    try:
        entries = json.loads(open(path, encoding="utf-8").read())
        for entry in entries:
            if entry.get("device_id") == device_id and entry.get("key_id") == codec.TEST_KEY_ID:
                return bytes.fromhex(entry["key"])
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise InjectError("%s: not a rig key file: %s" % (path, " ".join(str(e).split()))) from None
    raise InjectError("%s: no test key of device %d (vigil provision --test-key)"
                      % (path, device_id))


def test_key_file(device_id, key):
    """/keys/test.key as provisioning writes it (firmware/inject.load_test_key reads it)."""
    from host.keys import device_key_file_bytes
    return device_key_file_bytes(device_id, {codec.TEST_KEY_ID: key})


def battery_mv(pct):
    """The cell voltage the firmware reads as `pct` %: its own OCV table, inverted."""
    pct = max(0.0, min(100.0, float(pct)))
    points = list(zip(_OCV[0::2], _OCV[1::2], strict=True))  # the table is flat: mV, %, ...
    for (mv0, p0), (mv1, p1) in zip(points, points[1:], strict=False):
        if pct <= p1:
            return int(round(mv0 + (pct - p0) * (mv1 - mv0) / (p1 - p0)))
    return points[-1][0]


class TestInjector:
    __test__ = False  # not a pytest class

    def __init__(self, link, device_id, key, utc_ms, counter=None):
        self.link = link
        self.utc_ms = utc_ms
        if counter is None:
            counter = max(1, int(time.time() * 10) - _EPOCH_2026_S * 10)
        self.sender = codec.Sender(device_id, codec.TEST_KEY_ID, key, downlink=True,
                                   counter=counter)
        self.sent = []  # (op, wire)

    def send(self, op, data=b""):
        wire = self.sender.seal("TEST_INJECT", {"op": op, "data": bytes(data)}, host_tables.FLAG_TEST)
        try:
            self.link.send(wire)
        except TransportTimeout:
            raise InjectError("TEST_INJECT op %d: the board never raised LINK_READY" % op) from None
        self.sent.append((op, wire))
        return wire

    def press(self, ms):
        self.send(fw.OP_PRESS, struct.pack(">I", int(ms)))

    def battery(self, pct, charging=False):
        self.send(fw.OP_BATTERY, struct.pack(">HB", battery_mv(pct), 1 if charging else 0))

    def route(self, waypoints, speed_kmh=5.0, sky=True):
        points = list(waypoints)
        if not 1 <= len(points) <= MAX_WAYPOINTS:
            raise InjectError("TEST_INJECT route: 1 to %d waypoints, not %d"
                              % (MAX_WAYPOINTS, len(points)))
        data = struct.pack(fw._ROUTE_HEAD, int(self.utc_ms()), int(round(speed_kmh / 3.6 * 100)),
                           1 if sky else 0)
        for lat, lon in points:
            data += struct.pack(">ii", int(round(lat * 1e7)), int(round(lon * 1e7)))
        self.send(fw.OP_ROUTE, data)

    def reset(self):
        self.send(fw.OP_RESET)

    def clear(self):
        """Back to the board's own ADC, charger pin and GNSS (a new session on a bench)."""
        self.send(fw.OP_CLEAR)


class InjectButton:
    def __init__(self, injector):
        self.injector = injector

    def press(self, ms):
        self.injector.press(ms)


class InjectGps:
    def __init__(self, injector):
        self.injector = injector

    def set_route(self, waypoints, speed_kmh=5.0, sky=True):
        self.injector.route(waypoints, speed_kmh, sky)


class InjectBattery:
    def __init__(self, injector):
        self.injector = injector

    def set_pct(self, pct):
        self.injector.battery(pct)


class InjectPower:
    """reset() only: firmware cannot cut its own supply (a power switch can, power.method =
    gpio); cut() and cut_after_flash_writes() say so in one line."""

    reset_cause = constants.RESET_HARD  # machine.reset() (ports/esp32 modmachine.c: ESP_RST_SW)

    def __init__(self, injector):
        self.injector = injector

    def reset(self):
        self.injector.reset()

    def cut(self):
        raise NotImplementedError("TEST_INJECT cannot cut the power; wire a power switch")

    on = cut

    def cut_after_flash_writes(self, n):
        raise NotImplementedError("TEST_INJECT cannot cut the power; wire a power switch")


def inject_drivers(injector):
    return {"button": InjectButton(injector), "gps": InjectGps(injector),
            "battery": InjectBattery(injector), "power": InjectPower(injector)}
