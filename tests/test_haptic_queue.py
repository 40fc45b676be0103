"""Issue 9 (c): a haptic pattern asked for while another plays waits its turn instead of
cutting it short. The case that was broken: the operator's ACK arrives ~350 ms after a
repeat press, and the wearer felt half a panic_repeat. The motor's pulses are read back with
the same matcher the metrics use (host/metrics.py), so "felt as two patterns" is checked the
way every scenario run counts them."""
from firmware import outputs
from host import metrics


class TimedPin:
    """A pin that records (ticks, level) on every change."""

    def __init__(self):
        self.level = 0
        self.changes = []
        self.now = 0

    def value(self, level=None):
        if level is None:
            return self.level
        if level != self.level:
            self.changes.append((self.now, level))
        self.level = level
        return None


def _drive(out, pin, asks, until_ms):
    """Run the superloop's calls: out.step at each wake the outputs ask for, and each ask
    (ticks, pattern name) at its time. Returns the motor's (start, duration) pulses and the
    last out.step (None: nothing plays or waits)."""
    asks = sorted(asks, key=lambda ask: ask[0])      # stable: same-time asks keep order
    now = 0
    wake = None
    while now <= until_ms:
        while asks and asks[0][0] <= now:
            out.haptic(asks.pop(0)[1])
        pin.now = now
        wake = out.step(now)
        next_ask = asks[0][0] if asks else None
        candidates = [t for t in (wake, next_ask) if t is not None]
        if not candidates:
            break
        now = max(now + 1, min(candidates))
    pulses, on_at = [], None
    for t, level in pin.changes:
        if level and on_at is None:
            on_at = t
        elif not level and on_at is not None:
            pulses.append((on_at, t - on_at))
            on_at = None
    return pulses, wake


def _felt(asks, until_ms=20_000):
    pin = TimedPin()
    out = outputs.Outputs(pin, TimedPin())
    pulses, wake = _drive(out, pin, asks, until_ms)
    assert wake is None, "still playing or waiting at the end"
    return [metrics.pattern_name(steps) for _start, steps in metrics.pulse_trains(pulses)], \
        pulses


def test_an_operator_ack_350_ms_after_a_repeat_press_does_not_cut_the_repeat_pattern():
    names, pulses = _felt([(0, "panic_repeat"), (350, "operator_ack")])
    assert names == ["panic_repeat", "operator_ack"], (names, pulses)
    # the repeat pattern plays in full: 300 on, 150 off, 300 on
    assert pulses[:2] == [(0, 300), (450, 300)], pulses
    # then the stillness between the two is long enough to feel them as two
    assert pulses[2][0] - 750 >= metrics.HAPTIC_GAP_MS


def test_a_pattern_asked_for_long_after_the_last_one_starts_at_once():
    names, pulses = _felt([(0, "confirm"), (5_000, "operator_ack")])
    assert names == ["confirm", "operator_ack"]
    assert pulses[1][0] == 5_000


def test_the_queue_is_bounded_and_the_newest_asks_survive():
    # one playing, then five more at once: three wait, the two oldest waiting give way
    asks = [(0, "proximity_alarm"), (10, "confirm"), (10, "locate"), (10, "panic_repeat"),
            (10, "proximity_warning"), (10, "operator_ack")]
    names, _pulses = _felt(asks, until_ms=60_000)
    assert names == ["proximity_alarm", "panic_repeat", "proximity_warning", "operator_ack"]


def test_a_pattern_already_waiting_is_not_queued_twice():
    names, _pulses = _felt([(0, "proximity_alarm"), (100, "proximity_uncertain"),
                            (200, "proximity_uncertain"), (300, "proximity_uncertain")])
    assert names == ["proximity_alarm", "proximity_uncertain"]


def test_every_pattern_is_read_back_as_itself_and_queued_ones_stay_apart():
    # the metrics' matcher and the firmware agree on every pattern, the slow uncertain one
    # included, and the still gap between two queued patterns never joins them
    for name in outputs.HAPTIC:
        names, _pulses = _felt([(0, name)])
        assert names == [name]
    assert outputs._GAP_MS > metrics.HAPTIC_GAP_MS


REPEAT_THEN_QUICK_ACK = """
[scenario]
name = "repeat-quick-ack"
duration_s = 200
seed = 1

[centre]
operator_ack_delay_s = 0.35

[[device]]
id = 1004
location = [52.0907, 5.1214]
button = [{ at_s = 60, hold_ms = 2000 }, { at_s = 120, hold_ms = 2000 }]
"""


def test_the_wearer_feels_every_pattern_whole_when_the_operator_acks_at_once():
    # the unchanged firmware on the emulated board against the emulated centre, whose
    # operator acks 350 ms after each record arrives: read off the motor's pin
    from host import emulate, scenario
    run = emulate.ScenarioRun(scenario.parse(REPEAT_THEN_QUICK_ACK), 1)
    try:
        run.run()
        haptic = run.summary(0.0)["haptic"]
    finally:
        run.close()
    assert haptic == {"panic_confirm": 1, "panic_repeat": 1, "operator_ack": 2}, haptic
