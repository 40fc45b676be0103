"""The device's scheme (SPEC 6.15): aware (a panic button to the police) or paired with an
offender's ankle tag for a court-ordered period (panic and proximity to the probation
centre). Functions of the core: each takes the Core first (its state lives there,
firmware/core.py).

Panic handling does not depend on the scheme, so a switch, by MODE or by the pairing's
end, leaves no gap: an active alarm stays active, retried and acked as before. The scheme
only changes what the device reports (HELLO/HEARTBEAT `mode`, EVENT mode_changed) and so
where the centre routes its alarms."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import downlink
from firmware.clock import as_int, ticks_add

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_MODE_AWARE = const(1)
_MODE_PAIRED = const(2)
_EVENT_MODE_CHANGED = const(6)
_STORE_EVIDENCE = const(1)
# Until UTC is known the pairing window cannot be judged: look again this often. A day at
# most between checks keeps the timer well inside the ticks range.
_NO_UTC_RETRY_MS = const(60000)
_MAX_WAIT_MS = const(86400000)


def rx_mode(c, fields, now, out):
    mode = as_int(fields.get("mode"))
    if mode == _MODE_AWARE:
        c.pairing = None
    elif mode == _MODE_PAIRED:
        offender = as_int(fields.get("offender_id"))
        start = as_int(fields.get("valid_from_ms"))
        end = as_int(fields.get("valid_until_ms"))
        if not offender or end <= start:
            out.append(("log", "mode paired refused: %d %d..%d" % (offender, start, end)))
            return
        c.pairing = [offender, start, end]
    else:
        out.append(("log", "mode %d unknown" % mode))
        return
    c._persist(out)
    check(c, now, out)


def check(c, now, out):
    """Put the scheme the pairing window asks for at UTC `now` in force, and arm the timer
    for the window's next edge."""
    c._due.pop("pairing", None)
    pairing = c.pairing
    utc = c.utc_ms(now)
    want = c.scheme
    wait_ms = 0
    if pairing is None:
        want = _MODE_AWARE
    elif not utc:
        wait_ms = _NO_UTC_RETRY_MS                   # keep the scheme in force until we know
    elif utc >= pairing[2]:
        want = _MODE_AWARE                           # the court order has ended
        c.pairing = None
        out.append(("log", "pairing with %d ended" % pairing[0]))
    elif utc >= pairing[1]:
        want = _MODE_PAIRED
        wait_ms = pairing[2] - utc
    else:
        want = _MODE_AWARE
        wait_ms = pairing[1] - utc
    if wait_ms:
        c._due["pairing"] = ticks_add(now, min(wait_ms, _MAX_WAIT_MS))
    if want != c.scheme:
        c.scheme = want
        downlink.plan_listen(c, now)               # paired listens at least every 30 s
        out.append(("log", "mode %s" % ("paired" if want == _MODE_PAIRED else "aware")))
        c._send("EVENT", {"kind": _EVENT_MODE_CHANGED, "time_ms": utc, "value": want},
                _STORE_EVIDENCE, now, out)
        c._persist(out)
    elif pairing is not None and c.pairing is None:
        c._persist(out)
