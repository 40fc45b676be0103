"""The device's scheme (SPEC 6.15): aware (a panic button to the police) or paired with an
offender's ankle tag for a court-ordered period (panic and proximity to the probation
centre), and what only the paired scheme uses: the PROXIMITY level and the centre's
locate_now. Functions of the core: each takes the Core first (its state lives there,
firmware/core.py). Imported when first needed (a MODE, PROXIMITY or locate_now, a paired
device's boot): an aware device spends no heap on this code.

Panic handling does not depend on the scheme, so a switch, by MODE or by the pairing's
end, leaves no gap: an active alarm stays active, retried and acked as before. The scheme
only changes what the device reports (HELLO/HEARTBEAT `mode`, EVENT mode_changed) and so
where the centre routes its alarms."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import positioning
from firmware.clock import as_int, ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_MODE_AWARE = const(1)
_MODE_PAIRED = const(2)
_EVENT_MODE_CHANGED = const(6)
_STORE_EVIDENCE = const(1)
# Until UTC is known the pairing window cannot be judged: look again this often. A day at
# most between checks keeps the timer well inside the ticks range.
_NO_UTC_RETRY_MS = const(60000)
_MAX_WAIT_MS = const(86400000)
# While positioning backs off without a fix, locate_now buys one try at once (bounded like
# any attempt; a failure grows the gap like any other) at most once per _LOCATE_TRY_S; an
# earlier repeat leaves the next try where the backoff put it, and that try sends its fix at
# once. The time of the last such try lives in RAM: a deep sleep forgets it, and the
# centre's own limit (no_fix_locate_s, one per 15 min after NO_FIX) still holds.
_LOCATE_TRY_S = const(900)

# Haptic feedback to the wearer per PROXIMITY level 1..3 (a rise in level only).
_PROXIMITY_HAPTIC = (None, "proximity_uncertain", "proximity_warning", "proximity_alarm")


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
        c.plan_listen(now)               # paired listens at least every 30 s
        out.append(("log", "mode %s" % ("paired" if want == _MODE_PAIRED else "aware")))
        c._send("EVENT", {"kind": _EVENT_MODE_CHANGED, "time_ms": utc, "value": want},
                _STORE_EVIDENCE, now, out)
        c._persist(out)
    elif pairing is not None and c.pairing is None:
        c._persist(out)


def rx_proximity(c, fields, now, out):
    level = as_int(fields.get("level"))
    if not 0 <= level <= 3:
        out.append(("log", "proximity level %d unknown" % level))
        return
    before = c.proximity
    c.proximity = level
    if level > before:
        out.append(("haptic", _PROXIMITY_HAPTIC[level]))
        if level == 1:
            # Uncertain: the centre's fix of the wearer is stale. A fresh one settles it.
            locate_now(c, 0, now, out)
    if level:
        c._due["prox_lapse"] = c._at(now, "proximity_hold_s")
    else:
        c._due.pop("prox_lapse", None)
    if level != before:
        c._persist(out)
        if bool(level) != bool(before) or (level >= 2) != (before >= 2):
            positioning.replan(c, now, out)             # also: warning ends any backoff


def locate_now(c, arg, now, out):
    """COMMAND locate_now. arg 0: one fix, sent at once. arg > 0: also track for arg
    seconds (a fix every proximity_fix_s, each sent at once), silently: no haptic, no LED.
    A repeat extends the tracking without an extra fix."""
    starting = not arg or not c._locating
    try_now = True
    # Backing off: one try now, but not too often.
    if c._fix_fails and not positioning.full_effort(c):
        since = c._locate_try_at
        since = -1 if since is None else ticks_diff(now, since)
        try_now = since < 0 or since >= _LOCATE_TRY_S * 1000
        if try_now:
            c._locate_try_at = now
    if arg:
        c._due["locate_end"] = ticks_add(now, arg * 1000)
        if not c._locating:
            c._locating = True
            out.append(("log", "locate tracking %d s" % arg))
    if starting:
        c._send_next_fix = True
        if not c._want_fix and try_now:
            c._due["fix"] = now
    if arg:
        positioning.replan(c, now, out)
