"""A hypothesis state machine drives the core against a small model of the rules: presses
(every long press is one ALARM record, raised or repeat, never swallowed), fixes, acks, downlinks, locate tracking, battery, reboots, deep-sleep wakes and time jumps (ticks start near
the wrap, and reboots restart ticks anywhere)."""
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware import config, core, positioning
from protocol import host_constants as constants
from tests.test_core import Rig, make_fix

LONG_PRESS_MS = 1500


class CoreModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # The listen-window fallback (no wake line) is the stricter rule set: the invariants
        # below check its bounds. With the wake line the peer wakes the device instead.
        self.cfg = config.defaults()
        self.cfg["wake_line"] = 0
        self.rig = Rig(self.cfg)
        self.seen = 0                    # actions of rig.log already checked
        self.highest_counter = 0
        self.alarm_counters = set()      # every ALARM counter ever sent
        self.acked = set()
        self.panic_id = 0
        self.operator_haptics = 0
        self.operator_acked = False
        self.panic_records = []          # (state, alarm_id) of every panic ALARM raised/repeat
        self.low_power = False
        self.proximity = 0
        self.locate_pending = False
        self.locate_until = None         # ticks: COMMAND locate_now arg > 0 tracks until then
        self.lon = 45_000_000
        self.utc = 1_700_000_000_000
        self.counter_down = 1
        self.check()

    # --- checking every new action against the model ---------------------------------------
    def check(self, during=""):
        log = self.rig.log
        for t, action in log[self.seen:]:
            kind = action[0]
            if kind == "send":
                _, name, fields, flags, counter, store = action
                assert counter > self.highest_counter, "counter reused or went backwards"
                self.highest_counter = counter
                if name == "ALARM":
                    self.alarm_counters.add(counter)
                    assert store == core.STORE_ALARM
                    if fields["kind"] == constants.ALARM_KIND_PANIC and fields["state"] in (
                            constants.ALARM_STATE_RAISED, constants.ALARM_STATE_REPEAT):
                        assert during == "press", "panic alarm without a long press"
                        self.panic_records.append((fields["state"], fields["alarm_id"]))
                if name in ("POSITION", "NO_FIX"):
                    if (self.low_power and not self.panic_id and not self.proximity
                            and not self.locate_pending and not self.tracking_at(t)
                            and during == "time"):
                        raise AssertionError("routine %s in low-power mode" % name)
                    self.locate_pending = False
            elif kind == "resend":
                assert action[1] in self.alarm_counters, "resend of a non-alarm counter"
                assert action[1] not in self.acked, "resend after ack"
            elif kind == "haptic" and action[1] == "operator_ack":
                self.operator_haptics += 1
        self.seen = len(log)

    def tracking_at(self, t):
        return self.locate_until is not None and core.ticks_diff(self.locate_until, t) >= 0

    @invariant()
    def tracking_keeps_the_device_reachable_within_poll_ms(self):
        rig = self.rig
        if self.locate_until is not None and core.ticks_diff(self.locate_until, rig.now) > 0:
            assert positioning.cadence_mode(rig.core) in ("panic", "proximity", "locate")
            mode, sleep_ms = rig.core.sleep_plan(rig.now)
            assert mode != "deep" and sleep_ms <= rig.cfg["poll_ms"]

    @invariant()
    def panic_state_matches_model(self):
        assert self.rig.core.panic_id == self.panic_id

    @invariant()
    def never_sleeps_past_the_reachability_bound(self):
        rig = self.rig
        bound = rig.cfg["reachability_s"] * 1000 - rig.cfg["listen_margin_ms"]
        wait = core.ticks_diff(rig.core.next_deadline(rig.now), rig.now)
        assert 0 <= wait <= bound
        mode, sleep_ms = rig.core.sleep_plan(rig.now)
        assert sleep_ms <= bound and mode in ("idle", "light")

    @invariant()
    def tracked_alarm_frames_are_unacked_alarms(self):
        for counter, _ in self.rig.core.snapshot()["alarm_tx"]:
            assert counter in self.alarm_counters and counter not in self.acked

    # --- rules ------------------------------------------------------------------------------
    def advance(self, ms):
        self.rig.run(ms)
        self.check("time")

    @rule(hold_ms=st.integers(0, 4000))
    def press(self, hold_ms):
        self.rig.event(("tick",), 100)                 # apart from any earlier release
        self.check()
        records = len(self.panic_records)
        n = len(self.rig.log)
        self.rig.event(("button", 1))
        self.rig.run(hold_ms)
        self.rig.event(("button", 0))
        self.check("press")
        haptics = [a[1] for _, a in self.rig.log[n:] if a[0] == "haptic"]
        new = self.panic_records[records:]
        if hold_ms < LONG_PRESS_MS:
            assert new == [] and not {"panic_confirm", "panic_repeat"} & set(haptics)
            return
        # Never swallowed: one record per long press, and the wearer feels it was taken.
        if self.panic_id:
            assert new == [(constants.ALARM_STATE_REPEAT, self.panic_id)], new
            assert "panic_repeat" in haptics
        else:
            self.panic_id = self.rig.core.panic_id
            assert self.panic_id, "a long press raised no panic"
            assert new == [(constants.ALARM_STATE_RAISED, self.panic_id)], new
            assert "panic_confirm" in haptics
        self.operator_acked = False              # the operator acknowledges the latest press

    @rule(ms=st.integers(0, 2 * 3600_000))
    def wait(self, ms):
        self.advance(ms)

    @rule(ms=st.integers(0, 600_000))
    def late_wake(self, ms):
        """The superloop woke late (a long boot, a busy flash): no ticks in between."""
        self.rig.event(("tick",), ms)
        self.check("time")

    @rule(speed=st.sampled_from([0, 0, 140, 900]), dlon=st.integers(-5000, 5000))
    def fix(self, speed, dlon):
        self.lon += dlon
        self.utc += 5000
        self.rig.event(("fix", make_fix(self.utc, lon_e7=self.lon, speed_cmps=speed)), 1000)
        self.check("fix")

    def _ack(self, highest, bitmap):
        acts = self.rig.ack(highest, bitmap)
        for action in acts:
            if action[0] == "acked":
                self.acked |= set(action[1])
        self.check()

    @rule(back=st.integers(0, 5), bitmap=st.integers(0, 2 ** 64 - 1))
    def ack(self, back, bitmap):
        self._ack(max(1, self.highest_counter - back), bitmap)

    @precondition(lambda self: self.alarm_counters - self.acked)
    @rule()
    def ack_alarms(self):
        for counter in sorted(self.alarm_counters - self.acked):
            self._ack(counter, 0)
        assert not self.rig.core.snapshot()["alarm_tx"]

    def downlink(self, name, fields):
        self.counter_down += 1
        self.rig.downlink(name, fields, counter=self.counter_down)

    @rule(right=st.booleans())
    def operator_ack(self, right):
        alarm_id = self.panic_id if right else self.panic_id + 1000
        before = self.operator_haptics
        self.downlink("OPERATOR_ACK", {"alarm_id": alarm_id, "operator_id": 5})
        self.check()
        first = right and self.panic_id and not self.operator_acked
        # The distinct pattern plays once per press, on its first OPERATOR_ACK only.
        assert self.operator_haptics - before == (1 if first else 0)
        if first:
            self.operator_acked = True

    @rule(right=st.booleans())
    def clear(self, right):
        arg = self.panic_id if right else self.panic_id + 1
        self.downlink("COMMAND", {"command": 5, "arg": arg})
        if right and self.panic_id:
            self.panic_id = 0
            self.operator_acked = False
        self.check()

    @rule(command=st.sampled_from([1, 2, 3]),
          arg=st.one_of(st.integers(0, 9), st.integers(10, 3600)))
    def command(self, command, arg):
        n = len(self.rig.log)
        if command == 1:
            self.locate_pending = True
        self.downlink("COMMAND", {"command": command, "arg": arg})
        if command == 1:
            assert not [a for _, a in self.rig.log[n:] if a[0] == "haptic"], "locate vibrated"
            if arg:
                self.locate_until = core.ticks_add(self.rig.now, arg * 1000)
        self.check()

    @rule(arg=st.integers(10, 3600))
    def track(self, arg):
        """The centre's pre-alert: track silently for arg seconds (often, so that fixes and
        waits land inside a tracking span)."""
        self.command(1, arg)

    @rule(level=st.integers(0, 3))
    def proximity(self, level):
        before = self.proximity
        n = len(self.rig.log)
        self.downlink("PROXIMITY", {"level": level})
        haptics = [a[1] for _, a in self.rig.log[n:] if a[0] == "haptic"]
        if level > before and level >= 1:
            assert haptics, "no haptic for a rising proximity level (uncertain included)"
        self.proximity = level
        self.check()

    @rule(pct=st.integers(0, 100), charging=st.booleans())
    def battery(self, pct, charging):
        self.rig.event(("battery", 3300 + pct * 9, pct, int(charging)))
        self.low_power = not charging and pct < self.rig.cfg["low_power_pct"]
        assert self.rig.core.low_power == self.low_power
        self.check()

    @rule(now=st.one_of(st.integers(0, (1 << 30) - 1), st.just((1 << 30) - 1000)))
    def reboot(self, now):
        snapshot = self.rig.core.snapshot()
        old = self.rig
        self.rig = Rig(self.cfg, state=snapshot, now=now, hello=None)
        self.rig.sender = old.sender
        self.rig.event(("boot", {"fw_major": 1, "fw_minor": 0, "fw_patch": 0,
                                 "schema_hash": 0, "reset_cause": 2, "boot_count": 2}))
        self.seen = 0
        self.low_power = False                 # unknown until the next battery sample
        self.proximity = self.rig.core.proximity
        self.locate_pending = False
        self.locate_until = None               # tracking is volatile: the centre re-asks
        self.operator_acked = bool(snapshot["panic_op_acked"])
        self.check()
        # An unacked alarm is resent at once after the reboot.
        pending = {c for c, _ in snapshot["alarm_tx"]}
        resent = {a[1] for _, a in self.rig.log if a[0] == "resend"}
        assert pending <= resent


    @precondition(lambda self: not self.rig.core._fast_wake() and not self.rig.core._batch)
    @rule(slept_ms=st.one_of(st.sampled_from([0, 300_000, 899_999, 900_000, 3_600_000]),
                             st.integers(0, 2 * 3600_000)),
          now=st.integers(0, (1 << 30) - 1))
    def deep_wake(self, slept_ms, now):
        """Deep sleep where the core would allow it (nothing that needs RAM-fast reaction),
        waking slept_ms later by the RTC with ticks restarted anywhere: the timers resume
        less the sleep, an overdue heartbeat goes out at the wake, UTC carries on, no HELLO."""
        old = self.rig
        # Ticks restart at the wake, so a tracking end in the old ticks means nothing now; the
        # precondition (no fast wake) already says no tracking span is still running.
        self.locate_until = None
        heartbeat_ms = core.ticks_diff(old.core._due["heartbeat"], old.now)
        utc = old.core.utc_ms(old.now)
        state = old.core.sleep_snapshot(old.now)
        state["deep"]["slept_ms"] = slept_ms
        self.rig = Rig(self.cfg, state=state, now=now, hello={"fw_major": 1, "fw_minor": 0, "fw_patch": 0,
                                                    "schema_hash": 0, "reset_cause": 4,
                                                    "boot_count": 3})
        self.rig.sender = old.sender
        self.seen = 0
        self.check("time")
        woke = self.rig
        assert not woke.sends("HELLO"), "a resume is not a boot"
        beats = woke.sends("HEARTBEAT")
        if heartbeat_ms > slept_ms:
            assert not beats
            assert core.ticks_diff(woke.core._due["heartbeat"], now) == heartbeat_ms - slept_ms
        else:
            assert len(beats) == 1 and beats[0][0] == now
        assert woke.core.utc_ms(now) == (utc + slept_ms if utc else 0)
        assert woke.core.low_power == self.low_power
        # An alarm frame still owed an ack is resent at the wake (the core only deep-sleeps
        # without one, but a wake must not lose it either).
        pending = {c for c, _ in state["alarm_tx"]}
        assert pending <= {a[1] for _, a in woke.log if a[0] == "resend"}

CoreModel.TestCase.settings = settings(CoreModel.TestCase.settings, stateful_step_count=30)
TestCoreModel = CoreModel.TestCase
