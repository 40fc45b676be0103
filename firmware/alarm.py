"""The panic button and the alarm lifecycle: long press, raising, retransmission until an
ACK (OPERATOR_ACK: Core._on_rx, COMMAND clear_alarm: orders.py). Functions of the core: each
takes the Core first (its state lives there, firmware/core.py)."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import positioning
from firmware.clock import ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_ALARM_PANIC = const(1)
_STATE_RAISED = const(1)
_STATE_REPEAT = const(4)
_STORE_ALARM = const(2)

# Alarm retransmission: after the first send, resend at these offsets (ms), then every
# _RETRY_EVERY_MS, until a transport ACK or an OPERATOR_ACK covers the frame's counter.
_RETRY_AT_MS = (1000, 2000, 5000, 10000, 30000)
_RETRY_EVERY_MS = const(30000)
# At most this many alarm frames are retried from RAM; older ones stay in the flash queue
# and go out with the backlog (they are never evicted there).
_MAX_ALARM_TX = const(8)


def on_button(c, pressed, now, out):
    """A raw level change of the panic button (1 pressed, 0 released), or None: the press
    timer. A hold of long_press_ms raises the panic, on the timer or at the release (the hold
    may have reached the threshold between two wakes)."""
    long_press_ms = c.cfg["long_press_ms"]
    if pressed is None:
        if not c._pressed or c._press_raised:
            return
    else:
        pressed = 1 if pressed else 0
        if pressed == c._pressed:
            return
        c._pressed = pressed
        if pressed:
            # A release shorter than debounce_ms was contact bounce: the press goes on.
            bounced = (c._release_at is not None
                       and ticks_diff(now, c._release_at) < c.cfg["debounce_ms"])
            if not bounced:
                c._press_at = now
                c._press_raised = False
            c._due["press"] = ticks_add(c._press_at, long_press_ms)
            return
        c._release_at = now
        c._due.pop("press", None)
        if c._press_raised:
            return
    if ticks_diff(now, c._press_at) >= long_press_ms:
        c._press_raised = True
        raise_panic(c, now, out)
    elif pressed is None:
        c._due["press"] = ticks_add(c._press_at, long_press_ms)


def raise_alarm(c, kind, state, alarm_id, now, out):
    if not alarm_id:
        alarm_id = c.next_alarm_id
        c.next_alarm_id = alarm_id % 0xFFFF + 1
    raised = c.panic_raised_utc if alarm_id == c.panic_id else c.utc_ms(now)
    fields = {"alarm_id": alarm_id, "kind": kind, "state": state,
              "raised_time_ms": raised, "fix": positioning.known_fix(c, now)}
    counter = c._send("ALARM", fields, _STORE_ALARM, now, out)
    c._alarm_tx.append([counter, alarm_id, 0, ticks_add(now, _RETRY_AT_MS[0])])
    if len(c._alarm_tx) > _MAX_ALARM_TX:
        c._alarm_tx.pop(0)
    c._persist(out)
    # host/metrics.py reads this line: keep its words.
    out.append(("log", "alarm %d kind %d state %d counter %d" % (alarm_id, kind, state,
                                                                counter)))
    return alarm_id


def raise_panic(c, now, out):
    # A press while the alarm is active is never swallowed (issue 9): the wearer feels it was
    # taken, the centre gets its own record (ALARM state repeat, SPEC 6.6), and tracking goes
    # back to the panic rate.
    repeat = bool(c.panic_id)
    if not repeat:
        c.panic_id = c.next_alarm_id
        c.next_alarm_id = c.panic_id % 0xFFFF + 1
        c.panic_raised_utc = c.utc_ms(now)
    c.panic_operator_acked = 0
    c._panic_slow = False
    c._due["panic_slow"] = c._at(now, "panic_track_s")
    out.append(("haptic", "panic_repeat" if repeat else "panic_confirm"))
    raise_alarm(c, _ALARM_PANIC, _STATE_REPEAT if repeat else _STATE_RAISED, c.panic_id, now,
                out)
    positioning.replan(c, now, out)


def retry(c, now, out):
    """Resend each alarm frame whose retry is due, and schedule its next retry."""
    for entry in c._alarm_tx:
        if entry[3] is None or ticks_diff(now, entry[3]) >= 0:
            out.append(("resend", entry[0]))
            index = entry[2]
            if entry[3] is None:                 # first run after boot: restart schedule
                step = _RETRY_AT_MS[0]
                entry[2] = 0
            elif index + 1 < len(_RETRY_AT_MS):
                step = _RETRY_AT_MS[index + 1] - _RETRY_AT_MS[index]
                entry[2] = index + 1
            else:
                step = _RETRY_EVERY_MS
            entry[3] = ticks_add(now, step)


def stop_retries(c, index, values):
    """Stop retrying the alarm frames whose entry[index] (0 counter, 1 alarm id) is in
    `values`; True when there were any."""
    kept = []
    for entry in c._alarm_tx:
        if entry[index] not in values:
            kept.append(entry)
    stopped = len(kept) != len(c._alarm_tx)
    c._alarm_tx = kept
    return stopped
