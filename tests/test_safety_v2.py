"""Issue 9 on the device core, in virtual ticks: repeat presses are never swallowed, the
scheme (aware / paired) switches over the air and ends by itself with no gap in panic
coverage, the device tells the centre its mode and how long it may be silent, and a paired
device without a wake line stays reachable within 30 s."""
from firmware import config, core, positioning
from protocol import host_constants as constants

from .test_core import Rig, make_fix, panic

UTC = 1_700_000_000_000
DAY_MS = 86_400_000


def _with_utc(cfg=None):
    rig = Rig(cfg)
    rig.downlink("TIME_SYNC", {"utc_ms": UTC})
    return rig


def _alarm_records(rig, since=None):
    return [(a[2]["state"], a[2]["alarm_id"], a[4]) for _t, a in rig.sends("ALARM", since)]


# --- repeat presses -------------------------------------------------------------------------
def test_a_long_press_during_an_active_alarm_is_its_own_record_with_haptic():
    rig = _with_utc()
    _t, counter, alarm_id = panic(rig)
    rig.ack(counter)
    rig.downlink("OPERATOR_ACK", {"alarm_id": alarm_id, "operator_id": 3}, counter=5)
    before = len(rig.log)
    rig.run(60_000)
    mark = rig.now
    rig.press(1600)
    haptics = [a[1] for _t, a in rig.log[before:] if a[0] == "haptic"]
    assert "panic_repeat" in haptics
    records = _alarm_records(rig, mark)
    assert [(s, i) for s, i, _c in records] == [(constants.ALARM_STATE_REPEAT, alarm_id)]
    repeat_counter = records[0][2]
    assert repeat_counter > counter                                 # its own counter
    # retried like any alarm until acked
    resent = [a[1] for _t, a in rig.run(10_000) if a[0] == "resend"]
    assert repeat_counter in resent
    rig.ack(repeat_counter)
    assert [a for _t, a in rig.run(60_000) if a[0] == "resend"] == []
    # the operator's ack of the repeat reaches the wearer too
    n = len(rig.log)
    rig.downlink("OPERATOR_ACK", {"alarm_id": alarm_id, "operator_id": 3}, counter=6)
    assert ("haptic", "operator_ack") in [a for _t, a in rig.log[n:]]
    assert rig.core.panic_id == alarm_id                            # still the same alarm


def test_every_long_press_counts_and_a_short_one_never_does():
    rig = _with_utc()
    panic(rig)
    rig.run(1)
    mark = rig.now
    for hold_ms in (1500, 800, 2000, 999, 1500):
        rig.run(5_000)
        rig.press(hold_ms)
    states = [s for s, _i, _c in _alarm_records(rig, mark)]
    assert states == [constants.ALARM_STATE_REPEAT] * 3


def test_a_repeat_press_brings_back_the_panic_fix_rate():
    rig = _with_utc()
    panic(rig)
    rig.run(rig.cfg["panic_track_s"] * 1000 + 1000)
    assert positioning.cadence_mode(rig.core) == "proximity"  # slowed after panic_track_s
    rig.press(1500)
    assert positioning.cadence_mode(rig.core) == "panic"


# --- mode and interval ----------------------------------------------------------------------
def test_hello_and_heartbeat_carry_mode_and_interval():
    rig = _with_utc()
    hello = rig.sends("HELLO")[0][1][2]
    assert (hello["mode"], hello["interval_s"]) == (constants.MODE_AWARE, rig.cfg["heartbeat_s"])
    rig.run(rig.cfg["heartbeat_s"] * 1000)
    beat = rig.sends("HEARTBEAT")[-1][1][2]
    assert (beat["mode"], beat["interval_s"]) == (constants.MODE_AWARE, rig.cfg["heartbeat_s"])


def test_during_an_alarm_the_device_is_never_silent_for_more_than_30_s():
    rig = _with_utc()                                 # indoors: no fix ever, so no POSITION
    t, _counter, _alarm_id = panic(rig)
    rig.run(600_000)
    uplinks = [t] + [u for u, a in rig.sends(since=t) if a[1] != "ACK"]
    assert max(core.ticks_diff(b, a) for a, b in zip(uplinks, uplinks[1:], strict=False)) <= 30_000
    beats = [a[2] for _u, a in rig.sends("HEARTBEAT", t)]
    assert beats and {b["interval_s"] for b in beats} == {30}
    # cleared: at once a HEARTBEAT saying the device may now be quiet for heartbeat_s
    alarm_id = rig.core.panic_id
    mark = rig.now
    rig.downlink("COMMAND", {"command": constants.COMMAND_CLEAR_ALARM, "arg": alarm_id})
    assert rig.sends("HEARTBEAT", mark)[0][1][2]["interval_s"] == rig.cfg["heartbeat_s"]


