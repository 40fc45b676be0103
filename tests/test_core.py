"""Unit tests of the sans-IO device core (firmware/core.py), in virtual ticks."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware import config, core, persist, positioning, power
from protocol import codec, host_tables, messages
from protocol import host_constants as constants
from tests.vm import CORE_HEAP, compile_tree, device_lib, needs_micropython, run_micropython

REPO = Path(__file__).resolve().parent.parent
KEY = bytes(range(16))
HELLO = {"fw_major": 1, "fw_minor": 0, "fw_patch": 0, "schema_hash": messages.SCHEMA_HASH,
         "reset_cause": 1, "boot_count": 1}
T0 = (1 << 30) - 20000          # 20 s before the tick wrap, so every test crosses it


def make_fix(utc_ms=1_700_000_000_000, lat_e7=520_000_000, lon_e7=45_000_000, speed_cmps=0):
    return {"fix_time_ms": utc_ms, "lat_e7": lat_e7, "lon_e7": lon_e7, "alt_m": 3,
            "speed_cmps": speed_cmps, "course_cdeg": 0, "accuracy_m": 5, "hdop_x10": 9,
            "sats": 8, "source": 1}


def gaps(values, diff=core.ticks_diff):
    """Differences between consecutive values (ticks by default)."""
    return [diff(values[i + 1], values[i]) for i in range(len(values) - 1)]


class Rig:
    """Drives a Core in virtual time and seals every send with the real codec, so each
    action is also checked against the wire format."""

    def __init__(self, cfg=None, state=None, now=T0, hello=HELLO):
        self.cfg = cfg or config.defaults()
        self.core = core.Core(self.cfg, state)
        self.now = now
        self.log = []                       # (ticks, action)
        self.wakes = []                     # ticks of every handle() call
        self.sender = codec.Sender(7, 1, KEY)
        if hello is not None:
            self.event(("boot", hello))

    def event(self, ev, dt_ms=0):
        self.now = core.ticks_add(self.now, dt_ms)
        actions = self.core.handle(ev, self.now)
        self.wakes.append(self.now)
        for action in actions:
            if action[0] == "send":
                _, name, fields, flags, counter, store = action
                self.sender.seal(name, fields, flags, counter=counter)   # valid on the wire
            self.log.append((self.now, action))
        return actions

    def run(self, duration_ms, on_action=None):
        """Wake at every deadline for duration_ms; returns the actions seen."""
        end = core.ticks_add(self.now, duration_ms)
        seen = []
        while True:
            deadline = self.core.next_deadline(self.now)
            if core.ticks_diff(deadline, end) > 0:
                break
            step = max(0, core.ticks_diff(deadline, self.now))
            acts = self.event(("tick",), step)
            seen += [(self.now, a) for a in acts]
            if on_action:
                for a in acts:
                    on_action(self, a)
        self.event(("tick",), core.ticks_diff(end, self.now))
        return seen

    def sends(self, name=None, since=None):
        return [(t, a) for t, a in self.log if a[0] == "send" and (name is None or a[1] == name)
                and (since is None or core.ticks_diff(t, since) >= 0)]

    def actions(self, kind):
        return [(t, a) for t, a in self.log if a[0] == kind]

    def press(self, hold_ms):
        self.event(("button", 1))
        self.run(hold_ms)
        self.event(("button", 0))

    def ack(self, counter, bitmap=0):
        return self.event(("rx", "ACK", {"highest": counter, "bitmap": bitmap}, 1, 0))

    def downlink(self, name, fields, counter=1):
        return self.event(("rx", name, fields, counter, 1))




# --- purity ---------------------------------------------------------------------------------
CORE_MODULES = ("core", "alarm", "positioning", "power", "orders", "pairing",
                "clock")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_no_hardware_modules(module):
    tree = ast.parse((REPO / "firmware" / (module + ".py")).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"micropython", "firmware"}
    assert not imported & {"machine", "time", "esp32", "bluetooth", "utime"}


# The core's private consts -> their protocol.host_constants (or host_tables) names, where they differ.
_PROTOCOL_NAMES = {
    "ALARM_PANIC": "ALARM_KIND_PANIC", "ALARM_BATTERY_20": "ALARM_KIND_BATTERY_20",
    "ALARM_BATTERY_10": "ALARM_KIND_BATTERY_10", "ALARM_BATTERY_5": "ALARM_KIND_BATTERY_5",
    "ALARM_GNSS_LOST": "ALARM_KIND_GNSS_LOST", "STATE_RAISED": "ALARM_STATE_RAISED",
    "STATE_CLEARED": "ALARM_STATE_CLEARED", "STATE_REPEAT": "ALARM_STATE_REPEAT",
    "EVENT_CHARGER_ON": "EVENT_KIND_CHARGER_ON", "EVENT_CHARGER_OFF": "EVENT_KIND_CHARGER_OFF",
    "EVENT_SELF_TEST": "EVENT_KIND_SELF_TEST",
    "EVENT_COMMS_RESTORED": "EVENT_KIND_COMMS_RESTORED",
    "EVENT_QUEUE_EVICTED": "EVENT_KIND_QUEUE_EVICTED",
    "EVENT_MODE_CHANGED": "EVENT_KIND_MODE_CHANGED",
    "SOURCE_LAST_KNOWN": "FIX_SOURCE_LAST_KNOWN", "MAX_FIXES": "MAX_FIXES",
    "MODE_AWARE": "MODE_AWARE", "MODE_PAIRED": "MODE_PAIRED",
}
_STORE = {"STORE_NONE": 0, "STORE_EVIDENCE": 1, "STORE_ALARM": 2}


def _consts(module):
    tree = ast.parse((REPO / "firmware" / (module + ".py")).read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", "") == "const"):
            yield node.targets[0].id.lstrip("_"), node.value.args[0].value


@pytest.mark.parametrize("module", CORE_MODULES + ("app",))
def test_core_constants_match_protocol(module):
    """Each firmware module keeps private consts (free on MicroPython) of the protocol's
    numbers; protocol/host_constants.py is the host's table, which the firmware never imports
    (each public name there would cost the device a global and a qstr of heap)."""
    checked = 0
    for name, value in _consts(module):
        wire = _PROTOCOL_NAMES.get(name) or (name if hasattr(constants, name) else None)
        if wire is not None:
            assert value == getattr(constants, wire, None) or value == getattr(host_tables, wire), (
                module, name)
            checked += 1
        elif name in _STORE:
            assert value == _STORE[name], (module, name)
    assert checked or module == "clock"
    assert "protocol.host_constants" not in (REPO / "firmware" / (module + ".py")).read_text()
    assert "import constants" not in (REPO / "firmware" / (module + ".py")).read_text()
    assert core.STORE_ALARM == 2                     # the app's view of the flash queue


def test_ticks_arithmetic_wraps_like_the_esp32_port():
    assert core.ticks_add((1 << 30) - 1, 1) == 0
    assert core.ticks_diff(5, (1 << 30) - 5) == 10
    assert core.ticks_diff((1 << 30) - 5, 5) == -10
    assert core.ticks_diff(core.ticks_add(123, 1 << 28), 123) == 1 << 28


# --- boot and reachability ------------------------------------------------------------------
def test_boot_sends_hello_samples_battery_and_starts_gnss():
    rig = Rig()
    kinds = [a[0] for _, a in rig.log]
    assert rig.sends("HELLO")[0][1][2]["config_version"] == 0
    assert "sample_battery" in kinds and ("gnss", 1) in [a for _, a in rig.log]


def _no_wake_line(cfg=None):
    """A board whose link peer cannot wake it (config wake_line 0): it listens by itself."""
    cfg = cfg or config.defaults()
    cfg["wake_line"] = 0
    return cfg


def test_with_the_wake_line_there_are_no_listen_windows_and_long_gaps_deep_sleep():
    rig = Rig()
    gnss = Gnss(rig)
    plans = []
    for _ in range(12):
        gnss.run(7 * 60_000)
        plans.append(rig.core.sleep_plan(rig.now))
    assert rig.cfg["wake_line"] == 1
    assert "listen" not in rig.core._due                    # no wake every 25 s
    deep = [ms for mode, ms in plans if mode == "deep"]
    assert deep and min(deep) >= rig.cfg["deep_sleep_min_s"] * 1000


def test_a_stationary_fix_due_soon_rides_the_heartbeat_wake():
    rig = Rig()
    Gnss(rig).run(3600_000)
    beats = [t for t, _ in rig.sends("HEARTBEAT")]
    fixes_on = [t for t, a in rig.actions("gnss") if a[1] == 1]
    assert len(beats) == 4
    for beat in beats[:-1]:                                 # the last one ends the run
        # the GNSS goes on at the heartbeat, not ~30 s later at a wake of its own
        assert any(0 <= core.ticks_diff(t, beat) <= 1000 for t in fixes_on), beat


def test_never_sleeps_past_the_reachability_bound():
    rig = Rig(_no_wake_line())
    bound = rig.cfg["reachability_s"] * 1000 - rig.cfg["listen_margin_ms"]
    rig.run(3 * 3600 * 1000)
    wake_gaps = gaps(rig.wakes)
    assert max(wake_gaps) == bound and min(wake_gaps) >= 0
    mode, sleep_ms = rig.core.sleep_plan(rig.now)
    assert mode == "light" and sleep_ms <= bound


def test_deep_sleep_only_when_the_bound_allows_it():
    cfg = _no_wake_line()
    cfg["reachability_s"] = 600
    cfg["gnss_timeout_s"] = 10
    rig = Rig(cfg)
    rig.run(60_000)                       # GNSS times out, NO_FIX, GNSS off
    assert not rig.core.gnss_on
    mode, sleep_ms = rig.core.sleep_plan(rig.now)
    assert mode == "deep" and sleep_ms <= 595_000
    assert Rig(_no_wake_line()).core.sleep_plan(T0)[0] != "deep"   # 30 s bound: light sleep


# --- deep sleep: a wake resumes the timers less the time slept -------------------------------
def deep_cfg():
    cfg = config.defaults()
    cfg["wake_line"] = 0
    cfg["reachability_s"] = 600
    cfg["gnss_timeout_s"] = 10
    return cfg


def asleep(rig):
    """A rig that took its boot fix, and has its GNSS off: ready for deep sleep."""
    rig.event(("fix", make_fix()), 2000)
    rig.event(("battery", 3900, 60, 0))
    rig.run(10_000)
    assert rig.core.sleep_plan(rig.now)[0] == "deep"
    return rig


def deep_wake(rig, slept_ms, now=12345, hello=HELLO):
    """Deep sleep now, wake slept_ms later at ticks `now` (ticks restart at a reset): what the
    app does with RTC memory and the RTC."""
    state = rig.core.sleep_snapshot(rig.now)
    state = persist.decode(persist.encode(state))        # as RTC memory gives it back
    state["deep"]["slept_ms"] = slept_ms
    return Rig(rig.cfg, state, now=now, hello=hello)


def due_in(rig, name):
    return core.ticks_diff(rig.core._due[name], rig.now)


def test_a_timer_due_in_300_s_fires_100_s_after_a_200_s_deep_sleep():
    rig = asleep(Rig(deep_cfg()))
    rig.event(("tick",), due_in(rig, "heartbeat") - 300_000)
    assert due_in(rig, "heartbeat") == 300_000
    woke = deep_wake(rig, 200_000)
    start = woke.now
    assert not woke.sends("HEARTBEAT")
    woke.run(150_000)
    beats = woke.sends("HEARTBEAT")
    assert [core.ticks_diff(t, start) for t, _ in beats] == [100_000]
    # and the next one a full interval later, as if there had been no sleep
    assert due_in(woke, "heartbeat") == 900_000 - (woke.now - beats[0][0])


def test_an_overdue_timer_fires_at_the_wake():
    rig = asleep(Rig(deep_cfg()))
    rig.event(("tick",), due_in(rig, "heartbeat") - 300_000)
    woke = deep_wake(rig, 400_000)
    assert [t for t, _ in woke.sends("HEARTBEAT")] == [woke.now]


def test_a_button_wake_mid_sleep_uses_the_rtc_measured_time():
    rig = asleep(Rig(deep_cfg()))
    mode, sleep_ms = rig.core.sleep_plan(rig.now)
    before = {name: due_in(rig, name) for name in rig.core._due if name != "battery"}
    assert mode == "deep" and sleep_ms == min(before.values())
    woke = deep_wake(rig, 100_000)                       # a press, long before the timer
    after = {name: due_in(woke, name) for name in woke.core._due if name != "battery"}
    assert after == {name: before[name] - 100_000 for name in before}
    assert woke.core.sleep_plan(woke.now) == ("deep", sleep_ms - 100_000)   # back to sleep
    woke.press(2000)
    assert woke.sends("ALARM")


def test_a_resume_sends_no_hello_and_carries_utc_counter_and_fix_age():
    rig = asleep(Rig(deep_cfg()))
    utc = rig.core.utc_ms(rig.now)
    age_s = positioning.fix_age_s(rig.core, rig.now)
    uptime_ms = power.uptime_ms(rig.core, rig.now)
    counter = rig.core.counter
    woke = deep_wake(rig, 500_000, now=(1 << 30) - 100)  # just before the tick wrap
    assert not woke.sends("HELLO")
    assert woke.core.utc_ms(woke.now) == utc + 500_000
    assert positioning.fix_age_s(woke.core, woke.now) == age_s + 500
    assert power.uptime_ms(woke.core, woke.now) == uptime_ms + 500_000
    assert woke.core.counter == counter and woke.core.battery == (3900, 60, 0)
    assert "gnss" not in [a[0] for _, a in woke.log]     # no fix at each wake
    woke.run(3_600_000)
    beat = woke.sends("HEARTBEAT")[0][1][2]
    assert beat["uptime_s"] >= (uptime_ms + 500_000) // 1000
    assert ("resend",) not in [a[:1] for _, a in woke.log]


def test_a_deep_sleep_reset_without_the_rtc_snapshot_is_a_boot():
    rig = asleep(Rig(deep_cfg()))
    state = rig.core.snapshot()                           # flash: no "deep"
    hello = dict(HELLO, reset_cause=constants.RESET_DEEPSLEEP)
    booted = Rig(rig.cfg, state, now=777, hello=hello)
    assert booted.sends("HELLO")[0][1][2]["reset_cause"] == constants.RESET_DEEPSLEEP
    assert due_in(booted, "heartbeat") == 900_000 and ("gnss", 1) in [a for _, a in booted.log]


def test_no_contact_survives_deep_sleep_and_the_led_comes_back():
    rig = asleep(Rig(deep_cfg()))
    rig.run(1_300_000)                                    # no ack for 20 min
    assert rig.core.no_contact
    woke = deep_wake(rig, 1000)
    assert woke.core.no_contact and ("led", "no_contact") in [a for _, a in woke.log]
    assert woke.core.status() & constants.STATUS_NO_CONTACT


def test_sleep_snapshot_fits_rtc_memory_with_every_timer_running():
    rig = Rig(deep_cfg())
    panic(rig)
    rig.downlink("PROXIMITY", {"level": 2}, counter=2)
    rig.downlink("COMMAND", {"command": 1, "arg": 600}, counter=3)
    rig.event(("fix", make_fix(speed_cmps=900)), 500)
    state = rig.core.sleep_snapshot(rig.now)
    assert len(state["deep"]["timers"]) >= 10
    assert len(persist.encode(state)) + 8 + 8 <= 2048     # rtc_save's limit after the guard


# (persist's round trip is left out: core, config and persist together do not fit the small
# heap of the unix VM; test_persist_vm covers persist there, the tests above the round trip.)
DEEP_WAKE_SCRIPT = r"""
from firmware import config, core
cfg = config.defaults()
cfg["reachability_s"] = 600
c = core.Core(cfg)
now = (1 << 30) - 5000
c.handle(("boot", {"fw_major": 1, "fw_minor": 0, "fw_patch": 0, "schema_hash": 1,
                   "reset_cause": 1, "boot_count": 1}), now)
