"""The panic button, end to end: the press, the alarm on the link, the retries, the
operator's acknowledgement back on the wearer's wrist."""
import pytest

from hil.tests.rules import (
    LONG_PRESS_MS,
    OPERATOR_ACK_DELAY_MS,
    PANIC,
    PRESS_TO_ALARM_MS,
    RAISED,
)


@pytest.mark.needs_button
def test_panic_end_to_end(dut, centre, clock):
    pressed_ms = clock.now_ms()
    dut.press_button(LONG_PRESS_MS)
    alarm = dut.expect("ALARM", timeout=PRESS_TO_ALARM_MS, where={"kind": PANIC, "state": RAISED})
    assert clock.now_ms() - pressed_ms <= PRESS_TO_ALARM_MS
    dut.wait(OPERATOR_ACK_DELAY_MS + 5_000)
    assert [(a.device_id, a.alarm_id, a.kind) for a in centre.alarm_history] == [
        (dut.device_id, alarm.fields["alarm_id"], PANIC)]
    assert centre.alarm_history[0].ack_delivered_ms is not None, "operator ack never delivered"


@pytest.mark.needs_button
def test_panic_retries_under_loss(dut, centre):
    dut.lose_next_downlinks(3)       # the ACKs of the first three tries are lost
    dut.press_button(LONG_PRESS_MS)
    first = dut.expect("ALARM", timeout=PRESS_TO_ALARM_MS, where={"kind": PANIC})
    again = [dut.expect("ALARM", timeout=15_000, where={"kind": PANIC}) for _ in range(3)]
    # a retry is the same record: same counter, alarm id and raise time
    assert {(f.counter, f.fields["alarm_id"], f.fields["raised_time_ms"]) for f in again} == {
        (first.counter, first.fields["alarm_id"], first.fields["raised_time_ms"])}
    assert len(dut.lost) == 3
    dut.wait(40_000)
    assert len(centre.alarm_history) == 1, "the centre saw the alarm more than once"
    raised = [f for _t, f in dut.of_type("ALARM") if f.fields["state"] == RAISED]
    settled = len(raised)
    dut.wait(60_000)                 # acked now: the retries stop
    assert len([f for _t, f in dut.of_type("ALARM") if f.fields["state"] == RAISED]) == settled


@pytest.mark.needs_button
@pytest.mark.needs_outputs
def test_operator_ack_runs_the_haptic(dut, centre, clock):
    dut.press_button(LONG_PRESS_MS)
    dut.expect("ALARM", timeout=PRESS_TO_ALARM_MS, where={"kind": PANIC})
    confirm = dut.haptic_pulses()
    assert confirm, "no haptic confirmation of the press"
    after_confirm_ms = confirm[-1][0] + 1
    dut.wait(OPERATOR_ACK_DELAY_MS + 10_000)
    delivered = centre.alarm_history[0].ack_delivered_ms
    assert delivered is not None
    pulses = dut.haptic_pulses(after_confirm_ms)
    # operator_ack: two short buzzes and one long one (firmware/outputs.py)
    assert len(pulses) >= 3, pulses
    assert max(d for _s, d in pulses if d is not None) >= 500, pulses


@pytest.mark.needs_button
def test_a_repeat_press_raises_no_second_alarm(dut, centre):
    dut.press_button(LONG_PRESS_MS)
    first = dut.expect("ALARM", timeout=PRESS_TO_ALARM_MS, where={"kind": PANIC})
    dut.wait(10_000)
    dut.press_button(LONG_PRESS_MS)
    dut.expect_none("ALARM", 20_000, where=lambda f: f.fields["alarm_id"] != first.fields["alarm_id"])
    assert [a.alarm_id for a in centre.alarm_history] == [first.fields["alarm_id"]]
