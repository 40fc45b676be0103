"""The centre's side: downlink frames (ACK, CONFIG, COMMAND, TIME_SYNC), contact and its
loss, the backlog flush, and listening without a wake line. Functions of the core: each
takes the Core first (its state lives there, firmware/core.py); PROXIMITY, OPERATOR_ACK
and MODE are handled by their own modules."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import alarm, positioning, power
from firmware import config as _config
from firmware.clock import as_int, ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_EVENT_COMMS_RESTORED = const(4)
_STORE_EVIDENCE = const(1)
_STORE_NONE = const(0)

_MODE_PAIRED = const(2)
# The reachability bound of a paired device without a wake line (docs/LINK.md).
_PAIRED_REACH_S = const(30)

# COMMAND vibrate arg -> pattern.
VIBRATE_PATTERNS = ("confirm", "operator_ack", "proximity_warning", "proximity_alarm",
                    "locate", "proximity_uncertain")


def on_rx_duplicate(c, event, now, out):
    if event[2] & 1:   # FLAG_ACK_REQ
        c._send("ACK", {"highest": event[1], "bitmap": 0}, _STORE_NONE, now, out)
    contact(c, now, out)


def rx_ack(c, fields, now, out):
    highest = as_int(fields.get("highest"))
    bitmap = as_int(fields.get("bitmap"))
    acked = [highest] if highest > 0 else []
    i = 0
    while bitmap and highest - 1 - i > 0:
        if bitmap & 1:
            acked.append(highest - 1 - i)
        bitmap >>= 1
        i += 1
    if not acked:
        return
    before = len(c._alarm_tx)
    c._alarm_tx = [e for e in c._alarm_tx if e[0] not in acked]
    if len(c._alarm_tx) != before:
        c._persist(out)
    c._acked_n += len([r for r in c._recent if r[0] in acked])
    out.append(("acked", tuple(acked)))
    if c.queue_depth > 0:
        if (c._last_flush is None or ticks_diff(now, c._last_flush)
                >= c.cfg["flush_interval_ms"]):
            c._last_flush = now
            skip = tuple(e[0] for e in c._alarm_tx)
            out.append(("flush", c.cfg["flush_max"], flush_below(c, now), skip))


def flush_below(c, now):
    wait = c.cfg["ack_wait_ms"]
    recent = [r for r in c._recent if ticks_diff(now, r[1]) < wait]
    c._recent = recent
    return recent[0][0] if recent else c.counter


def rx_config(c, fields, now, out):
    refused = _config.apply(c.cfg, fields.get("items") or ())
    for reason in refused:
        out.append(("log", reason))
    c.config_version = as_int(fields.get("config_version"))
    out.append(("save_config", c.config_version, dict(c.cfg)))
    c._persist(out)
    due = c._due
    due["heartbeat"] = c._at(now, "low_battery_heartbeat_s" if c.low_power
                                else "heartbeat_s")
    plan_listen(c, now)
    due.pop("fix", None)
    due.pop("upload", None)
    positioning.replan(c, now, out)


def rx_command(c, fields, now, out):
    command, arg = as_int(fields.get("command")), as_int(fields.get("arg"))
    if command == 1:                                  # locate_now
        positioning.locate_now(c, arg, now, out)
    elif command == 2:                                # vibrate
        pattern = VIBRATE_PATTERNS[arg] if arg < len(VIBRATE_PATTERNS) else "confirm"
        out.append(("haptic", pattern))
    elif command == 3:                                # self_test
        power.self_test(c, now, out)
    elif command == 4:                                # reboot
        c._persist(out)
        out.append(("reboot",))
    elif command == 5:                                # clear_alarm
        alarm.clear_panic(c, arg, now, out)
    else:
        out.append(("log", "command %d unknown" % command))


def rx_time_sync(c, fields, now, out):
    utc = as_int(fields.get("utc_ms"))
    if utc > 0:
        c._utc_ms, c._utc_ticks = utc, now


def rx_ignore(c, fields, now, out):
    pass


def contact(c, now, out):
    c._last_contact = now
    # Silence is only "no contact" while an ack is owed: a low-power device that sends a
    # heartbeat an hour apart has not lost the centre in between. The timer is armed again
    # by the next frame that asks for an ack (_send).
    c._due.pop("no_contact", None)
    if c.no_contact:
        c.no_contact = False
        out.append(("led", "off"))
        c._send("EVENT", {"kind": _EVENT_COMMS_RESTORED, "time_ms": c.utc_ms(now),
                             "value": 0}, _STORE_EVIDENCE, now, out)


def t_no_contact(c, now, out):
    if not c.no_contact:
        c.no_contact = True
        out.append(("led", "no_contact"))
        out.append(("log", "no ack for %d s" % (ticks_diff(now, c._last_contact) // 1000)))


def plan_listen(c, now):
    """A board without a wake line listens by itself: a window before each
    reachability bound runs out. With the wake line (docs/LINK.md) the peer wakes it.
    Paired, the bound is at most _PAIRED_REACH_S whatever the configuration: the centre's
    pre-alert (an offender within 3 km) must reach the wearer within 30 s (issue 9)."""
    if c.cfg["wake_line"]:
        c._due.pop("listen", None)
        return
    bound_s = c.cfg["reachability_s"]
    if c.scheme == _MODE_PAIRED and bound_s > _PAIRED_REACH_S:
        bound_s = _PAIRED_REACH_S
    c._due["listen"] = ticks_add(now, max(1000, bound_s * 1000 - c.cfg["listen_margin_ms"]))


def t_listen(c, now, out):
    plan_listen(c, now)
