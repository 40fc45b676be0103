"""The centre's side: every downlink frame (on_rx), contact, the backlog flush and listening
without a wake line. Functions of the core: each takes the Core first (its state lives
there, firmware/core.py); CONFIG and COMMAND are orders.py's, PROXIMITY and MODE pairing.py's (both imported when first needed)."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import alarm
from firmware.clock import as_int, ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_EVENT_COMMS_RESTORED = const(4)
_STORE_EVIDENCE = const(1)
_STORE_NONE = const(0)

_MODE_PAIRED = const(2)
# The reachability bound of a paired device without a wake line (docs/LINK.md).
_PAIRED_REACH_S = const(30)



def on_rx(c, event, now, out):
    """("rx", name, fields, counter, flags): an authenticated downlink frame; ("rx_duplicate",
    counter, flags): one seen before, so our ACK was lost. Either way ack it if it asks
    (FLAG_ACK_REQ; an ACK is never acked) and note the contact; act on a new one only."""
    if event[0] == "rx":
        name, counter = event[1], event[3]
        flags = event[4] if len(event) > 4 else 0
    else:
        name, counter, flags = None, event[1], event[2]
    if flags & 1 and name != "ACK":
        c._send("ACK", {"highest": counter, "bitmap": 0}, _STORE_NONE, now, out)
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
    if name is None:
        return
    fields = event[2]
    if name == "ACK":
        _rx_ack(c, fields, now, out)
    elif name == "OPERATOR_ACK":                # an operator took the alarm: no more retries
        alarm_id = as_int(fields.get("alarm_id"))
        changed = alarm.stop_retries(c, 1, (alarm_id,))
        if alarm_id and alarm_id == c.panic_id and not c.panic_operator_acked:
            c.panic_operator_acked = 1
            out.append(("haptic", "operator_ack"))
            changed = True
        if changed:
            c._persist(out)
    elif name == "CONFIG":
        # Rare: orders.py is imported at the first CONFIG or COMMAND.
        from firmware import orders
        orders.rx_config(c, fields, now, out)
    elif name == "COMMAND":
        from firmware import orders
        orders.rx_command(c, fields, now, out)
    elif name == "TIME_SYNC":
        utc = as_int(fields.get("utc_ms"))
        if utc > 0:
            c._utc_ms, c._utc_ticks = utc, now
    elif name == "PROXIMITY":
        # Paired only: pairing.py is imported at the first PROXIMITY or MODE.
        from firmware import pairing
        pairing.rx_proximity(c, fields, now, out)
    elif name == "MODE":
        from firmware import pairing
        pairing.rx_mode(c, fields, now, out)
    elif name != "TEST_INJECT":
        out.append(("log", "rx %s ignored" % name))


def _rx_ack(c, fields, now, out):
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
    if alarm.stop_retries(c, 0, acked):
        c._persist(out)
    for counter, _sent_at in c._recent:
        if counter in acked:
            c._acked_n += 1
    out.append(("acked", tuple(acked)))
    if c.queue_depth > 0 and (c._last_flush is None or ticks_diff(now, c._last_flush)
                              >= c.cfg["flush_interval_ms"]):
        c._last_flush = now
        # The oldest send still within ack_wait_ms may yet be acked: flush below it.
        wait = c.cfg["ack_wait_ms"]
        recent = []
        for entry in c._recent:
            if ticks_diff(now, entry[1]) < wait:
                recent.append(entry)
        c._recent = recent
        skip = []
        for entry in c._alarm_tx:
            skip.append(entry[0])
        out.append(("flush", c.cfg["flush_max"], recent[0][0] if recent else c.counter,
                    tuple(skip)))


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
