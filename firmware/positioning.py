"""Positioning: the GPS cadence per mode, motion, fixes, uploads and NO_FIX (the centre's
locate_now is firmware/pairing.py's). Functions of the core: each
takes the Core first (its state lives there, firmware/core.py)."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware.clock import as_int, ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks).
_ALARM_GNSS_LOST = const(5)
_MAX_FIXES = const(7)
_NEVER_AGE_S = const(0xFFFFFFFF)
_SOURCE_LAST_KNOWN = const(2)
_PROXIMITY_WARNING = const(2)
_STATE_RAISED = const(1)
_STORE_EVIDENCE = const(1)

# GPS cadence. The mode is the first that applies, top to bottom:
#   panic       a panic alarm is active (only COMMAND clear_alarm ends it)
#   proximity   the last PROXIMITY downlink was uncertain/warning/alarm, refreshed within
#               proximity_hold_s; also panic after panic_track_s has passed
#   locate      COMMAND locate_now with arg > 0 asked for tracking for arg seconds: the
#               centre's pre-alert (an offender within a few km). Silent: the wearer is
#               told nothing, and it outranks low power because a warning may follow
#   low_power   charge below low_power_pct and not charging: no routine positions
#   moving      the last fix moved >= moving_displacement_m from the one before, or had
#               speed >= moving_speed_cmps; three still fixes in a row end it
#   stationary  otherwise
# Each mode: (fix every, upload at least every (None: send each fix at once)). Values are
# config names in seconds; None fix interval = no routine fixes.
CADENCE = {
    "panic": ("panic_fix_s", "panic_upload_s"),
    "proximity": ("proximity_fix_s", None),
    "locate": ("proximity_fix_s", None),
    "low_power": (None, None),
    "moving": ("moving_fix_s", "moving_upload_s"),
    "stationary": ("heartbeat_s", None),
}
_STILL_FIXES_TO_STOP = const(3)
# GNSS without a fix (issue 9: indoors the receiver kept acquiring at ~60 mA with the CPU
# awake to read it). Outside full effort a failed acquisition backs off: the next try
# comes _BACKOFF_FIRST_S later, each further gap _BACKOFF_GROWTH times the last, capped at
# _BACKOFF_MAX_S (or the mode's own interval if that is longer). With the ephemeris hot (a fix
# within _HOT_S; NEO-M8 hot start ~1 s) an attempt lasts _HOT_ATTEMPT_S, else gnss_timeout_s.
# A fix ends the backoff. Full effort (full_effort()) never backs off: an active panic, or
# the offender confirmed within the warning radius; the operator needs her position then,
# and the receiver is worth its current. The uncertain level and the locate mode back off
# too (issue 9: indoors the centre's locate_now requests and the uncertain level kept the
# receiver searching and the radio sending keepalives, 53.6 mA over the indoor hour): the
# centre already tells wearer and operator UNCERTAIN from the stale fix, and a search that
# failed a minute ago is unlikely to succeed now. While backing off the device promises
# the centre its routine interval, not the tracking keepalive (fast_reporting()).
# While backing off, locate_now buys one try at once (firmware/pairing.py).
_BACKOFF_FIRST_S = const(60)
_BACKOFF_GROWTH = const(4)
_BACKOFF_MAX_S = const(1800)
_HOT_S = const(7200)
_HOT_ATTEMPT_S = const(20)
# Modes in which the centre may need to reach the wearer within seconds (a PROXIMITY warning
# follows a pre-alert): the device wakes every poll_ms to drain the link UART.
TRACKING = ("panic", "proximity", "locate")


def cadence_mode(c):
    if c.panic_id and not c._panic_slow:
        return "panic"
    if c.proximity or c.panic_id:
        return "proximity"
    if c._locating:
        return "locate"
    if c.low_power:
        return "low_power"
    if c.moving:
        return "moving"
    return "stationary"


def full_effort(c):
    return bool(c.panic_id) or c.proximity >= _PROXIMITY_WARNING


def fast_reporting(c):
    """Tracking, and not backing off without a fix: the device keeps the centre's short
    silence promise (power.interval_s, keepalive)."""
    return cadence_mode(c) in TRACKING and (full_effort(c) or not c._fix_fails)


def gnss(c, on, out):
    if on != c.gnss_on:
        c.gnss_on = on
        out.append(("gnss", on))


def known_fix(c, now):
    """The last fix for an ALARM/NO_FIX: as is when fresh, else marked last-known."""
    fix = c.last_fix
    if fix is None:
        return None
    if c._last_fix_at is not None and ticks_diff(now, c._last_fix_at) < 30000:
        return fix
    fix = dict(fix)
    fix["source"] = _SOURCE_LAST_KNOWN
    return fix


def fix_age_s(c, now):
    if c._last_fix_at is not None:
        return ticks_diff(now, c._last_fix_at) // 1000
    if c.last_fix is not None and c._utc_ms is not None:
        age = (c.utc_ms(now) - as_int(c.last_fix.get("fix_time_ms"))) // 1000
        return min(max(age, 0), _NEVER_AGE_S - 1)
    return _NEVER_AGE_S


def upload(c, now, out):
    if c._batch:
        fields = {"send_time_ms": c.utc_ms(now), "fixes": c._batch[:_MAX_FIXES]}
        c._batch = c._batch[_MAX_FIXES:]
        c._send("POSITION", fields, _STORE_EVIDENCE, now, out)


def replan(c, now, out):
    """Re-derive the fix and upload timers after a change of mode."""
    mode = cadence_mode(c)
    fix_key, upload_key = CADENCE[mode]
    due = c._due
    if fix_key is None:
        if not c._send_next_fix:
            due.pop("fix", None)
            due.pop("acquire", None)
            c._want_fix = False
            gnss(c, 0, out)
    elif not c._want_fix:
        soon = ticks_add(now, max(c.cfg[fix_key], backoff_s(c)) * 1000)
        if mode in TRACKING and (full_effort(c) or not c._fix_fails):
            soon = now
        if "fix" not in due or ticks_diff(due["fix"], soon) > 0:
            due["fix"] = soon
    if upload_key is None:
        due.pop("upload", None)
        upload(c, now, out)
    else:
        soon = c._at(now, upload_key)
        if "upload" not in due or ticks_diff(due["upload"], soon) > 0:
            due["upload"] = soon
    if mode == "moving":
        if "gnss_lost" not in due and not c._gnss_lost_raised:
            due["gnss_lost"] = c._at(now, "gnss_lost_s")
    else:
        due.pop("gnss_lost", None)


def on_fix(c, fix, now, out):
    """A GNSS fix dict (CONTRACTS.md)."""
    utc = fix.get("fix_time_ms")
    if isinstance(utc, int) and utc > 0:
        c._utc_ms, c._utc_ticks = utc, now
    previous = c.last_fix
    c.last_fix = fix
    c._last_fix_at = now
    c._fix_fails = 0
    c._gnss_lost_raised = False
    if not c._want_fix:
        return                                   # GNSS tracking between wanted fixes
    c._want_fix = False
    c._due.pop("acquire", None)
    # Moving: this fix's speed, or its distance from the one before (equirectangular; 1e-7
    # degree of latitude is 0.0111 m; integer maths only, so the VM and CPython agree
    # exactly); three still fixes in a row end it.
    was_moving = c.moving
    moved = as_int(fix.get("speed_cmps")) >= c.cfg["moving_speed_cmps"]
    if not moved and previous is not None:
        dlat = as_int(fix.get("lat_e7")) - as_int(previous.get("lat_e7"))
        dlon = as_int(fix.get("lon_e7")) - as_int(previous.get("lon_e7"))
        lat_deg = abs(as_int(previous.get("lat_e7"))) // 10000000
        # cos(latitude) in 1/1024 steps, by 10-degree band (plenty for a 50 m threshold).
        cos_1024 = _COS_1024[min(lat_deg // 10, 8)]
        dy = dlat * 1113 // 10000                       # decimetres
        dx = dlon * 1113 * cos_1024 // 10240000
        limit = c.cfg["moving_displacement_m"] * 10
        moved = dx * dx + dy * dy >= limit * limit
    if moved:
        c.moving = True
        c._still_fixes = 0
    elif c.moving:
        c._still_fixes += 1
        if c._still_fixes >= _STILL_FIXES_TO_STOP:
            c.moving = False
            c._still_fixes = 0
    if c.moving:                              # moving without a fix for this long
        c._due["gnss_lost"] = c._at(now, "gnss_lost_s")
    mode = cadence_mode(c)
    fix_key, upload_key = CADENCE[mode]
    routine = fix_key is not None
    if routine or c._send_next_fix:
        c._batch.append(fix)
        if upload_key is None or c._send_next_fix or len(c._batch) >= _MAX_FIXES:
            upload(c, now, out)
    c._send_next_fix = False
    if was_moving != c.moving:
        out.append(("log", "moving" if c.moving else "stationary"))
        replan(c, now, out)
        mode = cadence_mode(c)
        fix_key = CADENCE[mode][0]
    if fix_key is None:
        gnss(c, 0, out)
        c._due.pop("fix", None)
        return
    c._due["fix"] = c._at(now, fix_key)
    if c.cfg[fix_key] > c.cfg["gnss_keep_on_s"]:
        gnss(c, 0, out)


def backoff_s(c):
    """The gap after the last failed acquisition (0: not backing off)."""
    fails = c._fix_fails
    if not fails:
        return 0
    gap = _BACKOFF_FIRST_S
    for _ in range(fails - 1):
        gap *= _BACKOFF_GROWTH
        if gap >= _BACKOFF_MAX_S:
            return _BACKOFF_MAX_S
    return gap


def on_timer(c, name, now, out):
    """This module's timers: fix, acquire, gnss_lost, upload and locate_end."""
    due = c._due
    fix_key, upload_key = CADENCE[cadence_mode(c)]
    if name == "fix":
        if fix_key is None and not c._send_next_fix:
            return
        if not c._want_fix:
            c._want_fix = True
            # How long one acquisition may take before NO_FIX.
            attempt_s = c.cfg["gnss_timeout_s"]
            if (not full_effort(c) and c._last_fix_at is not None
                    and ticks_diff(now, c._last_fix_at) < _HOT_S * 1000):
                attempt_s = min(attempt_s, _HOT_ATTEMPT_S)
            due["acquire"] = ticks_add(now, attempt_s * 1000)
        gnss(c, 1, out)
    elif name == "acquire":
        # No fix within gnss_timeout_s: report NO_FIX with the last fix and its age.
        fields = {"send_time_ms": c.utc_ms(now), "age_s": fix_age_s(c, now),
                  "last_fix": known_fix(c, now)}
        c._send("NO_FIX", fields, _STORE_EVIDENCE, now, out)
        c._send_next_fix = False
        if full_effort(c):
            due["acquire"] = c._at(now, "gnss_timeout_s")   # keep trying: the centre needs it
            return
        c._want_fix = False
        gnss(c, 0, out)
        c._fix_fails += 1
        wait_s = backoff_s(c)
        if fix_key is not None:
            wait_s = max(wait_s, c.cfg[fix_key])
        due["fix"] = ticks_add(now, wait_s * 1000)
        out.append(("log", "no fix: next try in %d s" % wait_s))
    elif name == "gnss_lost":
        if c.moving and not c._gnss_lost_raised:
            c._gnss_lost_raised = True
            from firmware import alarm  # alarm imports this module: import when needed
            alarm.raise_alarm(c, _ALARM_GNSS_LOST, _STATE_RAISED, 0, now, out)
    elif name == "upload":
        upload(c, now, out)
        if upload_key is not None:
            due["upload"] = c._at(now, upload_key)
    elif c._locating:                                  # locate_end
        c._locating = False
        out.append(("log", "locate tracking ended"))
        replan(c, now, out)


# cos(latitude) * 1024 at 0, 10, ... 80 degrees (on_fix).
_COS_1024 = (1024, 1008, 962, 887, 784, 658, 512, 350, 178)
