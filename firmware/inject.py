"""TEST_INJECT (SPEC 4.6, 6.14): the HIL rig's stimuli on a board with no relays, in test
builds only. Production builds never deploy this file, and app.py's `_TEST = const(False)`
compiles every call into it out of the bytecode (`vigil deploy --test-build` sets it True).

    inj = Injector(app, ring, downlinks, device_id)   # adds the test key, test_mode on
    inj.apply(frame, now)       a TEST_INJECT frame: carry out its op (table below)
    inj.plan(mode, sleep_ms, now) -> (mode, sleep_ms)   stay awake for a held press or the
                                next injected fix

The frame was authenticated under the test key (key id 0xFF, /keys/test.key) and passed
the replay window like any downlink, before it got here. Ops (payload after `op`, big-endian):

    1 PRESS    u32 press_ms                     the button reads pressed for press_ms
    2 BATTERY  u16 battery_mv, u8 charging      what the ADC and charger pin now read
    3 ROUTE    i64 utc_ms, u16 speed_cmps, u8 sky, then (i32 lat_e7, i32 lon_e7) * n
                                                the GNSS reports fixes along the route once a
                                                second while powered; sky 0: no fix at all
    4 RESET    (nothing)                        machine.reset(): RAM lost, flash kept
    5 CLEAR    (nothing)                        the real ADC, charger pin and GNSS again

The injected battery and route are kept in /state/inject.bin, so they hold through deep
sleep and resets as a bench's simulators would (CLEAR ends them); a route's time runs on
the RTC, which keeps counting through deep sleep.

A real power cut or a cut mid-write needs a power switch (board power.method = gpio), not
this channel: firmware cannot take its own supply away.
"""
import math
import struct

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import battery as battery_mod
from firmware import persist
from protocol import codec

OP_PRESS = const(1)
OP_BATTERY = const(2)
OP_ROUTE = const(3)
OP_RESET = const(4)
OP_CLEAR = const(5)
_STATE = "/state/inject.bin"
_FIX_PERIOD_MS = const(1000)   # a GNSS receiver's 1 Hz epochs
_M_PER_DEG_E7 = 0.0111319      # metres per 1e-7 degree of latitude (WGS84 mean)
_ROUTE_HEAD = ">qHB"


def load_test_key(root, device_id):
    """The test key from /keys/test.key ([device_id, {0xFF: key}]), or None."""
    data = persist.read_file(root + "/keys/test.key")
    if not isinstance(data, list) or len(data) != 2 or data[0] != device_id:
        return None
    key = data[1].get(codec.TEST_KEY_ID) if isinstance(data[1], dict) else None
    return key if isinstance(key, bytes) and len(key) == 16 else None


class _HeldPin:
    """The button pin as the Button driver reads it: the real pin, or pressed (0, active
    low) until `release_at` after an injected press. The driver's level check after every
    pass turns that into edges, as it does for an edge that came during a sleep."""

    def __init__(self, pin, time):
        self.pin = pin
        self.time = time
        self.release_at = None      # type: int | None

    def held(self):
        if self.release_at is None:
            return False
        if self.time.ticks_diff(self.time.ticks_ms(), self.release_at) < 0:
            return True
        self.release_at = None
        return False

    def value(self, *args):
        if not args and self.held():
            return 0
        return self.pin.value(*args)


class _Battery:
    def __init__(self, real):
        self.real = real
        self.reading = None         # type: list | None  # [battery_mv, charging]

    def read(self):
        if self.reading is None:
            return self.real.read()
        mv, charging = self.reading
        return mv, battery_mod.percent(mv), charging


class _Gnss:
    """The GNSS driver, or, once a route is injected, fixes along it once a second while
    the receiver is powered (the real receiver's bytes are drained and dropped)."""

    def __init__(self, real, time, rtc_ms):
        self.real = real
        self.time = time
        self.rtc_ms = rtc_ms
        # [utc_ms, rtc0_ms, speed_cmps, sky, [[lat_e7, lon_e7], ...]]
        self.route = None           # type: list | None
        self.next_fix = None        # type: int | None  # ticks of the next injected epoch
        self.parser = real.parser

    @property
    def powered(self):
        return self.real.powered

    def power(self, on):
        self.real.power(on)
        self.next_fix = None

    def poll(self):
        fixes = self.real.poll()
        if self.route is None:
            return fixes
        if not self.real.powered:
            return []
        t = self.time
        now = t.ticks_ms()
        if self.next_fix is None:                     # the receiver's first epoch
            self.next_fix = t.ticks_add(now, _FIX_PERIOD_MS)
            return []
        if t.ticks_diff(now, self.next_fix) < 0:
            return []
        self.next_fix = t.ticks_add(now, _FIX_PERIOD_MS)
        if not self.route[3]:  # no sky: a no-fix epoch, which the real driver drops too
            return []
        return [self._fix(self.route)]

    def wait_ms(self, now):
        if self.route is None or not self.real.powered:
            return None
        if self.next_fix is None:
            return 0
        return max(0, self.time.ticks_diff(self.next_fix, now))

    def _fix(self, route):
        utc_ms, rtc0_ms, speed_cmps, _sky, points = route
        elapsed_ms = max(0, self.rtc_ms() - rtc0_ms)
        lat, lon, course, arrived = _along(points, speed_cmps * elapsed_ms / 100000.0)
        return {"fix_time_ms": utc_ms + elapsed_ms, "lat_e7": lat, "lon_e7": lon, "alt_m": 0,
                "speed_cmps": 0 if arrived else speed_cmps, "course_cdeg": course,
                "accuracy_m": 5, "hdop_x10": 9, "sats": 9, "source": 1}


