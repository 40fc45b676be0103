"""Power: deep sleep and the button, config that survives a reboot, a power cut in the
middle of a queue write, and safe mode."""
import pytest

from hil.tests.rules import (
    LONG_PRESS_MS,
    PANIC,
    PRESS_TO_ALARM_MS,
    RAISED,
    configure,
)
from protocol import host_constants as constants


@pytest.mark.needs_button_line
@pytest.mark.needs_deep_sleep
def test_button_wakes_the_device_from_deep_sleep(dut, clock):
    configure(dut, 2, reachability_s=600)   # long bound: deep sleep between listen windows
    dut.wait(200_000)
    since = dut.mark()
    pressed_ms = clock.now_ms()
    dut.press_button(LONG_PRESS_MS)
    alarm = dut.expect("ALARM", timeout=PRESS_TO_ALARM_MS, where={"kind": PANIC, "state": RAISED},
                       since=since)
    assert clock.now_ms() - pressed_ms <= PRESS_TO_ALARM_MS
    # the press is dated when it happened, not when the link was next drained
    assert abs(alarm.fields["raised_time_ms"] - (dut.utc0_ms + pressed_ms)) <= LONG_PRESS_MS
    # a deep-sleep wake resumes: no HELLO since the first boot
    assert [f for _t, f in dut.of_type("HELLO", since)] == []


def test_config_persists_across_a_reboot(dut, clock):
    configure(dut, 7, heartbeat_s=300)
    dut.reset()
    hello = dut.expect("HELLO", timeout=15_000, where={"reset_cause": dut.reset_cause})
    assert hello.fields["config_version"] == 7
    assert hello.fields["boot_count"] == 2
    first = dut.expect("HEARTBEAT", timeout=310_000)
    t1 = clock.now_ms()
    dut.expect("HEARTBEAT", timeout=310_000)
    assert 298_000 <= clock.now_ms() - t1 <= 302_000
    assert first.counter > hello.counter


@pytest.mark.needs_power
@pytest.mark.needs_button
def test_power_cut_during_a_queue_write(dut, centre):
    before = {f.counter for _t, f in dut.frames}
    dut.cut_power_after_flash_writes(3)     # the press's first flash writes are torn
    dut.press_button(LONG_PRESS_MS)
    dut.wait(5_000)
    dut.power_on()
    hello = dut.expect("HELLO", timeout=15_000, where={"boot_count": 2})
    assert hello.fields["reset_cause"] == constants.RESET_POWER_ON
    # flash mounted and the device goes on: a new press raises an alarm that is acked
    dut.press_button(LONG_PRESS_MS)
    alarm = dut.expect("ALARM", timeout=PRESS_TO_ALARM_MS, where={"kind": PANIC, "state": RAISED})
    dut.wait(15_000)
    assert any(a.alarm_id == alarm.fields["alarm_id"] and a.ack_delivered_ms is not None
               for a in centre.alarm_history)
    # counters are never reused across the cut (anti-replay would drop the new frames)
    contents = {}
    for _t, f in dut.frames:
        key = (f.name, repr(sorted(f.fields.items())))
        assert contents.setdefault(f.counter, key) == key, "counter %d reused" % f.counter
    assert hello.counter not in before
    assert centre.refused.get("replayed", 0) == 0


def test_safe_mode_gets_the_repl_back(dut):
    """A key on the console within 2 s of boot skips the app and the watchdog (firmware/
    main.py): the REPL answers, and the device stays quiet on its link."""
    seen = len(dut.log)
    dut.reset()
    dut.wait_for_log("press a key within 2 s for safe mode", 10_000, 20, seen)
    for _ in range(15):                     # keep pressing a key, as a person would
        dut.console_write(b"\r")
        dut.wait(100)
        if any("vigil: safe mode" in line for line in dut.log[seen:]):
            break
    dut.wait_for_log("vigil: safe mode", 1_000, 20, seen)
    dut.wait_for_log(">>>", 3_000, 20, seen)         # type only at the prompt, as a person does
    since, seen = dut.mark(), len(dut.log)
    dut.console_write(b"print(6 * 7)\r")
    assert dut.wait_for_log("42", 3_000, 20, seen).endswith("42")
    dut.wait(120_000)                      # past the watchdog's timeout: still at the REPL
    assert dut.frames[since:] == [], "the app ran in safe mode"
    seen = len(dut.log)
    dut.wait_for_log(">>>", 3_000, 20, seen - 1)
    dut.console_write(b"print(1 + 1)\r")
    assert dut.wait_for_log("2", 3_000, 20, seen).endswith("2")
