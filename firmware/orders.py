"""The centre's rare orders: CONFIG (settings) and COMMAND (vibrate, self_test, reboot,
clear_alarm; locate_now is pairing.py's). Functions of the core (each takes the Core
first), imported by Core._on_rx at the first such frame: a device that never gets one
spends no heap on them."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import alarm, positioning, power
from firmware.clock import as_int

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_ALARM_PANIC = const(1)
_STATE_CLEARED = const(3)

# COMMAND vibrate arg -> pattern.
VIBRATE_PATTERNS = ("confirm", "operator_ack", "proximity_warning", "proximity_alarm",
                    "locate", "proximity_uncertain")


def rx_config(c, fields, now, out):
    from firmware import config  # only here: a COMMAND needs none of it
    refused = config.apply(c.cfg, fields.get("items") or ())
    for reason in refused:
        out.append(("log", reason))
    c.config_version = as_int(fields.get("config_version"))
    items = {}                                      # the wire keys' values, by key id
    for key_id in config.CONFIG_KEYS:
        items[key_id] = c.cfg[config.CONFIG_KEYS[key_id][0]]
    out.append(("save_config", c.config_version, items))
    c._persist(out)
    due = c._due
    due["heartbeat"] = c._at(now, "low_battery_heartbeat_s" if c.low_power
                                else "heartbeat_s")
    c.plan_listen(now)
    due.pop("fix", None)
    due.pop("upload", None)
    positioning.replan(c, now, out)


def rx_command(c, fields, now, out):
    command, arg = as_int(fields.get("command")), as_int(fields.get("arg"))
    if command == 2:                                  # vibrate (1, locate_now: pairing.py)
        pattern = VIBRATE_PATTERNS[arg] if arg < len(VIBRATE_PATTERNS) else "confirm"
        out.append(("haptic", pattern))
    elif command == 3:                                # self_test
        power.self_test(c, now, out)
    elif command == 4:                                # reboot
        c._persist(out)
        out.append(("reboot",))
    elif command == 5 and arg and arg == c.panic_id:  # clear_alarm: the operator ends it
        alarm.raise_alarm(c, _ALARM_PANIC, _STATE_CLEARED, arg, now, out)
        c.panic_id = 0
        c.panic_operator_acked = 0
        c._panic_slow = False
        c._due.pop("panic_slow", None)
        c._persist(out)
        positioning.replan(c, now, out)
    elif command == 5:
        out.append(("log", "clear_alarm %d: not active" % arg))
    else:
        out.append(("log", "command %d unknown" % command))
