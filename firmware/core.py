"""The device core: every decision the victim device makes, and no I/O (DESIGN decision 1).

    core = Core(config, state)          # config: firmware.config dict; state: snapshot() or None
    actions = core.handle(event, now)   # now: a ticks_ms value (wraps at 2**30, ESP32 port)
    deadline = core.next_deadline()     # ticks value: call handle(("tick",), t) by then
    mode, sleep_ms = core.sleep_plan(now)
    state = core.sleep_snapshot(now)    # before deep sleep: snapshot() + the "deep" resume

The core imports nothing from machine, time, esp32 or bluetooth; the superloop (app.py)
turns hardware into events and actions into hardware. Time is only ever compared with
ticks_diff, so it survives the tick wrap. State that must survive a reset or deep sleep is
`snapshot()` (no tick values in it: ticks restart at boot).

Deep sleep is a reset, but not a reboot for the device's behaviour. Before deep sleep the
app saves `sleep_snapshot(now)` in RTC memory with the RTC time; at the wake it passes the
snapshot back as the state, with state["deep"]["slept_ms"] = RTC now - RTC at sleep (the
RTC counts through deep sleep; ticks do not). The boot then resumes instead of starting
over: each timer falls due at its remaining ms minus the time slept (an overdue one at
once), so the heartbeat, fix and self-test keep their cadence however the wake came
(timer, or a button mid-sleep); UTC, the fix age, uptime, motion, the no-contact state and
the last battery sample carry on too. A resume sends no HELLO. SPEC 6.2 sends HELLO per
boot so that the centre learns of a reset (reset cause, boot count, schema, config version)
and answers TIME_SYNC; after a resume nothing it would learn has changed, UTC is carried,
and a HELLO with its TIME_SYNC downlink at every wake (every few minutes) would cost more
than the heartbeats deep sleep is there to save. A deep-sleep wake without a valid RTC
snapshot is a real boot: HELLO with reset cause 4, timers from now.

Events (tuples, kind first):
    ("boot", hello)                 first event after a reset; hello = HELLO fields known to
                                    the board (fw version, schema hash, reset cause, boots);
                                    not sent when the state resumes a deep sleep
    ("tick",)                       a wake: the link UART has been drained, timers run
    ("button", pressed)             raw panic button level change, 1 pressed / 0 released
    ("fix", fix)                    a GNSS fix dict (CONTRACTS.md)
    ("battery", mv, pct, charging)  a battery sample (answer to the sample_battery action)
    ("rx", name, fields, counter, flags)   an authenticated downlink frame
    ("rx_duplicate", counter, flags)       an authentic downlink seen before: our ACK was
                                    lost, so ack it again, but do not act on it twice
    ("queue_depth", n)              records pending in the flash queue
    ("evicted", n)                  the queue evicted n routine records to make room

Actions (tuples, kind first):
    ("send", name, fields, flags, counter, store)   seal with exactly this counter, write to
                                    the link; store 0 = not kept, 1 = evidence, 2 = alarm
                                    (append (counter, store == 2, frame) to the flash queue)
    ("resend", counter)             retransmit the stored record with this counter unchanged
    ("flush", max_n, below, skip)   resend up to max_n queued records oldest-first, counters
                                    < below and not in skip, re-sealed with FLAG_HISTORIC
    ("acked", counters)             remove these counters from the flash queue
    ("gnss", on)                    power the GNSS (1) or cut it (0)
    ("haptic", pattern)             play a named haptic pattern (outputs.HAPTIC)
    ("led", pattern)                show a named LED pattern (outputs.LED)
    ("sample_battery",)             read the battery, feed back a ("battery", ...) event
    ("persist", snapshot)           save the snapshot (flash + RTC memory)
    ("save_config", version, cfg)   save an applied CONFIG
    ("reboot",)                     persist first, then reset
    ("log", text)                   one short log line
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import config as _config

# --- device time: ticks of the ESP32 port, wrapping at 2**30 ------------------------------
_TICKS_PERIOD = const(0x40000000)
_TICKS_MAX = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)


def ticks_add(ticks, delta_ms):
    return (ticks + delta_ms) & _TICKS_MAX


def ticks_diff(a, b):
    """a - b in ms, for a and b less than 2**29 ms (6.2 days) apart, as time.ticks_diff."""
    return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


# --- protocol constants (equal to protocol.messages; a test checks) ------------------------
FLAG_HISTORIC = const(2)
STORE_NONE = const(0)
STORE_EVIDENCE = const(1)
STORE_ALARM = const(2)

ALARM_PANIC = const(1)
ALARM_BATTERY_20 = const(2)
ALARM_BATTERY_10 = const(3)
ALARM_BATTERY_5 = const(4)
ALARM_GNSS_LOST = const(5)
STATE_RAISED = const(1)
STATE_CLEARED = const(3)
EVENT_CHARGER_ON = const(1)
EVENT_CHARGER_OFF = const(2)
EVENT_SELF_TEST = const(3)
EVENT_COMMS_RESTORED = const(4)
EVENT_QUEUE_EVICTED = const(5)
STATUS_ALARM_ACTIVE = const(1)
STATUS_MOVING = const(2)
STATUS_NO_CONTACT = const(4)
STATUS_GNSS_ON = const(8)
STATUS_LOW_POWER = const(16)
STATUS_PROXIMITY = const(32)
SOURCE_LAST_KNOWN = const(2)
NEVER_AGE_S = const(0xFFFFFFFF)
MAX_FIXES = const(7)

# Self-test result bits (EVENT self_test value; 0 = all good).
SELF_TEST_NO_FIX_24H = const(1)
SELF_TEST_NO_CONTACT = const(2)
SELF_TEST_NO_BATTERY = const(4)
SELF_TEST_LOW_POWER = const(8)

# --- rules ---------------------------------------------------------------------------------
# Alarm retransmission: after the first send, resend at these offsets (ms), then every
# _RETRY_EVERY_MS, until a transport ACK or an OPERATOR_ACK covers the frame's counter.
_RETRY_AT_MS = (1000, 2000, 5000, 10000, 30000)
_RETRY_EVERY_MS = const(30000)
# At most this many alarm frames are retried from RAM; older ones stay in the flash queue
# and go out with the backlog (they are never evicted there).
_MAX_ALARM_TX = const(8)

# Battery alarms: (charge %, alarm kind, latch bit), most severe last. An alarm is raised
# once when the charge falls to its threshold while not charging; it re-arms when the charge
# is _BATTERY_REARM_PCT above the threshold or the charger is connected.
_BATTERY_ALARMS = ((20, ALARM_BATTERY_20, 1), (10, ALARM_BATTERY_10, 2),
                   (5, ALARM_BATTERY_5, 4))
_BATTERY_REARM_PCT = const(3)

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
_CADENCE = {
    "panic": ("panic_fix_s", "panic_upload_s"),
    "proximity": ("proximity_fix_s", None),
    "locate": ("proximity_fix_s", None),
    "low_power": (None, None),
    "moving": ("moving_fix_s", "moving_upload_s"),
    "stationary": ("heartbeat_s", None),
}
_STILL_FIXES_TO_STOP = const(3)
# Modes in which the centre may need to reach the wearer within seconds (a PROXIMITY warning
# follows a pre-alert): the device wakes every poll_ms to drain the link UART.
_TRACKING = ("panic", "proximity", "locate")

# Haptic feedback to the wearer per PROXIMITY level (a rise in level only).
_PROXIMITY_HAPTIC = {2: "proximity_warning", 3: "proximity_alarm"}
# COMMAND vibrate arg -> pattern.
VIBRATE_PATTERNS = ("confirm", "operator_ack", "proximity_warning", "proximity_alarm",
                    "locate")

# Timers, in the order they run when several are due at once.
_TIMERS = ("press", "listen", "battery", "no_contact", "proximity_end", "locate_end",
           "panic_track",
           "acquire", "fix", "gnss_lost", "upload", "heartbeat", "self_test")


# Ages of past ticks (last fix, contact) carried over deep sleep are capped here (3.1 days):
# older is as good as "long ago", and ticks_diff stays exact.
_AGE_MAX_MS = const(0x10000000)


def _int(value):
    return value if isinstance(value, int) else 0


class Core:
    def __init__(self, config, state=None):
        self.cfg = config
        st = state or {}
        # persisted (snapshot)
        self.counter = st.get("counter", 1)
        self.next_alarm_id = st.get("next_alarm_id", 1)
        self.panic_id = st.get("panic_id", 0)              # 0: no panic alarm active
        self.panic_raised_utc = st.get("panic_utc", 0)
        self.panic_operator_acked = st.get("panic_op_acked", 0)
        self.battery_latch = st.get("battery_latch", 0)
        self.last_fix = st.get("last_fix")
        self.proximity = st.get("proximity", 0)
        self.config_version = st.get("config_version", 0)
        # alarm frames awaiting a transport ACK: [counter, alarm_id, retry index, due ticks]
        # (due None: resend at the next run of the timers, e.g. right after boot)
        self._alarm_tx = [[c, a, 0, None] for c, a in st.get("alarm_tx", ())]
        # a deep-sleep wake: what sleep_snapshot() carried, plus slept_ms (used once, at boot)
        deep = st.get("deep")
        self._resume_from = deep if isinstance(deep, dict) else None
        # volatile
        self.booted = False
        self.now = 0
        self._due = {}
        self._boot_at = 0
        self._uptime_base_ms = 0                   # uptime carried over deep sleeps
        self._pressed = 0
        self._press_at = 0
        self._release_at = None
        self._press_raised = False
        self.gnss_on = 0
        self._want_fix = False
        self._send_next_fix = False
        self._last_fix_at = None                  # ticks of the last accepted fix
        self._batch = []
        self.moving = False
        self._still_fixes = 0
        self._gnss_lost_raised = False
        self.battery = None                        # (mv, pct, charging)
        self.low_power = False
        self.queue_depth = 0
        self._last_contact = 0
        self.no_contact = False
        self._recent = []                          # [(counter, sent ticks)] evidence sends
        self._last_flush = None
        self._sent_n = 0
        self._acked_n = 0
        self._utc_ms = None                        # UTC at ticks _utc_ticks, once known
        self._utc_ticks = 0
        self._panic_slow = False
        self._locating = False                     # COMMAND locate_now tracking (volatile)

    # --- public -----------------------------------------------------------------------------
    def handle(self, event, now):
        """Apply one event at ticks `now`; return the actions to carry out, in order."""
        out = []
        self.now = now
        if self._utc_ms is not None:               # rebase: UTC never drifts past a wrap
            self._utc_ms += ticks_diff(now, self._utc_ticks)
            self._utc_ticks = now
        kind = event[0]
        if not self.booted and kind != "boot":
            self._boot(None, now, out)
        handler = _EVENTS.get(kind)
        if handler is None:
            out.append(("log", "core: unknown event %r" % (kind,)))
        else:
            handler(self, event, now, out)
        self._run_timers(now, out)
        return out

    def next_deadline(self):
        """The ticks value by which handle(("tick",), t) must run, or None before boot."""
        if not self.booted:
            return None
        now = self.now
        best = None
        best_diff = 0
        for name in self._due:
            d = ticks_diff(self._due[name], now)
            if best is None or d < best_diff:
                best, best_diff = self._due[name], d
        for entry in self._alarm_tx:
            due = now if entry[3] is None else entry[3]
            d = ticks_diff(due, now)
            if best is None or d < best_diff:
                best, best_diff = due, d
        if self._fast_wake():
            d = self.cfg["poll_ms"]
            if best is None or d < best_diff:
                best, best_diff = ticks_add(now, d), d
        return best

    def _fast_wake(self):
        """Wake every poll_ms: the GNSS streams NMEA at 1 Hz into a UART buffer that holds
        a few seconds. Without a wake line, also while tracking: a downlink must reach the
        wearer within seconds. A light-sleep wake costs ~0.5 ms of CPU (~0.02 mAs)."""
        if self.gnss_on:
            return True
        return not self.cfg["wake_line"] and self.mode() in _TRACKING

    def sleep_plan(self, now):
        """(mode, sleep_ms): "idle" = stay awake (short waits, button held), "light" = light
        sleep, "deep" = deep sleep (a reset on wake; only when the reachability bound and
        deep_sleep_min_s allow it and nothing needs RAM-fast reaction)."""
        deadline = self.next_deadline()
        sleep_ms = 0 if deadline is None else max(0, ticks_diff(deadline, now))
        if self._pressed:
            return "idle", min(sleep_ms, 20)
        deep_min_ms = self.cfg["deep_sleep_min_s"] * 1000
        if (deep_min_ms and not self._fast_wake() and not self._alarm_tx
                and not self._batch and self.booted):
            # Every boot samples the battery, so its timer does not hold deep sleep back.
            deep_ms = None
            for name in self._due:
                if name != "battery":
                    d = max(0, ticks_diff(self._due[name], now))
                    if deep_ms is None or d < deep_ms:
                        deep_ms = d
            if deep_ms is not None and deep_ms >= deep_min_ms:
                return "deep", deep_ms
        return "light", sleep_ms

    def snapshot(self):
        """What must survive a reset: small, no ticks values."""
        return {
            "counter": self.counter,
            "next_alarm_id": self.next_alarm_id,
            "panic_id": self.panic_id,
            "panic_utc": self.panic_raised_utc,
            "panic_op_acked": self.panic_operator_acked,
            "battery_latch": self.battery_latch,
            "last_fix": self.last_fix,
            "proximity": self.proximity,
            "config_version": self.config_version,
            "alarm_tx": [(e[0], e[1]) for e in self._alarm_tx],
        }

    def sleep_snapshot(self, now):
        """snapshot() plus "deep": what a wake from deep sleep at ticks `now` needs to carry
        on (module docstring). Ticks do not survive, so times are kept as ms from `now`:
        "timers" {name: ms until due}, the ages of the last fix and contact, the uptime."""
        snap = self.snapshot()
        timers = {}
        for name in self._due:
            timers[name] = max(0, ticks_diff(self._due[name], now))
        deep = {"timers": timers, "uptime_ms": self._uptime_ms(now),
                "contact_age_ms": max(0, ticks_diff(now, self._last_contact)),
                "moving": self.moving, "still": self._still_fixes,
                "gnss_lost": self._gnss_lost_raised, "no_contact": self.no_contact,
                "low_power": self.low_power, "battery": self.battery,
                "sent": self._sent_n, "acked": self._acked_n}
        if self._utc_ms is not None:
            deep["utc_ms"] = self.utc_ms(now)
        if self._last_fix_at is not None:
            deep["fix_age_ms"] = max(0, ticks_diff(now, self._last_fix_at))
        snap["deep"] = deep
        return snap

    def mode(self):
        if self.panic_id and not self._panic_slow:
            return "panic"
        if self.proximity or self.panic_id:
            return "proximity"
        if self._locating:
            return "locate"
        if self.low_power:
            return "low_power"
        if self.moving:
            return "moving"
        return "stationary"

    def utc_ms(self, now):
        """UTC ms at ticks `now`, or 0 while unknown (no fix and no TIME_SYNC yet)."""
        if self._utc_ms is None:
            return 0
        return self._utc_ms + ticks_diff(now, self._utc_ticks)

    def status(self):
        bits = 0
        if self.panic_id:
            bits |= STATUS_ALARM_ACTIVE
        if self.moving:
            bits |= STATUS_MOVING
        if self.no_contact:
            bits |= STATUS_NO_CONTACT
        if self.gnss_on:
            bits |= STATUS_GNSS_ON
        if self.low_power:
            bits |= STATUS_LOW_POWER
        if self.proximity:
            bits |= STATUS_PROXIMITY
        return bits

    # --- helpers ----------------------------------------------------------------------------
    def _at(self, now, seconds_key):
        return ticks_add(now, self.cfg[seconds_key] * 1000)

    def _send(self, name, fields, store, now, out, flags=0):
        counter = self.counter
        self.counter = counter + 1
        out.append(("send", name, fields, flags, counter, store))
        if name != "ACK" and not self.no_contact and "no_contact" not in self._due:
            self._due["no_contact"] = self._at(now, "no_contact_s")   # an ack is owed now
        if store:
            recent = self._recent
            # Bounded: only sends younger than ack_wait_ms matter (the flush floor).
            while recent and (len(recent) >= 16
                              or ticks_diff(now, recent[0][1]) >= self.cfg["ack_wait_ms"]):
                recent.pop(0)
            recent.append((counter, now))
            self._sent_n += 1
        return counter

    def _persist(self, out):
        out.append(("persist", self.snapshot()))

    def _gnss(self, on, out):
        if on != self.gnss_on:
            self.gnss_on = on
            out.append(("gnss", on))

    def _known_fix(self, now):
        """The last fix for an ALARM/NO_FIX: as is when fresh, else marked last-known."""
        fix = self.last_fix
        if fix is None:
            return None
        if self._last_fix_at is not None and ticks_diff(now, self._last_fix_at) < 30000:
            return fix
        fix = dict(fix)
        fix["source"] = SOURCE_LAST_KNOWN
        return fix

    def _fix_age_s(self, now):
        if self._last_fix_at is not None:
            return ticks_diff(now, self._last_fix_at) // 1000
        if self.last_fix is not None and self._utc_ms is not None:
            age = (self.utc_ms(now) - _int(self.last_fix.get("fix_time_ms"))) // 1000
            return min(max(age, 0), NEVER_AGE_S - 1)
        return NEVER_AGE_S

    def _raise_alarm(self, kind, state, alarm_id, now, out):
        if not alarm_id:
            alarm_id = self.next_alarm_id
            self.next_alarm_id = alarm_id % 0xFFFF + 1
        raised = self.panic_raised_utc if alarm_id == self.panic_id else self.utc_ms(now)
        fields = {"alarm_id": alarm_id, "kind": kind, "state": state,
                  "raised_time_ms": raised, "fix": self._known_fix(now)}
        counter = self._send("ALARM", fields, STORE_ALARM, now, out)
        self._alarm_tx.append([counter, alarm_id, 0, ticks_add(now, _RETRY_AT_MS[0])])
        if len(self._alarm_tx) > _MAX_ALARM_TX:
            self._alarm_tx.pop(0)
        self._persist(out)
        out.append(("log", "alarm %d kind %d state %d counter %d" % (alarm_id, kind, state,
                                                                    counter)))
        return alarm_id

    def _raise_panic(self, now, out):
        if self.panic_id:
            out.append(("log", "panic: alarm %d already active" % self.panic_id))
            return
        self.panic_id = self.next_alarm_id
        self.next_alarm_id = self.panic_id % 0xFFFF + 1
        self.panic_raised_utc = self.utc_ms(now)
        self.panic_operator_acked = 0
        self._panic_slow = False
        self._due["panic_track"] = self._at(now, "panic_track_s")
        out.append(("haptic", "panic_confirm"))
        self._raise_alarm(ALARM_PANIC, STATE_RAISED, self.panic_id, now, out)
        self._replan(now, out)

    def _upload(self, now, out):
        if self._batch:
            fields = {"send_time_ms": self.utc_ms(now), "fixes": self._batch[:MAX_FIXES]}
            self._batch = self._batch[MAX_FIXES:]
            self._send("POSITION", fields, STORE_EVIDENCE, now, out)

    def _replan(self, now, out):
        """Re-derive the fix and upload timers after a change of mode."""
        mode = self.mode()
        fix_key, upload_key = _CADENCE[mode]
        due = self._due
        if fix_key is None:
            if not self._send_next_fix:
                due.pop("fix", None)
                due.pop("acquire", None)
                self._want_fix = False
                self._gnss(0, out)
        elif not self._want_fix:
            soon = self._at(now, fix_key)
            if mode in _TRACKING:
                soon = now
            if "fix" not in due or ticks_diff(due["fix"], soon) > 0:
                due["fix"] = soon
        if upload_key is None:
            due.pop("upload", None)
            self._upload(now, out)
        else:
            soon = self._at(now, upload_key)
            if "upload" not in due or ticks_diff(due["upload"], soon) > 0:
                due["upload"] = soon
        if mode == "moving":
            if "gnss_lost" not in due and not self._gnss_lost_raised:
                due["gnss_lost"] = self._at(now, "gnss_lost_s")
        else:
            due.pop("gnss_lost", None)

    def _contact(self, now, out):
        self._last_contact = now
        # Silence is only "no contact" while an ack is owed: a low-power device that sends a
        # heartbeat an hour apart has not lost the centre in between. The timer is armed again
        # by the next frame that asks for an ack (_send).
        self._due.pop("no_contact", None)
        if self.no_contact:
            self.no_contact = False
            out.append(("led", "off"))
            self._send("EVENT", {"kind": EVENT_COMMS_RESTORED, "time_ms": self.utc_ms(now),
                                 "value": 0}, STORE_EVIDENCE, now, out)

    def _self_test(self, now, out):
        value = 0
        if self._last_fix_at is None or ticks_diff(now, self._last_fix_at) > 86400000:
            value |= SELF_TEST_NO_FIX_24H
        if self.no_contact:
            value |= SELF_TEST_NO_CONTACT
        if self.battery is None:
            value |= SELF_TEST_NO_BATTERY
        if self.low_power:
            value |= SELF_TEST_LOW_POWER
        self._send("EVENT", {"kind": EVENT_SELF_TEST, "time_ms": self.utc_ms(now),
                             "value": value}, STORE_EVIDENCE, now, out)

    def _flush_below(self, now):
        wait = self.cfg["ack_wait_ms"]
        recent = [r for r in self._recent if ticks_diff(now, r[1]) < wait]
        self._recent = recent
        return recent[0][0] if recent else self.counter

    def _boot(self, hello, now, out):
        self.booted = True
        self._boot_at = now
        self._last_contact = now
        due = self._due
        resume = self._resume_from
        self._resume_from = None
        if resume is not None:
            self._resume(resume, now, out)           # a deep-sleep wake: no HELLO
        else:
            self._plan_listen(now)
            due["heartbeat"] = self._at(now, "heartbeat_s")
            due["self_test"] = self._at(now, "self_test_s")
            due["no_contact"] = self._at(now, "no_contact_s")
            if self.proximity:
                due["proximity_end"] = self._at(now, "proximity_hold_s")
            if self.panic_id:
                due["panic_track"] = self._at(now, "panic_track_s")
            if hello is not None:
                fields = dict(hello)
                fields["config_version"] = self.config_version
                self._send("HELLO", fields, STORE_NONE, now, out)
            due["fix"] = now                         # where are we, are we moving?
        due["battery"] = now           # every boot samples: the charger may have changed
        self._replan(now, out)
        if self._alarm_tx:
            out.append(("log", "boot: %d alarm frame(s) awaiting ack" % len(self._alarm_tx)))

    def _resume(self, deep, now, out):
        """Carry on after deep sleep from sleep_snapshot()'s "deep" and the time slept."""
        slept_ms = max(0, _int(deep.get("slept_ms")))
        timers = deep.get("timers")
        if isinstance(timers, dict):
            for name in timers:
                if name in _TIMER_HANDLERS:
                    left_ms = max(0, _int(timers[name]) - slept_ms)   # overdue: at once
                    self._due[name] = ticks_add(now, min(left_ms, _TICKS_HALF - 1))
        utc = deep.get("utc_ms")
        if isinstance(utc, int) and utc > 0:
            self._utc_ms, self._utc_ticks = utc + slept_ms, now
        self._uptime_base_ms = _int(deep.get("uptime_ms")) + slept_ms
        self._last_contact = _ago(now, _int(deep.get("contact_age_ms")) + slept_ms)
        fix_age = deep.get("fix_age_ms")
        if isinstance(fix_age, int):
            self._last_fix_at = _ago(now, fix_age + slept_ms)
        self.moving = bool(deep.get("moving"))
        self._still_fixes = _int(deep.get("still"))
        self._gnss_lost_raised = bool(deep.get("gnss_lost"))
        self.low_power = bool(deep.get("low_power"))
        battery = deep.get("battery")
        if isinstance(battery, (list, tuple)) and len(battery) == 3:
            self.battery = (_int(battery[0]), _int(battery[1]), _int(battery[2]))
        self._sent_n, self._acked_n = _int(deep.get("sent")), _int(deep.get("acked"))
        if deep.get("no_contact"):
            self.no_contact = True
            out.append(("led", "no_contact"))          # the LED state did not survive
        out.append(("log", "resume after %d s of deep sleep" % (slept_ms // 1000)))

    def _plan_listen(self, now):
        """A board without a wake line listens by itself: a window before each
        reachability bound runs out. With the wake line (docs/LINK.md) the peer wakes it."""
        if self.cfg["wake_line"]:
            self._due.pop("listen", None)
            return
        self._due["listen"] = ticks_add(now, max(1000, self.cfg["reachability_s"] * 1000
                                                 - self.cfg["listen_margin_ms"]))

    # --- timers -----------------------------------------------------------------------------
    def _run_timers(self, now, out):
        due = self._due
        for name in _TIMERS:
            t = due.get(name)
            if t is not None and ticks_diff(now, t) >= 0:
                del due[name]
                _TIMER_HANDLERS[name](self, now, out)
        for entry in self._alarm_tx:
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

    def _t_press(self, now, out):
        if self._pressed and not self._press_raised:
            held = ticks_diff(now, self._press_at)
            if held >= self.cfg["long_press_ms"]:
                self._press_raised = True
                self._raise_panic(now, out)
            else:
                self._due["press"] = ticks_add(self._press_at, self.cfg["long_press_ms"])

    def _t_listen(self, now, out):
        self._plan_listen(now)

    def _t_battery(self, now, out):
        self._due["battery"] = self._at(now, "battery_sample_s")
        out.append(("sample_battery",))

    def _t_no_contact(self, now, out):
        if not self.no_contact:
            self.no_contact = True
            out.append(("led", "no_contact"))
            out.append(("log", "no ack for %d s" % (ticks_diff(now, self._last_contact) // 1000)))

    def _t_proximity_end(self, now, out):
        if self.proximity:
            out.append(("log", "proximity lapsed without refresh"))
            self.proximity = 0
            self._persist(out)
            self._replan(now, out)

    def _t_locate_end(self, now, out):
        if self._locating:
            self._locating = False
            out.append(("log", "locate tracking ended"))
            self._replan(now, out)

    def _t_panic_track(self, now, out):
        if self.panic_id and not self._panic_slow:
            self._panic_slow = True
            self._replan(now, out)

    def _t_fix(self, now, out):
        fix_key = _CADENCE[self.mode()][0]
        if fix_key is None and not self._send_next_fix:
            return
        if not self._want_fix:
            self._want_fix = True
            self._due["acquire"] = self._at(now, "gnss_timeout_s")
        self._gnss(1, out)

    def _t_acquire(self, now, out):
        # No fix within gnss_timeout_s: report NO_FIX with the last fix and its age.
        fields = {"send_time_ms": self.utc_ms(now), "age_s": self._fix_age_s(now),
                  "last_fix": self._known_fix(now)}
        self._send("NO_FIX", fields, STORE_EVIDENCE, now, out)
        self._send_next_fix = False
        mode = self.mode()
        if mode in _TRACKING or mode == "moving":
            self._due["acquire"] = self._at(now, "gnss_timeout_s")   # keep trying
        else:
            self._want_fix = False
            self._gnss(0, out)
            fix_key = _CADENCE[mode][0]
            if fix_key is not None:
                self._due["fix"] = self._at(now, fix_key)

    def _t_gnss_lost(self, now, out):
        if self.moving and not self._gnss_lost_raised:
            self._gnss_lost_raised = True
            self._raise_alarm(ALARM_GNSS_LOST, STATE_RAISED, 0, now, out)

    def _t_upload(self, now, out):
        upload_key = _CADENCE[self.mode()][1]
        self._upload(now, out)
        if upload_key is not None:
            self._due["upload"] = self._at(now, upload_key)

    def _t_heartbeat(self, now, out):
        key = "low_battery_heartbeat_s" if self.low_power else "heartbeat_s"
        self._due["heartbeat"] = self._at(now, key)
        mv, pct, charging = self.battery or (0, 0, 0)
        sent, acked = self._sent_n, self._acked_n
        quality = 100 if sent == 0 else min(100, acked * 100 // sent)
        self._sent_n, self._acked_n = sent // 2, acked // 2      # decay: recent links count
        fields = {"battery_mv": mv, "battery_pct": pct, "charging": charging,
                  "link_quality": quality, "queue_depth": min(self.queue_depth, 0xFFFF),
                  "uptime_s": self._uptime_s(now), "status": self.status()}
        self._send("HEARTBEAT", fields, STORE_NONE, now, out)
        # A fix due soon rides this wake and this radio connection: a boot and a modem
        # connection each cost more than a fix taken a little early.
        fix_due = self._due.get("fix")
        if (fix_due is not None and self.mode() == "stationary"
                and ticks_diff(fix_due, now) < self.cfg["deep_sleep_min_s"] * 1000):
            self._due["fix"] = now

    def _uptime_ms(self, now):
        return self._uptime_base_ms + max(0, ticks_diff(now, self._boot_at))

    def _uptime_s(self, now):
        return self._uptime_ms(now) // 1000

    def _t_self_test(self, now, out):
        self._due["self_test"] = self._at(now, "self_test_s")
        self._self_test(now, out)

    # --- events -----------------------------------------------------------------------------
    def _e_boot(self, event, now, out):
        if self.booted:
            out.append(("log", "core: second boot event ignored"))
            return
        self._boot(event[1], now, out)

    def _e_tick(self, event, now, out):
        self._plan_listen(now)

    def _e_button(self, event, now, out):
        pressed = 1 if event[1] else 0
        if pressed == self._pressed:
            return
        self._pressed = pressed
        if pressed:
            # A release shorter than debounce_ms was contact bounce: the press goes on.
            bounced = (self._release_at is not None
                       and ticks_diff(now, self._release_at) < self.cfg["debounce_ms"])
            if not bounced:
                self._press_at = now
                self._press_raised = False
            self._due["press"] = ticks_add(self._press_at, self.cfg["long_press_ms"])
        else:
            self._release_at = now
            if not self._press_raised:
                # The hold may have reached the threshold between two wakes.
                if ticks_diff(now, self._press_at) >= self.cfg["long_press_ms"]:
                    self._press_raised = True
                    self._raise_panic(now, out)
            self._due.pop("press", None)

    def _e_fix(self, event, now, out):
        fix = event[1]
        utc = fix.get("fix_time_ms")
        if isinstance(utc, int) and utc > 0:
            self._utc_ms, self._utc_ticks = utc, now
        previous = self.last_fix
        self.last_fix = fix
        self._last_fix_at = now
        if self._gnss_lost_raised:
            self._gnss_lost_raised = False
        if not self._want_fix:
            return                                   # GNSS tracking between wanted fixes
        self._want_fix = False
        self._due.pop("acquire", None)
        was_moving = self.moving
        self._update_motion(previous, fix)
        if self.moving:                              # moving without a fix for this long
            self._due["gnss_lost"] = self._at(now, "gnss_lost_s")
        mode = self.mode()
        fix_key, upload_key = _CADENCE[mode]
        routine = fix_key is not None
        if routine or self._send_next_fix:
            self._batch.append(fix)
            if upload_key is None or self._send_next_fix or len(self._batch) >= MAX_FIXES:
                self._upload(now, out)
        self._send_next_fix = False
        if was_moving != self.moving:
            out.append(("log", "moving" if self.moving else "stationary"))
            self._replan(now, out)
            mode = self.mode()
            fix_key = _CADENCE[mode][0]
        if fix_key is None:
            self._gnss(0, out)
            self._due.pop("fix", None)
            return
        self._due["fix"] = self._at(now, fix_key)
        if self.cfg[fix_key] > self.cfg["gnss_keep_on_s"]:
            self._gnss(0, out)

    def _update_motion(self, previous, fix):
        speed = _int(fix.get("speed_cmps"))
        moved = speed >= self.cfg["moving_speed_cmps"]
        if not moved and previous is not None:
            moved = _far(previous, fix, self.cfg["moving_displacement_m"])
        if moved:
            self.moving = True
            self._still_fixes = 0
        elif self.moving:
            self._still_fixes += 1
            if self._still_fixes >= _STILL_FIXES_TO_STOP:
                self.moving = False
                self._still_fixes = 0

    def _e_battery(self, event, now, out):
        mv, pct, charging = _int(event[1]), _int(event[2]), 1 if event[3] else 0
        before = self.battery
        self.battery = (mv, pct, charging)
        if before is not None and before[2] != charging:
            kind = EVENT_CHARGER_ON if charging else EVENT_CHARGER_OFF
            self._send("EVENT", {"kind": kind, "time_ms": self.utc_ms(now), "value": pct},
                       STORE_EVIDENCE, now, out)
        latch = self.battery_latch
        raise_kind = 0
        for threshold, kind, bit in _BATTERY_ALARMS:
            if charging or pct >= threshold + _BATTERY_REARM_PCT:
                latch &= ~bit
            elif pct <= threshold and not latch & bit:
                latch |= bit
                raise_kind = kind                     # the most severe one crossed
        changed = latch != self.battery_latch
        self.battery_latch = latch
        if raise_kind:
            self._raise_alarm(raise_kind, STATE_RAISED, 0, now, out)
        elif changed:
            self._persist(out)
        low = not charging and pct < self.cfg["low_power_pct"]
        if low != self.low_power:
            self.low_power = low
            out.append(("log", "low power on" if low else "low power off"))
            self._replan(now, out)

    def _e_rx_duplicate(self, event, now, out):
        if event[2] & 1:   # FLAG_ACK_REQ
            self._send("ACK", {"highest": event[1], "bitmap": 0}, STORE_NONE, now, out)
        self._contact(now, out)

    def _e_rx(self, event, now, out):
        name, fields = event[1], event[2]
        if len(event) > 4 and event[4] & 1 and name != "ACK":   # FLAG_ACK_REQ
            self._send("ACK", {"highest": event[3], "bitmap": 0}, STORE_NONE, now, out)
        self._contact(now, out)
        handler = _RX.get(name)
        if handler is None:
            out.append(("log", "rx %s ignored" % name))
        else:
            handler(self, fields, now, out)

    def _e_queue_depth(self, event, now, out):
        self.queue_depth = _int(event[1])

    def _e_evicted(self, event, now, out):
        self._send("EVENT", {"kind": EVENT_QUEUE_EVICTED, "time_ms": self.utc_ms(now),
                             "value": _int(event[1])}, STORE_EVIDENCE, now, out)

    # --- downlinks --------------------------------------------------------------------------
    def _rx_ack(self, fields, now, out):
        highest = _int(fields.get("highest"))
        bitmap = _int(fields.get("bitmap"))
        acked = [highest] if highest > 0 else []
        i = 0
        while bitmap and highest - 1 - i > 0:
            if bitmap & 1:
                acked.append(highest - 1 - i)
            bitmap >>= 1
            i += 1
        if not acked:
            return
        before = len(self._alarm_tx)
        self._alarm_tx = [e for e in self._alarm_tx if e[0] not in acked]
        if len(self._alarm_tx) != before:
            self._persist(out)
        self._acked_n += len([r for r in self._recent if r[0] in acked])
        out.append(("acked", tuple(acked)))
        if self.queue_depth > 0:
            if (self._last_flush is None or ticks_diff(now, self._last_flush)
                    >= self.cfg["flush_interval_ms"]):
                self._last_flush = now
                skip = tuple(e[0] for e in self._alarm_tx)
                out.append(("flush", self.cfg["flush_max"], self._flush_below(now), skip))

    def _rx_operator_ack(self, fields, now, out):
        alarm_id = _int(fields.get("alarm_id"))
        before = len(self._alarm_tx)
        self._alarm_tx = [e for e in self._alarm_tx if e[1] != alarm_id]
        changed = len(self._alarm_tx) != before
        if alarm_id and alarm_id == self.panic_id and not self.panic_operator_acked:
            self.panic_operator_acked = 1
            out.append(("haptic", "operator_ack"))
            changed = True
        if changed:
            self._persist(out)

    def _rx_config(self, fields, now, out):
        refused = _config.apply(self.cfg, fields.get("items") or ())
        for reason in refused:
            out.append(("log", reason))
        self.config_version = _int(fields.get("config_version"))
        out.append(("save_config", self.config_version, dict(self.cfg)))
        self._persist(out)
        due = self._due
        due["heartbeat"] = self._at(now, "low_battery_heartbeat_s" if self.low_power
                                    else "heartbeat_s")
        self._plan_listen(now)
        due.pop("fix", None)
        due.pop("upload", None)
        self._replan(now, out)

    def _rx_command(self, fields, now, out):
        command, arg = _int(fields.get("command")), _int(fields.get("arg"))
        if command == 1:                                  # locate_now
            # arg 0: one fix, sent at once. arg > 0: also track for arg seconds (a fix
            # every proximity_fix_s, each sent at once), silently: no haptic, no LED. A
            # repeat extends the tracking without an extra fix.
            starting = not arg or not self._locating
            if arg:
                self._due["locate_end"] = ticks_add(now, arg * 1000)
                if not self._locating:
                    self._locating = True
                    out.append(("log", "locate tracking %d s" % arg))
            if starting:
                self._send_next_fix = True
                if not self._want_fix:
                    self._due["fix"] = now
            if arg:
                self._replan(now, out)
        elif command == 2:                                # vibrate
            pattern = VIBRATE_PATTERNS[arg] if arg < len(VIBRATE_PATTERNS) else "confirm"
            out.append(("haptic", pattern))
        elif command == 3:                                # self_test
            self._self_test(now, out)
        elif command == 4:                                # reboot
            self._persist(out)
            out.append(("reboot",))
        elif command == 5:                                # clear_alarm
            if arg and arg == self.panic_id:
                self._raise_alarm(ALARM_PANIC, STATE_CLEARED, arg, now, out)
                self.panic_id = 0
                self.panic_operator_acked = 0
                self._panic_slow = False
                self._due.pop("panic_track", None)
                self._persist(out)
                self._replan(now, out)
            else:
                out.append(("log", "clear_alarm %d: no such active alarm" % arg))
        else:
            out.append(("log", "command %d unknown" % command))

    def _rx_proximity(self, fields, now, out):
        level = _int(fields.get("level"))
        if not 0 <= level <= 3:
            out.append(("log", "proximity level %d unknown" % level))
            return
        before = self.proximity
        self.proximity = level
        if level > before and level in _PROXIMITY_HAPTIC:
            out.append(("haptic", _PROXIMITY_HAPTIC[level]))
        if level:
            self._due["proximity_end"] = self._at(now, "proximity_hold_s")
        else:
            self._due.pop("proximity_end", None)
        if level != before:
            self._persist(out)
            if bool(level) != bool(before):
                self._replan(now, out)

    def _rx_time_sync(self, fields, now, out):
        utc = _int(fields.get("utc_ms"))
        if utc > 0:
            self._utc_ms, self._utc_ticks = utc, now

    def _rx_ignore(self, fields, now, out):
        pass


def _ago(now, age_ms):
    """The ticks `age_ms` before `now`; ages beyond _AGE_MAX_MS stay there, so that
    ticks_diff (good for 2**29 ms) still reads them as old."""
    return ticks_add(now, -min(max(0, age_ms), _AGE_MAX_MS))


def _far(a, b, metres):
    """True when fixes a and b are at least `metres` apart (equirectangular; 1e-7 degree of
    latitude is 0.0111 m). Integer maths only, so the VM and CPython agree exactly."""
    dlat = _int(b.get("lat_e7")) - _int(a.get("lat_e7"))
    dlon = _int(b.get("lon_e7")) - _int(a.get("lon_e7"))
    lat_deg = abs(_int(a.get("lat_e7"))) // 10000000
    # cos(latitude) in 1/1024 steps, by 10-degree band (plenty for a 50 m threshold).
    cos_1024 = _COS_1024[min(lat_deg // 10, 8)]
    dy = dlat * 1113 // 10000                       # decimetres
    dx = dlon * 1113 * cos_1024 // 10240000
    limit = metres * 10
    return dx * dx + dy * dy >= limit * limit


_COS_1024 = (1024, 1008, 962, 887, 784, 658, 512, 350, 178)

_EVENTS = {
    "boot": Core._e_boot,
    "tick": Core._e_tick,
    "button": Core._e_button,
    "fix": Core._e_fix,
    "battery": Core._e_battery,
    "rx": Core._e_rx,
    "rx_duplicate": Core._e_rx_duplicate,
    "queue_depth": Core._e_queue_depth,
    "evicted": Core._e_evicted,
}

_RX = {
    "ACK": Core._rx_ack,
    "OPERATOR_ACK": Core._rx_operator_ack,
    "CONFIG": Core._rx_config,
    "COMMAND": Core._rx_command,
    "PROXIMITY": Core._rx_proximity,
    "TIME_SYNC": Core._rx_time_sync,
    "TEST_INJECT": Core._rx_ignore,
}

_TIMER_HANDLERS = {
    "press": Core._t_press,
    "listen": Core._t_listen,
    "battery": Core._t_battery,
    "no_contact": Core._t_no_contact,
    "proximity_end": Core._t_proximity_end,
    "locate_end": Core._t_locate_end,
    "panic_track": Core._t_panic_track,
    "acquire": Core._t_acquire,
    "fix": Core._t_fix,
    "gnss_lost": Core._t_gnss_lost,
    "upload": Core._t_upload,
    "heartbeat": Core._t_heartbeat,
    "self_test": Core._t_self_test,
}
