"""The device core: every decision the victim device makes, and no I/O (DESIGN decision 1).

This module holds the state, the dispatch (events, downlink frames, timers), listening
without a wake line and the sleep plan; each other concern is a module of functions that
take the Core first (`alarm.raise_panic(core, now, out)`): alarm.py (button, alarms),
positioning.py (GNSS cadence, fixes), power.py (heartbeat, battery, self-test), and two
imported for the event that needs them and dropped after it: orders.py (CONFIG, COMMAND but
locate_now) and pairing.py (the scheme, PROXIMITY, locate_now). clock.py has the tick
arithmetic. Protocol numbers are private consts in each module: a private const costs no
heap on MicroPython.

    core = Core(config, state)          # config: firmware.config dict; state: snapshot() or None
    actions = core.handle(event, now)   # now: a ticks_ms value (wraps at 2**30, ESP32 port)
    deadline = core.next_deadline(now)  # ticks value: call handle(("tick",), t) by then
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
                                    < below and not in skip, byte for byte as stored
    ("acked", counters)             remove these counters from the flash queue (an Acked:
                                    `in` and iteration, no list)
    ("gnss", on)                    power the GNSS (1) or cut it (0)
    ("haptic", pattern)             play a named haptic pattern (outputs.HAPTIC)
    ("led", pattern)                show a named LED pattern (outputs.LED)
    ("sample_battery",)             read the battery, feed back a ("battery", ...) event
    ("persist", snapshot)           save the snapshot (flash + RTC memory)
    ("save_config", version, items) save an applied CONFIG ({key id: value})
    ("reboot",)                     persist first, then reset
    ("log", text)                   one short log line
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import alarm, forget, positioning, power
from firmware.clock import ago, as_int, ticks_add, ticks_diff

# Protocol numbers, equal to protocol.messages (tests/test_core.py checks). Private consts
# cost no heap on MicroPython; STORE_ALARM is public for the app.
_STORE_NONE = const(0)
_STORE_EVIDENCE = const(1)
_EVENT_COMMS_RESTORED = const(4)
_EVENT_QUEUE_EVICTED = const(5)
_STATUS_ALARM_ACTIVE = const(1)
_STATUS_MOVING = const(2)
_STATUS_NO_CONTACT = const(4)
_STATUS_GNSS_ON = const(8)
_STATUS_LOW_POWER = const(16)
_STATUS_PROXIMITY = const(32)
_MODE_PAIRED = const(2)
STORE_ALARM = const(2)
# The reachability bound of a paired device without a wake line (docs/LINK.md).
_PAIRED_REACH_S = const(30)
# The furthest a timer may lie ahead: ticks_diff reads up to 2**29 - 1 ms.
_TIMER_MAX_MS = const(0x1FFFFFFF)


# Timers, in the order they run when several are due at once (Core._run_timers). Names of
# at most 10 characters are qstrs, shared by every module that uses them: no string objects.
_TIMERS = ("press", "listen", "battery", "no_contact", "prox_lapse", "locate_end",
           "panic_slow", "pairing",
           "acquire", "fix", "gnss_lost", "upload", "keepalive", "heartbeat", "self_test")


class Acked:
    """The counters an ACK covers (SPEC: `highest`, and highest - 1 - i for each bit i of
    `bitmap`), tested with `in` and walked highest first without a list: a full window is a
    65-entry list and its tuple, ~1.5 KB on the 64-bit VM at the heap's peak."""

    def __init__(self, highest, bitmap):
        self.highest = highest
        self.bitmap = bitmap

    def __contains__(self, counter):
        below = self.highest - counter
        return below == 0 or (counter > 0 and 0 < below <= 64
                              and (self.bitmap >> (below - 1)) & 1 == 1)

    def __iter__(self):
        counter = self.highest
        bitmap = self.bitmap
        while counter > 0:
            yield counter
            counter -= 1
            while bitmap and not bitmap & 1:
                bitmap >>= 1
                counter -= 1
            if not bitmap:
                return
            bitmap >>= 1


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
        # the scheme in force (1 aware, 2 paired) and the pairing [offender, from, until UTC
        # ms] or None (firmware/pairing.py)
        self.scheme = st.get("scheme", 1)
        pairing = st.get("pairing")
        self.pairing = list(pairing) if isinstance(pairing, (list, tuple)) else None
        # alarm frames awaiting a transport ACK: [counter, alarm_id, retry index, due ticks]
        # (due None: resend at the next run of the timers, e.g. right after boot)
        self._alarm_tx = []
        for counter, alarm_id in st.get("alarm_tx", ()):
            self._alarm_tx.append([counter, alarm_id, 0, None])
        # a deep-sleep wake: what sleep_snapshot() carried, plus slept_ms (used once, at boot)
        deep = st.get("deep")
        self._resume_from = deep if isinstance(deep, dict) else None
        # volatile
        self.booted = False
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
        self._last_uplink = 0                      # ticks of the last frame sent but ACKs
        self._fix_fails = 0                        # failed acquisitions in a row (backoff)
        self._locate_try_at = None                 # ticks of a locate_now try in backoff
        self.reported_interval_s = 0               # interval_s the centre last heard

    # --- public -----------------------------------------------------------------------------
    def handle(self, event, now):
        """Apply one event at ticks `now`; return the actions to carry out, in order."""
        out = []
        if self._utc_ms is not None:               # rebase: UTC never drifts past a wrap
            self._utc_ms += ticks_diff(now, self._utc_ticks)
            self._utc_ticks = now
        kind = event[0]
        if kind == "boot":
            if not self.booted:                        # the app sends one per reset
                self._boot(event[1], now, out)
        else:
            if not self.booted:
                self._boot(None, now, out)
            if kind == "tick":
                self.plan_listen(now)
            elif kind == "button":
                alarm.on_button(self, event[1], now, out)
            elif kind == "fix":
                positioning.on_fix(self, event[1], now, out)
            elif kind == "battery":
                power.on_battery(self, event, now, out)
            elif kind == "rx" or kind == "rx_duplicate":
                self._on_rx(event, now, out)
            elif kind == "queue_depth":
                self.queue_depth = as_int(event[1])
            elif kind == "evicted":
                self._send("EVENT", {"kind": _EVENT_QUEUE_EVICTED, "time_ms": self.utc_ms(now),
                                     "value": as_int(event[1])}, _STORE_EVIDENCE, now, out)
            else:
                out.append(("log", "core: unknown event %r" % (kind,)))
        self._run_timers(now, out)
        if power.interval_s(self) > self.reported_interval_s:
            # The centre judges silence by the interval it last heard: tell it at once when
            # the device means to stay silent for longer (after an alarm, in low power), or
            # it would call the wearer missing. A shorter one rides the next HEARTBEAT.
            power.t_heartbeat(self, now, out)
        elif "keepalive" not in self._due:
            power.keepalive(self, now)               # armed while tracking, else none
        # The rare handlers go back to the heap after each event: imported again when next
        # needed (firmware.forget).
        forget("firmware.orders")
        forget("firmware.pairing")
        forget("firmware.config")
        forget("protocol.config_keys")
        return out

    def next_deadline(self, now):
        """The ticks value by which handle(("tick",), t) must run, or None before boot; `now`
        (ticks) orders the deadlines across a wrap."""
        if not self.booted:
            return None
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
        return not self.cfg["wake_line"] and positioning.cadence_mode(self) in positioning.TRACKING

    def sleep_plan(self, now):
        """(mode, sleep_ms): "idle" = stay awake (short waits, button held), "light" = light
        sleep, "deep" = deep sleep (a reset on wake; only when the reachability bound and
        deep_sleep_min_s allow it and nothing needs RAM-fast reaction)."""
        deadline = self.next_deadline(now)
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
        alarm_tx = []
        for entry in self._alarm_tx:
            alarm_tx.append((entry[0], entry[1]))
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
            "alarm_tx": alarm_tx,
            "scheme": self.scheme,
            "pairing": self.pairing,
        }

    def sleep_snapshot(self, now):
        """snapshot() plus "deep": what a wake from deep sleep at ticks `now` needs to carry
        on (module docstring). Ticks do not survive, so times are kept as ms from `now`:
        "timers" {name: ms until due}, the ages of the last fix and contact, the uptime."""
        snap = self.snapshot()
        timers = {}
        for name in self._due:
            timers[name] = max(0, ticks_diff(self._due[name], now))
        deep = {"timers": timers, "uptime_ms": power.uptime_ms(self, now),
                "contact_age_ms": max(0, ticks_diff(now, self._last_contact)),
                "moving": self.moving, "still": self._still_fixes,
                "gnss_lost": self._gnss_lost_raised, "no_contact": self.no_contact,
                "low_power": self.low_power, "battery": self.battery,
                "interval_s": self.reported_interval_s, "fix_fails": self._fix_fails,
                "uplink_age_ms": max(0, ticks_diff(now, self._last_uplink)),
                "sent": self._sent_n, "acked": self._acked_n}
        if self._utc_ms is not None:
            deep["utc_ms"] = self.utc_ms(now)
        if self._last_fix_at is not None:
            deep["fix_age_ms"] = max(0, ticks_diff(now, self._last_fix_at))
        snap["deep"] = deep
        return snap

    def utc_ms(self, now):
        """UTC ms at ticks `now`, or 0 while unknown (no fix and no TIME_SYNC yet)."""
        if self._utc_ms is None:
            return 0
        return self._utc_ms + ticks_diff(now, self._utc_ticks)

    def status(self):
        bits = 0
        if self.panic_id:
            bits |= _STATUS_ALARM_ACTIVE
        if self.moving:
            bits |= _STATUS_MOVING
        if self.no_contact:
            bits |= _STATUS_NO_CONTACT
        if self.gnss_on:
            bits |= _STATUS_GNSS_ON
        if self.low_power:
            bits |= _STATUS_LOW_POWER
        if self.proximity:
            bits |= _STATUS_PROXIMITY
        return bits

    # --- helpers ----------------------------------------------------------------------------
    def _at(self, now, key):
        """The ticks config[key] seconds after `now`."""
        return ticks_add(now, self.cfg[key] * 1000)

    def _send(self, name, fields, store, now, out):
        counter = self.counter
        self.counter = counter + 1
        out.append(("send", name, fields, 0, counter, store))
        if name != "ACK":
            self._last_uplink = now
            if not self.no_contact and "no_contact" not in self._due:
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

    def _boot(self, hello, now, out):
        self.booted = True
        self._boot_at = now
        self._last_contact = now
        due = self._due
        deep = self._resume_from
        self._resume_from = None
        if deep is not None:
            # A deep-sleep wake (no HELLO): carry on from sleep_snapshot()'s "deep", less the
            # time slept.
            slept_ms = max(0, as_int(deep.get("slept_ms")))
            timers = deep.get("timers")
            if isinstance(timers, dict):
                for name in timers:
                    if name in _TIMERS:
                        left_ms = max(0, as_int(timers[name]) - slept_ms)   # overdue: at once
                        due[name] = ticks_add(now, min(left_ms, _TIMER_MAX_MS))
            utc = deep.get("utc_ms")
            if isinstance(utc, int) and utc > 0:
                self._utc_ms, self._utc_ticks = utc + slept_ms, now
            self._uptime_base_ms = as_int(deep.get("uptime_ms")) + slept_ms
            self._last_contact = ago(now, as_int(deep.get("contact_age_ms")) + slept_ms)
            fix_age = deep.get("fix_age_ms")
            if isinstance(fix_age, int):
                self._last_fix_at = ago(now, fix_age + slept_ms)
            self.moving = bool(deep.get("moving"))
            self._still_fixes = as_int(deep.get("still"))
            self._gnss_lost_raised = bool(deep.get("gnss_lost"))
            self.low_power = bool(deep.get("low_power"))
            battery = deep.get("battery")
            if isinstance(battery, (list, tuple)) and len(battery) == 3:
                self.battery = (as_int(battery[0]), as_int(battery[1]), as_int(battery[2]))
            self._sent_n, self._acked_n = as_int(deep.get("sent")), as_int(deep.get("acked"))
            self.reported_interval_s = as_int(deep.get("interval_s"))
            self._fix_fails = as_int(deep.get("fix_fails"))
            self._last_uplink = ago(now, as_int(deep.get("uplink_age_ms")) + slept_ms)
            if deep.get("no_contact"):
                self.no_contact = True
                out.append(("led", "no_contact"))          # the LED state did not survive
            out.append(("log", "resume after %d s of deep sleep" % (slept_ms // 1000)))
        else:
            self.plan_listen(now)
            due["heartbeat"] = self._at(now, "heartbeat_s")
            due["self_test"] = self._at(now, "self_test_s")
            due["no_contact"] = self._at(now, "no_contact_s")
            if self.proximity:
                due["prox_lapse"] = self._at(now, "proximity_hold_s")
            if self.panic_id:
                due["panic_slow"] = self._at(now, "panic_track_s")
            if hello is not None:
                fields = dict(hello)
                fields["config_version"] = self.config_version
                fields["mode"] = self.scheme
                fields["interval_s"] = self.reported_interval_s = power.interval_s(self)
                self._send("HELLO", fields, _STORE_EVIDENCE, now, out)  # until acked
            due["fix"] = now                         # where are we, are we moving?
        due["battery"] = now           # every boot samples: the charger may have changed
        positioning.replan(self, now, out)
        if not self.reported_interval_s:               # no HELLO (a resume keeps its own)
            self.reported_interval_s = power.interval_s(self)
        if self.pairing is not None and "pairing" not in due:
            from firmware import pairing  # an aware device never imports it
            pairing.check(self, now, out)
        if self._alarm_tx:
            out.append(("log", "boot: %d alarm(s) unacked" % len(self._alarm_tx)))

    def _run_timers(self, now, out):
        """Run each due timer, in _TIMERS order, then the alarm retries."""
        due = self._due
        for name in _TIMERS:
            t = due.get(name)
            if t is None or ticks_diff(now, t) < 0:
                continue
            del due[name]
            if name == "press":
                alarm.on_button(self, None, now, out)
            elif name == "listen":
                self.plan_listen(now)
            elif name == "battery":
                due["battery"] = self._at(now, "battery_sample_s")
                out.append(("sample_battery",))
            elif name == "no_contact":                 # an ack owed for no_contact_s
                if not self.no_contact:
                    self.no_contact = True
                    out.append(("led", "no_contact"))
                    out.append(("log", "no ack for %d s" % (ticks_diff(now, self._last_contact)
                                                            // 1000)))
            elif name == "prox_lapse":                 # no PROXIMITY for proximity_hold_s
                if self.proximity:
                    out.append(("log", "proximity lapsed without refresh"))
                    self.proximity = 0
                    self._persist(out)
                    positioning.replan(self, now, out)
            elif name == "panic_slow":                 # panic_track_s on: the proximity rate
                if self.panic_id and not self._panic_slow:
                    self._panic_slow = True
                    positioning.replan(self, now, out)
            elif name == "pairing":
                from firmware import pairing
                pairing.check(self, now, out)
            elif name == "keepalive":
                power.keepalive(self, now, out)
            elif name == "heartbeat":
                power.t_heartbeat(self, now, out)
            elif name == "self_test":
                due["self_test"] = self._at(now, "self_test_s")
                power.self_test(self, now, out)
            else:                                      # locate_end, acquire, fix, gnss_lost, upload
                positioning.on_timer(self, name, now, out)
        alarm.retry(self, now, out)

    # --- downlinks ----------------------------------------------------------------------------
    def _on_rx(self, event, now, out):
        """("rx", name, fields, counter, flags): an authenticated downlink frame; ("rx_duplicate",
        counter, flags): one seen before, so our ACK was lost. Either way ack it if it asks
        (FLAG_ACK_REQ; an ACK is never acked) and note the contact; act on a new one only."""
        if event[0] == "rx":
            name, counter = event[1], event[3]
            flags = event[4] if len(event) > 4 else 0
        else:
            name, counter, flags = None, event[1], event[2]
        if flags & 1 and name != "ACK":
            self._send("ACK", {"highest": counter, "bitmap": 0}, _STORE_NONE, now, out)
        self._last_contact = now
        # Silence is only "no contact" while an ack is owed: a low-power device that sends a
        # heartbeat an hour apart has not lost the centre in between. The timer is armed again
        # by the next frame that asks for an ack (_send).
        self._due.pop("no_contact", None)
        if self.no_contact:
            self.no_contact = False
            out.append(("led", "off"))
            self._send("EVENT", {"kind": _EVENT_COMMS_RESTORED, "time_ms": self.utc_ms(now),
                              "value": 0}, _STORE_EVIDENCE, now, out)
        if name is None:
            return
        fields = event[2]
        if name == "ACK":
            self._rx_ack(fields, now, out)
        elif name == "OPERATOR_ACK":                # an operator took the alarm: no more retries
            alarm_id = as_int(fields.get("alarm_id"))
            changed = alarm.stop_retries(self, 1, (alarm_id,))
            if alarm_id and alarm_id == self.panic_id and not self.panic_operator_acked:
                self.panic_operator_acked = 1
                out.append(("haptic", "operator_ack"))
                changed = True
            if changed:
                self._persist(out)
        elif name == "COMMAND" and as_int(fields.get("command")) == 1:
            # locate_now is the paired scheme's: pairing.py
            from firmware import pairing
            pairing.locate_now(self, as_int(fields.get("arg")), now, out)
        elif name == "CONFIG" or name == "COMMAND":
            # Rare: orders.py is imported for the frame (dropped after the event: handle).
            from firmware import orders
            if name == "CONFIG":
                orders.rx_config(self, fields, now, out)
            else:
                orders.rx_command(self, fields, now, out)
        elif name == "TIME_SYNC":
            utc = as_int(fields.get("utc_ms"))
            if utc > 0:
                self._utc_ms, self._utc_ticks = utc, now
        elif name == "PROXIMITY":
            # Paired only: pairing.py
            from firmware import pairing
            pairing.rx_proximity(self, fields, now, out)
        elif name == "MODE":
            from firmware import pairing
            pairing.rx_mode(self, fields, now, out)
        elif name != "TEST_INJECT":
            out.append(("log", "rx %s ignored" % name))


    def _rx_ack(self, fields, now, out):
        highest = as_int(fields.get("highest"))
        bitmap = as_int(fields.get("bitmap"))
        if highest <= 0:
            return
        acked = Acked(highest, bitmap)
        if alarm.stop_retries(self, 0, acked):
            self._persist(out)
        for counter, _sent_at in self._recent:
            if counter in acked:
                self._acked_n += 1
        out.append(("acked", acked))
        if self.queue_depth > 0 and (self._last_flush is None or ticks_diff(now, self._last_flush)
                                  >= self.cfg["flush_interval_ms"]):
            self._last_flush = now
            # The oldest send still within ack_wait_ms may yet be acked: flush below it.
            wait = self.cfg["ack_wait_ms"]
            recent = []
            for entry in self._recent:
                if ticks_diff(now, entry[1]) < wait:
                    recent.append(entry)
            self._recent = recent
            skip = []
            for entry in self._alarm_tx:
                skip.append(entry[0])
            out.append(("flush", self.cfg["flush_max"], recent[0][0] if recent else self.counter,
                        tuple(skip)))


    def plan_listen(self, now):
        """A board without a wake line listens by itself: a window before each
        reachability bound runs out. With the wake line (docs/LINK.md) the peer wakes it.
        Paired, the bound is at most _PAIRED_REACH_S whatever the configuration: the centre's
        pre-alert (an offender within 3 km) must reach the wearer within 30 s (issue 9)."""
        if self.cfg["wake_line"]:
            self._due.pop("listen", None)
            return
        bound_s = self.cfg["reachability_s"]
        if self.scheme == _MODE_PAIRED and bound_s > _PAIRED_REACH_S:
            bound_s = _PAIRED_REACH_S
        margin_ms = self.cfg["listen_margin_ms"]
        self._due["listen"] = ticks_add(now, max(1000, bound_s * 1000 - margin_ms))