c.handle(("fix", {"fix_time_ms": 1700000000000, "lat_e7": 520000000, "lon_e7": 45000000,
                  "alt_m": 3, "speed_cmps": 0, "course_cdeg": 0, "accuracy_m": 5,
                  "hdop_x10": 9, "sats": 8, "source": 1}), now)
now = core.ticks_add(now, 100000)
c.handle(("tick",), now)
state = c.sleep_snapshot(now)
state["deep"]["slept_ms"] = 700000
c = None
c = core.Core(cfg, state)
now = 77
acts = c.handle(("boot", {}), now)
print(len(state["deep"]), c.utc_ms(now), c.sleep_plan(now))
for name in sorted(c._due):
    print(name, core.ticks_diff(c._due[name], now))
for a in acts:
    print(a[0], a[1] if len(a) > 1 else "")
"""


@needs_micropython
@pytest.mark.micropython
def test_deep_wake_resumes_the_same_on_the_micropython_vm(tmp_path):
    lib = device_lib(tmp_path)
    (lib / "deep_wake.py").write_text(DEEP_WAKE_SCRIPT)
    compile_tree(lib)                  # as deployed: compiling on a small heap would not fit
    vm = run_micropython("import deep_wake", heapsize=CORE_HEAP, path=[lib])
    assert vm.returncode == 0, (vm.stdout + vm.stderr).decode()[-600:]
    cpython = subprocess.run([sys.executable, "-c", DEEP_WAKE_SCRIPT], capture_output=True,
                             cwd=REPO, check=True)
    lines = cpython.stdout.decode().splitlines()
    assert lines[0].split()[1] == str(1_700_000_000_000 + 100_000 + 700_000)
    assert "heartbeat 100000" in lines and not any("HELLO" in line for line in lines)
    assert vm.stdout.decode().splitlines() == lines


# --- button ---------------------------------------------------------------------------------
def test_long_press_raises_one_panic_alarm_at_1500_ms():
    rig = Rig()
    rig.event(("button", 1))
    rig.run(1499)
    assert not rig.sends("ALARM")
    rig.run(1)
    alarms = rig.sends("ALARM")
    assert len(alarms) == 1
    fields = alarms[0][1][2]
    assert fields["kind"] == 1 and fields["state"] == 1 and alarms[0][1][5] == 2
    assert ("haptic", "panic_confirm") in [a for _, a in rig.log]
    rig.run(3000)
    rig.event(("button", 0))
    assert len(rig.sends("ALARM")) == 1


def test_short_presses_do_nothing():
    rig = Rig()
    for hold in (50, 700, 1490):
        rig.press(hold)
        rig.run(2000)
    assert not rig.sends("ALARM") and not rig.core.panic_id


def test_contact_bounce_does_not_restart_the_press():
    rig = Rig()
    rig.event(("button", 1))
    rig.event(("button", 0), 700)
    rig.event(("button", 1), 10)          # bounce: 10 ms < debounce_ms
    rig.run(800)
    assert len(rig.sends("ALARM")) == 1
    rig2 = Rig()
    rig2.event(("button", 1))
    rig2.event(("button", 0), 700)
    rig2.event(("button", 1), 200)        # a real second press
    rig2.run(800)
    assert not rig2.sends("ALARM")


def test_button_held_keeps_the_device_awake():
    rig = Rig()
    rig.event(("button", 1))
    assert rig.core.sleep_plan(rig.now) == ("idle", 20)


# --- alarm lifecycle ------------------------------------------------------------------------
def panic(rig):
    rig.event(("button", 1))
    rig.run(1500)
    rig.event(("button", 0))
    t, action = rig.sends("ALARM")[-1]
    return t, action[4], action[2]["alarm_id"]


def test_alarm_retries_at_1_2_5_10_30_then_every_30_s():
    rig = Rig()
    t0, counter, _ = panic(rig)
    rig.run(150_000)
    resend_at = [core.ticks_diff(t, t0) for t, a in rig.actions("resend") if a[1] == counter]
    assert resend_at == [1000, 2000, 5000, 10000, 30000, 60000, 90000, 120000, 150000]


def test_transport_ack_stops_retries_but_not_the_alarm():
    rig = Rig()
    _, counter, alarm_id = panic(rig)
    rig.run(1500)
    rig.ack(counter)
    n = len(rig.actions("resend"))
    rig.run(120_000)
    assert len(rig.actions("resend")) == n
    assert rig.core.panic_id == alarm_id and positioning.cadence_mode(rig.core) == "panic"


def test_ack_bitmap_acks_lower_counters():
    rig = Rig()
    _, counter, _ = panic(rig)
    acts = rig.ack(counter + 3, bitmap=0b100)     # bit 2 -> highest - 3
    assert [tuple(a[1]) for a in acts if a[0] == "acked"] == [(counter + 3, counter)]
    assert rig.core.snapshot()["alarm_tx"] == []


def test_operator_ack_plays_a_distinct_haptic_pattern_once():
    rig = Rig()
    _, _, alarm_id = panic(rig)
    rig.downlink("OPERATOR_ACK", {"alarm_id": alarm_id, "operator_id": 3})
    rig.downlink("OPERATOR_ACK", {"alarm_id": alarm_id, "operator_id": 3}, counter=2)
    haptics = [a[1] for _, a in rig.actions("haptic")]
    assert haptics.count("operator_ack") == 1 and "panic_confirm" in haptics
    assert rig.core.panic_id == alarm_id


def test_only_clear_alarm_with_the_right_id_ends_the_panic():
    rig = Rig()
    _, _, alarm_id = panic(rig)
    rig.downlink("PROXIMITY", {"level": 0})
    rig.downlink("COMMAND", {"command": 5, "arg": alarm_id + 1}, counter=2)
    rig.event(("battery", 4100, 100, 1))
    assert rig.core.panic_id == alarm_id
    rig.downlink("COMMAND", {"command": 5, "arg": alarm_id}, counter=3)
    assert rig.core.panic_id == 0 and positioning.cadence_mode(rig.core) != "panic"
    cleared = rig.sends("ALARM")[-1][1][2]
    assert cleared["alarm_id"] == alarm_id and cleared["state"] == 3


def test_active_unacked_alarm_survives_reboot_and_is_resent_at_once():
    rig = Rig()
    _, counter, alarm_id = panic(rig)
    snap = rig.core.snapshot()
    rig2 = Rig(state=snap, now=12345)
    assert rig2.core.panic_id == alarm_id and positioning.cadence_mode(rig2.core) == "panic"
    assert ("resend", counter) in [a for _, a in rig2.log]
    assert rig2.sends("HELLO")[0][1][4] >= snap["counter"]
    rig2.run(2000)
    assert [a[1] for _, a in rig2.actions("resend")].count(counter) == 3   # boot, +1 s, +2 s


def test_second_alarm_id_differs():
    rig = Rig()
    _, _, first = panic(rig)
    rig.downlink("COMMAND", {"command": 5, "arg": first})
    rig.run(3000)
    _, _, second = panic(rig)
    assert second != first


# --- GPS cadence ----------------------------------------------------------------------------
class Gnss:
    """Answers ("gnss", 1) with fixes every `every_ms` while powered, moving east."""

    def __init__(self, rig, speed_cmps=0, delay_ms=2000):
        self.rig, self.speed, self.delay = rig, speed_cmps, delay_ms
        self.lon = 45_000_000

    def run(self, duration_ms, fix_every_ms=1000):
        end = core.ticks_add(self.rig.now, duration_ms)
        next_fix = None
        while core.ticks_diff(end, self.rig.now) > 0:
            deadline = self.rig.core.next_deadline(self.rig.now)
            if self.rig.core.gnss_on and next_fix is None:
                next_fix = core.ticks_add(self.rig.now, self.delay)
            if not self.rig.core.gnss_on:
                next_fix = None
            target = deadline
            if next_fix is not None and core.ticks_diff(next_fix, target) < 0:
                target = next_fix
            if core.ticks_diff(target, end) > 0:
                target = end
            step = max(0, core.ticks_diff(target, self.rig.now))
            self.rig.event(("tick",), step)
            if next_fix is not None and core.ticks_diff(self.rig.now, next_fix) >= 0 \
                    and self.rig.core.gnss_on:
                self.lon += self.speed * fix_every_ms // 100 * 100 // 1113 * 1  # ~east
                utc = 1_700_000_000_000 + core.ticks_diff(self.rig.now, T0)
                self.rig.event(("fix", make_fix(utc, lon_e7=self.lon, speed_cmps=self.speed)))
                next_fix = core.ticks_add(self.rig.now, fix_every_ms)


def test_stationary_heartbeat_every_15_min_with_gnss_off_between():
    rig = Rig()
    Gnss(rig).run(3600_000)
    beats = [t for t, _ in rig.sends("HEARTBEAT")]
    beat_gaps = gaps(beats)
    assert len(beats) == 4 and all(g == 900_000 for g in beat_gaps)
    assert positioning.cadence_mode(rig.core) == "stationary"
    assert len(rig.sends("POSITION")) == 4          # boot fix + one per heartbeat interval
    assert [a[1] for _, a in rig.actions("gnss")] == [1, 0] * 4


def test_moving_fix_every_60_s_batched_uploaded_every_5_min():
    rig = Rig()
    gnss = Gnss(rig, speed_cmps=140)
    gnss.run(1800_000)
    assert positioning.cadence_mode(rig.core) == "moving"
    uploads = rig.sends("POSITION", core.ticks_add(T0, 600_000))
    upload_gaps = gaps([t for t, _ in uploads])
    assert upload_gaps and all(g <= 300_000 for g in upload_gaps)
    fixes = [f for _, a in uploads for f in a[2]["fixes"]]
    spacing = gaps([f["fix_time_ms"] for f in fixes], lambda b, a: b - a)
    assert all(59_000 <= s <= 63_000 for s in spacing)
    assert max(len(a[2]["fixes"]) for _, a in uploads) >= 4


def test_panic_fix_every_5_s_uploaded_every_10_s():
    rig = Rig()
    gnss = Gnss(rig)
    gnss.run(10_000)
    panic(rig)
    start = rig.now
    gnss.run(120_000)
    uploads = rig.sends("POSITION", start)
    upload_gaps = gaps([t for t, _ in uploads])
    assert len(uploads) >= 11 and all(g <= 10_000 for g in upload_gaps)
    fixes = [f["fix_time_ms"] for _, a in uploads for f in a[2]["fixes"]]
    spacing = gaps(fixes, lambda b, a: b - a)
    assert all(4_000 <= s <= 6_000 for s in spacing)
    assert rig.core.gnss_on                           # tracking, not re-acquiring


def test_panic_cadence_slows_after_panic_track_s_but_alarm_stays():
    rig = Rig()
    gnss = Gnss(rig)
    _, _, alarm_id = panic(rig)
    gnss.run(rig.cfg["panic_track_s"] * 1000 + 60_000)
    assert positioning.cadence_mode(rig.core) == "proximity" and rig.core.panic_id == alarm_id


def test_proximity_warning_haptic_and_fix_every_15_s_sent_at_once():
    rig = Rig()
    gnss = Gnss(rig)
    gnss.run(5000)
    rig.downlink("PROXIMITY", {"level": 2})
    assert ("haptic", "proximity_warning") in [a for _, a in rig.log]
    start = rig.now
    gnss.run(120_000)
    uploads = rig.sends("POSITION", start)
    assert all(len(a[2]["fixes"]) == 1 for _, a in uploads)
    upload_gaps = gaps([t for t, _ in uploads])
    assert len(uploads) >= 7 and all(14_000 <= g <= 17_000 for g in upload_gaps)
    rig.downlink("PROXIMITY", {"level": 3}, counter=2)
    assert ("haptic", "proximity_alarm") in [a for _, a in rig.log]
    rig.downlink("PROXIMITY", {"level": 0}, counter=3)
    assert positioning.cadence_mode(rig.core) == "stationary"


def test_no_fix_after_acquisition_timeout_carries_last_fix_and_age():
    rig = Rig()
    Gnss(rig).run(5000)
    rig.run(900_000 + rig.cfg["gnss_timeout_s"] * 1000)
    nofix = rig.sends("NO_FIX")
    assert len(nofix) == 1
    fields = nofix[0][1][2]
    assert fields["last_fix"]["source"] == 2 and 900 <= fields["age_s"] <= 1000
    assert not rig.core.gnss_on


def test_no_fix_without_any_fix_reports_never():
    rig = Rig()
    rig.run(rig.cfg["gnss_timeout_s"] * 1000)
    fields = rig.sends("NO_FIX")[0][1][2]
    assert fields["age_s"] == 0xFFFFFFFF and fields["last_fix"] is None


def test_gnss_lost_alarm_after_10_min_moving_without_fix():
    rig = Rig()
    gnss = Gnss(rig, speed_cmps=140)
    gnss.run(300_000)
    assert rig.core.moving
    lost_at = rig.now
    rig.run(700_000)                                # no more fixes
    alarms = [(t, a) for t, a in rig.sends("ALARM") if a[2]["kind"] == 5]
    assert len(alarms) == 1
    assert 540_000 <= core.ticks_diff(alarms[0][0], lost_at) <= 601_000


def test_locate_now_sends_one_fix_even_in_low_power():
    rig = Rig()
    gnss = Gnss(rig)
    rig.event(("battery", 3500, 8, 0))
    gnss.run(60_000)
    n = len(rig.sends("POSITION"))
    rig.downlink("COMMAND", {"command": 1, "arg": 0})
    gnss.run(10_000)
    assert len(rig.sends("POSITION")) == n + 1


def test_locate_now_with_arg_tracks_silently_for_arg_seconds_even_in_low_power():
    rig = Rig()
    gnss = Gnss(rig)
    rig.event(("battery", 3500, 8, 0))                       # low power: no routine fixes
    gnss.run(60_000)
    start = rig.now
    rig.downlink("COMMAND", {"command": 1, "arg": 300})
    assert positioning.cadence_mode(rig.core) == "locate"
    gnss.run(200_000)
    uploads = rig.sends("POSITION", start)
    assert all(len(a[2]["fixes"]) == 1 for _, a in uploads)   # each fix sent at once
    upload_gaps = gaps([t for t, _ in uploads])
    assert core.ticks_diff(uploads[0][0], start) <= 5000      # the first one at once
    assert len(uploads) >= 10 and all(14_000 <= g <= 19_000 for g in upload_gaps)
    assert not rig.actions("haptic") and not rig.actions("led")   # the wearer is told nothing
    gnss.run(110_000)
    assert positioning.cadence_mode(rig.core) == "low_power"                     # ended after 300 s
    n = len(rig.sends("POSITION"))
    gnss.run(600_000)
    assert len(rig.sends("POSITION")) == n


def test_locate_tracking_wakes_every_poll_ms_and_cycles_the_gnss_at_15_s():
    rig = Rig(_no_wake_line())
    gnss = Gnss(rig, delay_ms=1000)
    gnss.run(60_000)
    rig.downlink("COMMAND", {"command": 1, "arg": 600})
    start = rig.now
    gnss.run(300_000)
    wakes = [t for t in rig.wakes if core.ticks_diff(t, start) > 0]
    assert max(gaps(wakes)) <= rig.cfg["poll_ms"]             # a downlink waits <= 2 s
    assert rig.core.sleep_plan(rig.now)[1] <= rig.cfg["poll_ms"]
    # 15 s > gnss_keep_on_s: powered per fix (hot starts), not all along.
    switches = [a[1] for t, a in rig.actions("gnss") if core.ticks_diff(t, start) >= 0]
    assert switches.count(0) >= 15


def test_repeated_locate_extends_tracking_without_an_extra_fix():
    rig = Rig()
    gnss = Gnss(rig)
    gnss.run(10_000)
    rig.downlink("COMMAND", {"command": 1, "arg": 60})
    gnss.run(50_000)
    n = len(rig.sends("POSITION"))
    rig.downlink("COMMAND", {"command": 1, "arg": 60}, counter=2)   # 10 s before the end
    assert not rig.core._send_next_fix
    gnss.run(40_000)
    assert positioning.cadence_mode(rig.core) == "locate"  # still tracking at 90 s
    assert len(rig.sends("POSITION")) in (n + 2, n + 3)       # only the 15 s cadence
    gnss.run(40_000)
    assert positioning.cadence_mode(rig.core) == "stationary"


def test_gnss_on_is_polled_every_poll_ms_so_a_fix_is_read_at_once():
    rig = Rig()                                               # boot: GNSS on for a fix
    rig.run(10_000)
    assert rig.core.gnss_on and rig.core.next_deadline(rig.now) == core.ticks_add(
        rig.now, rig.cfg["poll_ms"])
    assert max(gaps(rig.wakes[1:])) == rig.cfg["poll_ms"]
    # Stationary, GNSS off: back to the reachability bound's listen windows.
    fix_rig = Rig()
    Gnss(fix_rig, delay_ms=1000).run(5_000)
    assert not fix_rig.core.gnss_on
    wait = core.ticks_diff(fix_rig.core.next_deadline(fix_rig.now), fix_rig.now)
    assert wait > fix_rig.cfg["poll_ms"]


# --- battery --------------------------------------------------------------------------------
def test_battery_alarms_at_20_10_5_percent_once_each():
    rig = Rig()
    for pct in (50, 21, 20, 19, 20, 15, 10, 9, 6, 5, 4, 5):
        rig.event(("battery", 3600, pct, 0), 60_000)
    kinds = [a[2]["kind"] for _, a in rig.sends("ALARM")]
    assert kinds == [2, 3, 4]
    rig.event(("battery", 3900, 30, 1))               # charger re-arms them
    rig.event(("battery", 3600, 19, 0))
    assert [a[2]["kind"] for _, a in rig.sends("ALARM")] == [2, 3, 4, 2]


def test_charger_events():
    rig = Rig()
    rig.event(("battery", 3700, 40, 0))
    rig.event(("battery", 3900, 41, 1))
    rig.event(("battery", 3900, 41, 1))
    rig.event(("battery", 3800, 42, 0))
    kinds = [a[2]["kind"] for _, a in rig.sends("EVENT")]
    assert kinds == [1, 2]


def test_low_power_stops_routine_positions_and_slows_heartbeat():
    rig = Rig()
    gnss = Gnss(rig, speed_cmps=140)
    gnss.run(600_000)
    rig.event(("battery", 3400, 9, 0))
    start = rig.now
    gnss.run(3 * 3600_000 + 1000)
    assert not rig.sends("POSITION", core.ticks_add(start, 1))
    beats = [t for t, _ in rig.sends("HEARTBEAT", start)]
    beat_gaps = gaps(beats)
    assert beat_gaps and all(g == 3600_000 for g in beat_gaps)
    assert rig.sends("HEARTBEAT")[-1][1][2]["status"] & constants.STATUS_LOW_POWER
    panic(rig)                                        # panic still works
    assert positioning.cadence_mode(rig.core) == "panic"


def test_daily_self_test_event():
    rig = Rig()
    rig.run(2 * 86400_000 + 1000)
    tests = [t for t, a in rig.sends("EVENT") if a[2]["kind"] == 3]
    assert len(tests) == 2 and core.ticks_diff(tests[1], tests[0]) == 86400_000


# --- comms and queue policy -----------------------------------------------------------------
def test_no_contact_led_after_20_min_and_restored_on_ack():
    rig = Rig()
    rig.run(1199_000)
    assert ("led", "no_contact") not in [a for _, a in rig.log]
    rig.run(2000)
    assert ("led", "no_contact") in [a for _, a in rig.log]
    assert rig.core.status() & constants.STATUS_NO_CONTACT
    rig.ack(1)
    assert ("led", "off") in [a for _, a in rig.log]
    assert rig.sends("EVENT")[-1][1][2]["kind"] == 4


def test_no_contact_counts_only_while_an_ack_is_owed():
    """A low-power device heartbeats hourly: an acked heartbeat, then 59 quiet minutes, is
    not lost contact. An unacked one is, no_contact_s after it was sent."""
    rig = Rig()
    rig.event(("battery", 3550, 8, 0))                      # low power: hourly heartbeat
    assert rig.core.low_power
    # HELLO, the battery alarm and the HEARTBEAT telling the centre the new interval, acked.
    assert rig.sends("HEARTBEAT")[-1][1][2]["interval_s"] == rig.cfg["low_battery_heartbeat_s"]
    rig.ack(rig.core.counter - 1, bitmap=0b11)
    for _ in range(3):
        rig.run(3600_000, on_action=lambda r, a: a[0] == "send" and a[1] != "ACK"
                and r.ack(a[4]))
    assert ("led", "no_contact") not in [a for _, a in rig.log]
    sent = [t for t, a in rig.sends() if a[1] == "HEARTBEAT"]
    # The next heartbeat goes unacked.
    rig.run(core.ticks_diff(sent[-1], rig.now) + 3600_000 + rig.cfg["no_contact_s"] * 1000 + 2000)
    unacked = [t for t, a in rig.sends() if a[1] == "HEARTBEAT"][len(sent)]
    shown = [t for t, a in rig.actions("led") if a[1] == "no_contact"]
    assert shown and core.ticks_diff(shown[0], unacked) == rig.cfg["no_contact_s"] * 1000


def test_flush_after_ack_skips_recent_and_alarm_frames():
    rig = Rig()
    rig.run(60_000)
    _, alarm_counter, _ = panic(rig)
    rig.event(("queue_depth", 40))
    acts = rig.ack(1)
    flush = [a for a in acts if a[0] == "flush"]
    assert len(flush) == 1
    _, max_n, below, skip = flush[0]
    assert max_n == rig.cfg["flush_max"] and alarm_counter in skip
    assert below <= alarm_counter                 # the alarm was sent < ack_wait_ms ago
    assert not [a for a in rig.ack(2) if a[0] == "flush"]      # rate limited


def test_evidence_is_stored_and_heartbeats_are_not():
    rig = Rig()
    Gnss(rig).run(1000_000)
    panic(rig)
    store = {}
    for _, a in rig.sends():
        store.setdefault(a[1], set()).add(a[5])
    # HELLO is kept until acked: it is how the centre learns of a reset, and so skips its
    # downlink counters past the device's replay floor (firmware/persist.DownlinkFloor).
    assert store["HEARTBEAT"] == {0} and store["HELLO"] == {1}
    assert store["POSITION"] == {1} and store["ALARM"] == {2}


def test_downlink_with_ack_request_is_acked_with_its_counter():
    rig = Rig()
    acts = rig.downlink("TIME_SYNC", {"utc_ms": 1_800_000_000_000}, counter=42)
    ack = [a for a in acts if a[0] == "send" and a[1] == "ACK"]
    assert ack and ack[0][2] == {"highest": 42, "bitmap": 0}
    assert rig.core.utc_ms(rig.now) == 1_800_000_000_000


def test_duplicate_downlink_is_acked_again_but_not_acted_on_twice():
    rig = Rig()
    rig.downlink("OPERATOR_ACK", {"alarm_id": 1, "operator_id": 1}, counter=9)
    acts = rig.event(("rx_duplicate", 9, 1), 1000)
    acks = [a for a in acts if a[0] == "send" and a[1] == "ACK"]
    assert acks and acks[0][2] == {"highest": 9, "bitmap": 0}
    assert not [a for a in acts if a[0] == "haptic"], "a repeat plays nothing again"


def test_config_downlink_applies_in_range_and_refuses_out_of_range():
    rig = Rig()
    acts = rig.downlink("CONFIG", {"config_version": 3, "items": [(1, 600), (5, 9999)]})
    assert rig.cfg["heartbeat_s"] == 600 and rig.cfg["panic_fix_s"] == 5
    assert any(a[0] == "log" and "panic_fix_s" in a[1] for a in acts)
    assert any(a[0] == "save_config" and a[1] == 3 for a in acts)
    start = rig.now
    rig.run(1300_000)
    beats = [t for t, _ in rig.sends("HEARTBEAT", start)]
    assert core.ticks_diff(beats[0], start) == 600_000


def test_unknown_event_is_logged_not_raised():
    rig = Rig()
    acts = rig.event(("bogus", 1))
    assert acts and acts[0][0] == "log"


@pytest.mark.parametrize("key_id", sorted(config.CONFIG_KEYS))
def test_config_defaults_lie_in_their_ranges(key_id):
    name, low, high, default = config.CONFIG_KEYS[key_id]
    assert low <= default <= high and config.defaults()[name] == default


def test_config_apply_refuses_bad_values_and_changes_nothing_for_them():
    cfg = config.defaults()
    ids = {entry[0]: key_id for key_id, entry in config.CONFIG_KEYS.items()}
    refused = config.apply(cfg, [(ids["heartbeat_s"], 5), (ids["panic_fix_s"], 3), (250, 1)])
    assert cfg["heartbeat_s"] == 900 and cfg["panic_fix_s"] == 3 and len(refused) == 2
    assert "heartbeat_s" in refused[0] and "250" in refused[1]



@given(st.integers(1, 2 ** 32 - 1), st.integers(0, 2 ** 64 - 1))
def test_acked_holds_what_the_ack_bitmap_says_without_a_list(highest, bitmap):
    # SPEC: an ACK covers `highest` and highest - 1 - i for each set bit i; counters start at 1
    acked = core.Acked(highest, bitmap)
    expected = [highest] + [highest - 1 - i for i in range(64)
                            if bitmap >> i & 1 and highest - 1 - i > 0]
    assert list(acked) == expected
    assert list(acked) == expected                 # walked again: not a one-shot iterator
    for counter in range(max(0, highest - 70), highest + 3):
        assert (counter in acked) == (counter in expected)


def test_the_core_keeps_to_47_attributes():
    # MicroPython keeps an instance's attributes in an open-addressed table that grows
    # 47 -> 59 slots (752 -> 944 bytes on the 64-bit VM) when a 48th arrives; that growth,
    # at boot with every module loaded, was the allocation that failed first. A new piece
    # of core state goes into an existing structure (e.g. `_due`) or replaces one.
    rig = Rig()
    panic(rig)
    rig.downlink("OPERATOR_ACK", {"alarm_id": rig.core.panic_id, "operator_id": 3})
    rig.run(3_600_000)
    assert len(vars(rig.core)) <= 47, sorted(vars(rig.core))
