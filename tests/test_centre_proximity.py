"""The proximity engine: hysteresis, staleness, uncertainty, confirmation, privacy."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.centre import Centre, CentreConfig
from host.centre import centre as C
from host.centre.proximity import (
    ALARM,
    CLEAR,
    UNCERTAIN,
    WARNING,
    Fix,
    ProximityConfig,
    ProximityTracker,
    classify,
    haversine_m,
)
from tests.test_centre import KEY, LAT, LON, T0, Dev, fix

CONFIG = ProximityConfig()
M_PER_E7 = 6371008.8 * math.pi / 180 / 1e7  # metres per 1e-7 degree of latitude


def north_of(distance_m):
    return LAT + round(distance_m / M_PER_E7)


def test_haversine_one_degree_of_latitude():
    assert haversine_m(0, 0, 10_000_000, 0) == pytest.approx(111_195, abs=1)
    assert haversine_m(LAT, LON, north_of(750), LON) == pytest.approx(750, abs=0.1)


@pytest.mark.parametrize("distance_m, current, expected", [
    (1001, CLEAR, CLEAR), (1000, CLEAR, WARNING), (501, CLEAR, WARNING), (500, CLEAR, ALARM),
    (1100, WARNING, WARNING), (1101, WARNING, CLEAR), (550, ALARM, ALARM), (551, ALARM, WARNING),
    (1100, ALARM, WARNING), (501, WARNING, WARNING), (1050, UNCERTAIN, CLEAR),
])
def test_classify_hysteresis(distance_m, current, expected):
    assert classify(distance_m, 10, current, CONFIG) == expected


@pytest.mark.parametrize("distance_m, accuracy_m, expected", [
    (900, 251, UNCERTAIN),  # coarse and straddles 1000 m
    (900, 249, WARNING),  # within 25 % of 1000 m
    (5000, 400, CLEAR),  # coarse but far from every boundary
    (560, 126, UNCERTAIN),  # coarse for the 500 m radius
    (200, 126, ALARM),  # coarse but cannot leave the alarm zone
])
def test_classify_uncertain(distance_m, accuracy_m, expected):
    assert classify(distance_m, accuracy_m, CLEAR, CONFIG) == expected


step = st.tuples(
    st.sampled_from(["victim", "offender"]),
    st.floats(0, 3000),  # distance from the victim's home
    st.integers(1, 200),  # accuracy_m
    st.integers(0, 120_000),  # fix age at arrival
    st.integers(1_000, 40_000),  # time since the previous step
)


@given(st.lists(step, max_size=60))
def test_tracker_rules_hold_for_any_sequence(steps):
    tracker = ProximityTracker(CONFIG)
    now = T0
    recent = []  # the candidates since the last decision without one
    for side, distance_m, accuracy_m, age_ms, gap_ms in steps:
        now += gap_ms
        lat = north_of(distance_m) if side == "offender" else LAT
        f = Fix(now - age_ms, lat, LON, accuracy_m)
        before = tracker.state
        decision = (tracker.offender_fix if side == "offender" else tracker.victim_fix)(f, now)
        if decision is None:
            assert tracker.state == before
            continue
        assert decision.previous == before and decision.state == tracker.state
        victim_stale = abs(decision.victim_age_ms) > 60_000
        offender_stale = abs(decision.offender_age_ms) > 60_000
        if offender_stale:
            assert decision.stale and decision.basis == "stale"
            assert tracker.state == before  # never act on a stale offender fix
            recent = []
            continue
        if victim_stale:
            # the victim may be anywhere within their radius of the last known fix
            assert decision.basis == "stale_victim"
            assert decision.victim_radius_m >= decision.victim_age_ms / 1000 * CONFIG.walking_mps
            spread = decision.victim_radius_m + decision.offender_radius_m
            nearest, farthest = decision.distance_m - spread, decision.distance_m + spread
            expected = (ALARM if farthest <= CONFIG.alarm_m else
                        WARNING if farthest <= CONFIG.warning_m else
                        UNCERTAIN if nearest <= CONFIG.warning_m else CLEAR)
            assert decision.candidate == expected
        elif decision.basis == "predicted":
            assert decision.candidate == WARNING and before < WARNING
            assert decision.predicted_min_m <= CONFIG.warning_m
            assert classify(decision.distance_m, decision.combined_accuracy_m, before,
                            CONFIG) in (CLEAR, UNCERTAIN)
        else:
            assert decision.basis == "fresh"
            assert decision.candidate == classify(decision.distance_m,
                                                  decision.combined_accuracy_m, before, CONFIG)
        recent.append(decision.candidate)
        if decision.changed:
            # two consecutive evaluations agreed on the new state
            assert recent[-2:] == [tracker.state, tracker.state]
        else:
            assert recent[-2:] != [decision.candidate] * 2 or decision.candidate == before


def _drive(tracker, distances, gap_ms=15_000, accuracy_m=10):
    now = tracker.victim.time_ms + 1000 if tracker.victim else T0
    for i, distance_m in enumerate(distances):
        now += gap_ms
        tracker.victim_fix(Fix(now - 1000, LAT, LON, accuracy_m), now)
        tracker.offender_fix(Fix(now - 500 + i, north_of(distance_m), LON, accuracy_m), now)
    return tracker.state


def test_warning_hysteresis_band_holds():
    tracker = ProximityTracker(CONFIG)
    assert _drive(tracker, [2000, 990, 990]) == WARNING
    assert _drive(tracker, [1080, 1090, 1099]) == WARNING  # inside the 10 % band
    assert _drive(tracker, [1120, 1130]) == CLEAR


def test_single_fix_is_not_enough():
    tracker = ProximityTracker(CONFIG)
    tracker.victim_fix(Fix(T0, LAT, LON, 5), T0)
    decision = tracker.offender_fix(Fix(T0, north_of(300), LON, 5), T0)
    assert decision.candidate == ALARM and decision.state == CLEAR
    decision = tracker.offender_fix(Fix(T0 + 15_000, north_of(300), LON, 5), T0 + 15_000)
    assert decision.state == ALARM and decision.changed


def test_a_stale_victim_fix_is_worked_from_the_last_known_position():
    tracker = ProximityTracker(CONFIG)
    tracker.victim_fix(Fix(T0, LAT, LON, 5), T0)
    states, escalations = [], 0
    for i in range(1, 6):
        now = T0 + 61_000 + i * 15_000
        decision = tracker.offender_fix(Fix(now, north_of(100), LON, 5), now)
        assert decision.basis == "stale_victim" and not decision.stale
        # the victim walked at most 1.4 m/s since the fix: still within 500 m of him
        assert decision.victim_radius_m == pytest.approx(5 + decision.victim_age_ms / 1000 * 1.4)
        states.append(decision.state)
        escalations += decision.escalate
    assert states == [CLEAR, ALARM, ALARM, ALARM, ALARM]  # confirmed by the second fix
    assert escalations == 1, "the operator is told once per episode"


def test_a_stale_victim_with_the_offender_possibly_inside_is_uncertain_never_clear():
    tracker = ProximityTracker(CONFIG)
    tracker.victim_fix(Fix(T0, LAT, LON, 5), T0)
    now = T0 + 600_000  # 10 min without a fix: up to 840 m walked
    for distance_m in (1700, 1690):
        now += 15_000
        decision = tracker.offender_fix(Fix(now, north_of(distance_m), LON, 10), now)
    assert decision.candidate == UNCERTAIN and tracker.state == UNCERTAIN
    assert not decision.escalate
    far = ProximityTracker(CONFIG)
    far.victim_fix(Fix(T0, LAT, LON, 5), T0)
    for k in range(2):
        t = T0 + 600_000 + k * 15_000
        assert far.offender_fix(Fix(t, north_of(3000), LON, 10), t).candidate == CLEAR


def test_a_predicted_crossing_warns_before_the_offender_is_inside():
    tracker = ProximityTracker(CONFIG)
    now = T0
    tracker.victim_fix(Fix(now, LAT, LON, 5), now)
    levels = []
    for distance_m in (1600, 1400, 1200):  # driving at 200 m per 15 s straight at her
        now += 15_000
        tracker.victim_fix(Fix(now - 500, LAT, LON, 5), now)
        decision = tracker.offender_fix(Fix(now, north_of(distance_m), LON, 10), now)
        levels.append((decision.basis, decision.state))
    assert levels[-1] == ("predicted", WARNING)
    assert decision.distance_m > CONFIG.warning_m
    off = ProximityTracker(ProximityConfig(predict=False))
    now = T0
    for distance_m in (1600, 1400, 1200):
        now += 15_000
        off.victim_fix(Fix(now - 500, LAT, LON, 5), now)
        assert off.offender_fix(Fix(now, north_of(distance_m), LON, 10), now).state == CLEAR


def test_an_offender_circling_outside_the_radius_is_not_predicted_inside():
    tracker = ProximityTracker(CONFIG)
    now = T0
    for k in range(40):  # 1075 m around her at 14 m/s, a report every 15 s
        now += 15_000
        angle = k * 15 * 14 / 1075
        lat = LAT + round(1075 * math.cos(angle) / 111_195 * 1e7)
        lon = LON + round(1075 * math.sin(angle) / (111_195 * math.cos(math.radians(52.09)))
                          * 1e7)
        tracker.victim_fix(Fix(now - 500, LAT, LON, 5), now)
        decision = tracker.offender_fix(Fix(now, lat, lon, 10), now)
        assert decision.state == CLEAR, decision


# ---- through the centre: downlinks, events, evidence, privacy ---------------------------------

def _centre():
    return Centre({(7, 1): KEY}, CentreConfig(pairs={7: 9004}))


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 2500), st.integers(1, 300),
                          st.integers(0, 90_000)), max_size=40))
def test_centre_downlinks_carry_only_a_level(steps):
    c, d = _centre(), Dev()
    now = T0
    downlinks = []
    for from_victim, distance_m, accuracy_m, age_ms in steps:
        now += 15_000
        if from_victim:
            wire = d.seal("POSITION", {"send_time_ms": now,
                                       "fixes": [fix(now - age_ms, accuracy_m=accuracy_m)]})
            downlinks += c.receive("L", wire, now)
        else:
            downlinks += [w for _, w in c.offender_fix(9004, now - age_ms, north_of(distance_m),
                                                        LON, accuracy_m, now)]
        downlinks += [w for _, w in c.tick(now)]
    frames = d.open(downlinks)
    proximity = [f for f in frames if f.name == "PROXIMITY"]
    assert all(set(f.fields) == {"level"} for f in proximity)
    # Besides ACKs and levels, only requests to locate (one fix, or track for a while).
    others = [f for f in frames if f.name not in ("ACK", "PROXIMITY")]
    assert all(f.name == "COMMAND" and f.fields["command"] == 1 and
               f.fields["arg"] in (0, CONFIG.locate_track_s) for f in others)
    assert all(0 <= f.fields["level"] <= 3 for f in proximity)
    changes = kinds(c, C.PROXIMITY)
    assert [e.detail["counter"] for e in changes] == sorted({f.counter for f in proximity})
    assert all("distance" not in str(e.detail) for e in changes)
    rows = c.evidence.rows("proximity")
    assert sum(1 for r in rows if r["state"] != r["previous"]) == len(changes)
    assert all(r["downlink_counter"] is not None for r in rows if r["state"] != r["previous"])
    assert all(r["warning_m"] == 1000 and r["alarm_m"] == 500 for r in rows)


def kinds(c, kind):
    return [e for e in c.events if e.kind == kind]


def test_offender_approach_sends_warning_then_alarm_then_clear():
    c, d = _centre(), Dev()
    now = T0
    sent = []
    for distance_m in [3000, 2000, 950, 900, 450, 400, 400, 700, 1500, 1600]:
        now += 15_000
        sent += c.receive("L", d.seal("POSITION", {"send_time_ms": now,
                                                    "fixes": [fix(now - 2000)]}), now)
        sent += [w for _, w in c.offender_fix(9004, now - 1000, north_of(distance_m), LON, 10,
                                              now)]
    levels = [f.fields["level"] for f in d.open(sent) if f.name == "PROXIMITY"]
    assert levels == [WARNING, ALARM, WARNING, CLEAR]
    events = kinds(c, C.PROXIMITY)
    assert [e.detail["level"] for e in events] == ["warning", "alarm", "warning", "clear"]
    assert all(e.detail["decided_ms"] == e.detail["queued_ms"] for e in events)
    rows = c.evidence.rows("proximity")
    assert len(rows) == 19  # every fix after the first pair is a decision
    for r in rows:
        assert r["offender_age_ms"] == r["time_ms"] - r["offender_fix_ms"]
        assert r["victim_age_ms"] == r["time_ms"] - r["victim_fix_ms"]
        assert r["victim_accuracy_m"] == 5 and r["offender_accuracy_m"] == 10
    row = [r for r in rows if r["state"] == ALARM and r["previous"] == WARNING][0]
    assert row["distance_m"] == pytest.approx(450, abs=1) and row["combined_accuracy_m"] == 15


def test_newer_proximity_supersedes_unacked_older():
    c, d = _centre(), Dev()
    c.receive("L", d.seal("HEARTBEAT", {"battery_mv": 3900, "battery_pct": 80, "charging": 0,
                                        "link_quality": 90, "queue_depth": 0, "uptime_s": 1,
                                        "status": 0, "mode": 2, "interval_s": 900}), T0)
    c.send(7, "PROXIMITY", {"level": WARNING}, T0)
    newer = c.send(7, "PROXIMITY", {"level": ALARM}, T0)
    assert [p.counter for p in c.downlinks_pending(7)] == [newer]


# ---- pre-alert: keep the victim's device tracking while the offender is near -------------------

def _locates(c, device_id=7):
    return [d for d in c.downlinks_pending(device_id) if d.name == "COMMAND"]


def _victim_at_home(c, d, now):
    c.receive("L", d.seal("POSITION", {"send_time_ms": now, "fixes": [fix(now)]}), now)


def test_prealert_asks_for_tracking_once_then_renews_before_it_runs_out():
    c, d = _centre(), Dev()
    _victim_at_home(c, d, T0)
    out = c.offender_fix(9004, T0 + 1000, north_of(5000), LON, 10, T0 + 1000)
    assert not _locates(c) and not kinds(c, C.LOCATE_REQUESTED)       # far away: nothing
    out = c.offender_fix(9004, T0 + 16_000, north_of(2900), LON, 10, T0 + 16_000)
    frames = [f for f in d.open([w for _, w in out]) if f.name == "COMMAND"]
    assert [f.fields for f in frames] == [{"command": 1, "arg": CONFIG.locate_track_s}]
    first = _locates(c)[0].counter
    renew_ms = (CONFIG.locate_track_s - CONFIG.locate_renew_s) * 1000
    for t in range(31_000, 16_000 + renew_ms, 15_000):                 # no flooding
        c.offender_fix(9004, T0 + t, north_of(2500), LON, 10, T0 + t)
    assert [p.counter for p in _locates(c)] == [first]
    t = 16_000 + renew_ms
    c.offender_fix(9004, T0 + t, north_of(2500), LON, 10, T0 + t)
    pending = _locates(c)
    assert len(pending) == 1 and pending[0].counter > first            # superseded, not added
    assert len(kinds(c, C.LOCATE_REQUESTED)) == 2
    assert all("distance" not in str(e.detail) for e in kinds(c, C.LOCATE_REQUESTED))


def test_prealert_needs_a_victim_position_and_can_be_turned_off():
    c, d = _centre(), Dev()
    c.receive("L", d.seal("HEARTBEAT", {"battery_mv": 3900, "battery_pct": 80, "charging": 0,
                                        "link_quality": 90, "queue_depth": 0, "uptime_s": 1,
                                        "status": 0, "mode": 2, "interval_s": 900}), T0)
    c.offender_fix(9004, T0, north_of(100), LON, 10, T0)
    assert not _locates(c)                                  # no victim position known yet
    off = Centre({(7, 1): KEY}, CentreConfig(pairs={7: 9004},
                                             proximity=ProximityConfig(prealert_m=0)))
    _victim_at_home(off, d, T0)
    off.offender_fix(9004, T0 + 1000, north_of(2000), LON, 10, T0 + 1000)
    assert not [p for p in off.downlinks_pending(7) if p.name == "COMMAND"]


def test_hello_after_a_reboot_asks_for_tracking_again_at_once():
    c, d = _centre(), Dev()
    _victim_at_home(c, d, T0)
    c.offender_fix(9004, T0 + 1000, north_of(2000), LON, 10, T0 + 1000)
    c.receive("L", d.seal("HELLO", {"fw_major": 1, "fw_minor": 0, "fw_patch": 0,
                                    "schema_hash": C.messages.SCHEMA_HASH, "reset_cause": 2,
                                    "boot_count": 2, "config_version": 0, "mode": 2,
                                    "interval_s": 900}), T0 + 5000)
    c.offender_fix(9004, T0 + 16_000, north_of(2000), LON, 10, T0 + 16_000)
    assert len(kinds(c, C.LOCATE_REQUESTED)) == 2


def test_unconfirmed_rising_level_asks_for_one_fix_at_once():
    c, d = _centre(), Dev()
    _victim_at_home(c, d, T0)
    out = c.offender_fix(9004, T0 + 1000, north_of(900), LON, 10, T0 + 1000)
    assert c.proximity_state(7) == CLEAR                    # one evaluation: not confirmed
    commands = [f.fields for f in d.open([w for _, w in out]) if f.name == "COMMAND"]
    assert {"command": 1, "arg": 0} in commands
    # The fix it asked for confirms the warning.
    _victim_at_home(c, d, T0 + 3000)
    assert c.proximity_state(7) == WARNING
    # A steady state asks for nothing more than the tracking.
    n = len([p for p in c.downlinks_pending(7) if p.name == "COMMAND"])
    c.offender_fix(9004, T0 + 16_000, north_of(880), LON, 10, T0 + 16_000)
    assert len([p for p in c.downlinks_pending(7) if p.name == "COMMAND"]) == n


def test_prealert_radius_below_the_warning_radius_is_refused():
    with pytest.raises(ValueError, match="prealert_m 900: below warning_m 1000"):
        ProximityConfig(prealert_m=900)
    with pytest.raises(ValueError, match="locate_track_s 70000"):
        ProximityConfig(locate_track_s=70_000)
