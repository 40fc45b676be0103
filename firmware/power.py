"""Heartbeat, battery and self-test: the device's health reports and its low-power state.
Functions of the core: each
takes the Core first (its state lives there, firmware/core.py)."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import alarm, positioning
from firmware.clock import as_int, ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_ALARM_BATTERY_5 = const(4)
_ALARM_BATTERY_10 = const(3)
_ALARM_BATTERY_20 = const(2)
_EVENT_CHARGER_OFF = const(2)
_EVENT_CHARGER_ON = const(1)
_EVENT_SELF_TEST = const(3)
_SELF_TEST_LOW_POWER = const(8)
_SELF_TEST_NO_BATTERY = const(4)
_SELF_TEST_NO_CONTACT = const(2)
_SELF_TEST_NO_FIX_24H = const(1)
_STATE_RAISED = const(1)
_STORE_EVIDENCE = const(1)
_STORE_NONE = const(0)

# Battery alarms: (charge %, alarm kind, latch bit), most severe last. An alarm is raised
# once when the charge falls to its threshold while not charging; it re-arms when the charge
# is _BATTERY_REARM_PCT above the threshold or the charger is connected.
_BATTERY_ALARMS = ((20, _ALARM_BATTERY_20, 1), (10, _ALARM_BATTERY_10, 2),
                   (5, _ALARM_BATTERY_5, 4))
_BATTERY_REARM_PCT = const(3)
# While tracking, the device sends something at least this often: the centre escalates a
# device that is silent for 60 s during an alarm or a proximity level (issue 9).
_KEEPALIVE_S = const(30)


def t_heartbeat(c, now, out):
    key = "low_battery_heartbeat_s" if c.low_power else "heartbeat_s"
    c._due["heartbeat"] = c._at(now, key)
    mv, pct, charging = c.battery or (0, 0, 0)
    sent, acked = c._sent_n, c._acked_n
    quality = 100 if sent == 0 else min(100, acked * 100 // sent)
    c._sent_n, c._acked_n = sent // 2, acked // 2      # decay: recent links count
    fields = {"battery_mv": mv, "battery_pct": pct, "charging": charging,
              "link_quality": quality, "queue_depth": min(c.queue_depth, 0xFFFF),
              "uptime_s": uptime_ms(c, now) // 1000, "status": c.status(), "mode": c.scheme,
              "interval_s": interval_s(c)}
    c.reported_interval_s = fields["interval_s"]
    c._send("HEARTBEAT", fields, _STORE_NONE, now, out)
    keepalive(c, now)
    # A fix due soon rides this wake and this radio connection: a boot and a modem
    # connection each cost more than a fix taken a little early.
    fix_due = c._due.get("fix")
    if (fix_due is not None and positioning.cadence_mode(c) == "stationary"
            and ticks_diff(fix_due, now) < c.cfg["deep_sleep_min_s"] * 1000):
        c._due["fix"] = now


def interval_s(c):
    """The longest the device means to stay silent now (HELLO/HEARTBEAT interval_s, SPEC 6.3):
    the heartbeat interval, or _KEEPALIVE_S while tracking (an alarm, a proximity level, a
    locate), when a failed fix must not make the wearer look silent to the centre; not while
    backing off without a fix outside full effort (positioning.fast_reporting)."""
    base = c.cfg["low_battery_heartbeat_s" if c.low_power else "heartbeat_s"]
    if positioning.fast_reporting(c):
        return min(base, _KEEPALIVE_S)
    return base


def keepalive(c, now, out=None):
    """While tracking, arm a HEARTBEAT for _KEEPALIVE_S after the last uplink; from the
    keepalive timer (`out` given), send it once that has passed."""
    if not positioning.fast_reporting(c):
        c._due.pop("keepalive", None)
    elif out is not None and ticks_diff(now, c._last_uplink) >= _KEEPALIVE_S * 1000:
        t_heartbeat(c, now, out)
    else:
        due = ticks_add(c._last_uplink, _KEEPALIVE_S * 1000)
        c._due["keepalive"] = now if ticks_diff(due, now) < 0 else due


def uptime_ms(c, now):
    return c._uptime_base_ms + max(0, ticks_diff(now, c._boot_at))


def self_test(c, now, out):
    """EVENT self_test: what the device finds wrong with itself (the self_test timer, or the
    centre's COMMAND)."""
    value = 0
    if c._last_fix_at is None or ticks_diff(now, c._last_fix_at) > 86400000:
        value |= _SELF_TEST_NO_FIX_24H
    if c.no_contact:
        value |= _SELF_TEST_NO_CONTACT
    if c.battery is None:
        value |= _SELF_TEST_NO_BATTERY
    if c.low_power:
        value |= _SELF_TEST_LOW_POWER
    c._send("EVENT", {"kind": _EVENT_SELF_TEST, "time_ms": c.utc_ms(now),
                         "value": value}, _STORE_EVIDENCE, now, out)


def on_battery(c, event, now, out):
    mv, pct, charging = as_int(event[1]), as_int(event[2]), 1 if event[3] else 0
    before = c.battery
    c.battery = (mv, pct, charging)
    if before is not None and before[2] != charging:
        kind = _EVENT_CHARGER_ON if charging else _EVENT_CHARGER_OFF
        c._send("EVENT", {"kind": kind, "time_ms": c.utc_ms(now), "value": pct},
                   _STORE_EVIDENCE, now, out)
    latch = c.battery_latch
    raise_kind = 0
    for threshold, kind, bit in _BATTERY_ALARMS:
        if charging or pct >= threshold + _BATTERY_REARM_PCT:
            latch &= ~bit
        elif pct <= threshold and not latch & bit:
            latch |= bit
            raise_kind = kind                     # the most severe one crossed
    changed = latch != c.battery_latch
    c.battery_latch = latch
    if raise_kind:
        alarm.raise_alarm(c, raise_kind, _STATE_RAISED, 0, now, out)
    elif changed:
        c._persist(out)
    low = not charging and pct < c.cfg["low_power_pct"]
    if low != c.low_power:
        c.low_power = low
        # Pieces of <= 10 characters are shared qstrs, not string objects of their own.
        out.append(("log", "low power " + ("on" if low else "off")))
        positioning.replan(c, now, out)