def _along(points, distance_m):
    """(lat_e7, lon_e7, course_cdeg, arrived) after distance_m along the polyline."""
    lat, lon = points[0]
    course = 0
    for i in range(1, len(points)):
        lat1, lon1 = points[i]
        dy = (lat1 - lat) * _M_PER_DEG_E7
        dx = (lon1 - lon) * _M_PER_DEG_E7 * math.cos(math.radians(lat / 1e7))
        leg_m = math.sqrt(dx * dx + dy * dy)
        course = int(math.degrees(math.atan2(dx, dy)) * 100) % 36000
        if distance_m < leg_m:
            f = distance_m / leg_m
            return int(lat + (lat1 - lat) * f), int(lon + (lon1 - lon) * f), course, False
        distance_m -= leg_m
        lat, lon = lat1, lon1
    return lat, lon, course, True


class Injector:
    def __init__(self, app, ring, downlinks, device_id):
        self.app = app
        self.time = app.hw.time
        # Pass-throughs until an op says otherwise.
        self.pin = app.button.pin = _HeldPin(app.button.pin, self.time)
        self.battery = app.battery = _Battery(app.battery)
        self.gnss = app.gnss = _Gnss(app.gnss, self.time, app.rtc_ms)
        key = load_test_key(app.root, device_id)
        if key is None:
            app_log("test build: no /keys/test.key, TEST_INJECT stays refused")
            return
        ring.add(device_id, codec.TEST_KEY_ID, key)
        downlinks.test_mode = True
        state = persist.read_file(app.root + _STATE)
        if isinstance(state, dict):
            self.battery.reading = state.get("battery")
            self.gnss.route = state.get("route")
        app_log("test build: TEST_INJECT accepted under the test key")

    def _save(self):
        persist.write_file(self.app.root + _STATE, {"battery": self.battery.reading,
                                                    "route": self.gnss.route})

    def apply(self, frame, now):
        op, data = frame.fields["op"], frame.fields["data"]
        try:
            if op == OP_PRESS:
                press_ms = struct.unpack(">I", data)[0]
                app_log("test: press %d ms" % press_ms)
                self.pin.release_at = self.time.ticks_add(now, press_ms)
                for pressed, ticks in self.app.button.events():
                    self.app.dispatch(("button", pressed), ticks)
            elif op == OP_BATTERY:
                mv, charging = struct.unpack(">HB", data)
                app_log("test: battery %d mV charging %d" % (mv, charging))
                self.battery.reading = [mv, charging]
                self._save()
            elif op == OP_ROUTE:
                head = struct.calcsize(_ROUTE_HEAD)
                n = (len(data) - head) // 8
                if n < 1 or head + n * 8 != len(data):
                    raise ValueError("route needs 1..25 whole waypoints")
                utc_ms, speed_cmps, sky = struct.unpack_from(_ROUTE_HEAD, data, 0)
                points = [list(struct.unpack_from(">ii", data, head + 8 * i)) for i in range(n)]
                app_log("test: route %d point(s) %d cm/s sky %d" % (n, speed_cmps, sky))
                self.gnss.route = [utc_ms, self.app.rtc_ms(), speed_cmps, sky, points]
                self.gnss.next_fix = None
                self._save()
            elif op == OP_RESET:
                app_log("test: reset")
                self.time.sleep_ms(100)             # let the log line out before the reset
                self.app.hw.machine.reset()
            elif op == OP_CLEAR:
                app_log("test: clear")
                self.battery.reading = self.gnss.route = None
                self._save()
            else:
                app_log("test: unknown op %d" % op)
        except (ValueError, TypeError) as exc:   # struct.error is a ValueError on MicroPython
            app_log("test: op %d refused: %s" % (op, exc))

    def plan(self, mode, sleep_ms, now):
        """Stay awake (idle) while a press is held or injected fixes are due."""
        wait = None
        if self.pin.held():
            wait = max(0, self.time.ticks_diff(self.pin.release_at, now))
        gnss_wait = self.gnss.wait_ms(now)
        if gnss_wait is not None:
            wait = gnss_wait if wait is None else min(wait, gnss_wait)
        if wait is None:
            return mode, sleep_ms
        return "idle", min(sleep_ms, wait)


def app_log(text):
    print("vigil:", text)