def _paired(rig, valid_from=0, valid_until=None, counter=20):
    fields = {"mode": constants.MODE_PAIRED, "offender_id": 9004, "valid_from_ms": valid_from,
              "valid_until_ms": valid_until or UTC + DAY_MS}
    return rig.downlink("MODE", fields, counter=counter)


def _mode_events(rig, since=None):
    return [a[2]["value"] for _t, a in rig.sends("EVENT", since)
            if a[2]["kind"] == constants.EVENT_KIND_MODE_CHANGED]


def test_mode_paired_then_its_end_falls_back_to_aware_with_no_gap_in_panic():
    rig = _with_utc()
    _paired(rig, valid_until=UTC + 3_600_000)
    assert rig.core.scheme == constants.MODE_PAIRED and _mode_events(rig) == [2]
    rig.run(rig.cfg["heartbeat_s"] * 1000)
    assert rig.sends("HEARTBEAT")[-1][1][2]["mode"] == constants.MODE_PAIRED
    # a panic just before the end: it stays active across the switch, retried until acked
    rig.run(3_600_000 - rig.cfg["heartbeat_s"] * 1000 - 2_000 - 1500)
    _t, counter, alarm_id = panic(rig)
    rig.run(5_000)                                    # the court order ends meanwhile
    assert rig.core.scheme == constants.MODE_AWARE and _mode_events(rig) == [2, 1]
    assert rig.core.panic_id == alarm_id
    assert counter in [a[1] for _t, a in rig.run(10_000) if a[0] == "resend"]
    rig.press(1500)                                   # a press after the switch still counts
    assert _alarm_records(rig)[-1][:2] == (constants.ALARM_STATE_REPEAT, alarm_id)
    assert rig.core.pairing is None


def test_mode_aware_and_paired_again_and_a_pairing_that_starts_later():
    rig = _with_utc()
    _paired(rig, valid_from=UTC + 600_000, counter=20)
    assert rig.core.scheme == constants.MODE_AWARE                   # not yet valid
    rig.run(601_000)
    assert rig.core.scheme == constants.MODE_PAIRED
    rig.downlink("MODE", {"mode": constants.MODE_AWARE, "offender_id": 0, "valid_from_ms": 0,
                          "valid_until_ms": 0}, counter=21)
    assert rig.core.scheme == constants.MODE_AWARE and _mode_events(rig) == [2, 1]


def test_a_paired_mode_that_makes_no_sense_is_refused():
    rig = _with_utc()
    acts = _paired(rig, valid_from=UTC + 10, valid_until=UTC)
    assert rig.core.scheme == constants.MODE_AWARE and rig.core.pairing is None
    assert any(a[0] == "log" and "refused" in a[1] for a in acts)
    assert any(a[0] == "send" and a[1] == "ACK" for a in acts)      # authentic: acked


def test_mode_before_utc_is_known_waits_for_it():
    rig = Rig()
    _paired(rig)
    assert rig.core.scheme == constants.MODE_AWARE                   # cannot judge the window
    rig.event(("fix", make_fix(UTC)))
    rig.run(61_000)
    assert rig.core.scheme == constants.MODE_PAIRED


def test_the_pairing_survives_deep_sleep_and_ends_during_it():
    from .test_core import deep_wake
    cfg = config.defaults()
    rig = _with_utc(cfg)
    _paired(rig, valid_until=UTC + 3_600_000)
    rig.run(60_000)
    woke = deep_wake(rig, 2 * 3_600_000)                            # the end passed asleep
    assert woke.core.scheme == constants.MODE_AWARE
    assert _mode_events(woke) == [1]


# --- reachability without a wake line -------------------------------------------------------
def test_paired_without_a_wake_line_listens_at_least_every_30_s():
    cfg = config.defaults()
    cfg["wake_line"], cfg["reachability_s"] = 0, 600
    rig = _with_utc(cfg)
    aware_ms = core.ticks_diff(rig.core._due["listen"], rig.now)
    assert aware_ms > 500_000                                        # the configured bound
    _paired(rig)
    paired_ms = core.ticks_diff(rig.core._due["listen"], rig.now)
    assert 0 < paired_ms <= 30_000
    mode, sleep_ms = rig.core.sleep_plan(rig.now)
    assert mode != "deep" and sleep_ms <= 30_000
