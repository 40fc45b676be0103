"""Issue 9 at the centre: a victim who may have boarded a bus is asked for a fix in time
(reach), and a device that reports NO_FIX is not kept searching by the centre's requests
(at most one locate_now per no_fix_locate_s), while the levels still reach wearer and
operator."""
import pytest

from host.centre import Centre, CentreConfig
from host.centre import centre as C
from host.centre.proximity import ProximityConfig
from tests.test_centre import KEY, LON, T0, Dev, fix
from tests.test_centre_proximity import north_of

CONFIG = ProximityConfig()


def _centre():
    c = Centre({(7, 1): KEY}, CentreConfig(pairs={7: 9004}))
    sent = []
    send = c.send

    def recording_send(device_id, name, fields, now_ms=None, supersede=None):
        if name == "COMMAND":
            sent.append((now_ms, fields["arg"]))
        return send(device_id, name, fields, now_ms, supersede)

    c.send = recording_send
    return c, sent


def _at_home(c, d, fix_ms, now_ms):
    c.receive("L", d.seal("POSITION", {"send_time_ms": now_ms, "fixes": [fix(fix_ms)]}), now_ms)


def _reach_requests(c):
    return [e for e in c.events if e.kind == C.LOCATE_REQUESTED and e.detail["reason"] == "reach"]


def test_an_offender_within_bus_reach_gets_a_fix_asked_for_before_she_could_cross():
    c, sent = _centre()
    d = Dev()
    _at_home(c, d, T0, T0)
    distance_m = 3200
    answered = []
    for t in range(30_000, 1_800_000, 30_000):        # his tag, every 30 s, standing still
        c.offender_fix(9004, T0 + t, north_of(distance_m), LON, 10, T0 + t)
        for at_ms, _arg in sent[len(answered):]:
            answered.append(at_ms)                     # her device answers 10 s later
            _at_home(c, d, at_ms + 10_000, at_ms + 10_000)
    margin_m = distance_m - 5 - 10 - CONFIG.warning_m
    # she could reach the warning radius margin_m / vehicle_mps after a fix: the next one is
    # asked for at least reach_lookahead_s before that (give or take one 30 s report)
    deadline_s = margin_m / CONFIG.vehicle_mps - CONFIG.reach_lookahead_s
    fix_times = [T0] + [a + 10_000 for a in answered]
    gaps_s = [(b - a) / 1000 for a, b in zip(fix_times, fix_times[1:] + [T0 + 1_800_000],
                                              strict=True)]
    assert answered and all(g <= deadline_s + 30 + 10 for g in gaps_s), (deadline_s, gaps_s)
    # and no more often than the rule needs: not a flood of requests
    assert all((b - a) / 1000 >= deadline_s - 30 for a, b in zip(answered, answered[1:], strict=False))
    assert [arg for _t, arg in sent] == [0] * len(sent)          # one fix each, no tracking
    assert len(_reach_requests(c)) == len(sent)
    assert all("distance" not in str(e.detail) for e in _reach_requests(c))


def test_an_offender_beyond_bus_reach_costs_her_nothing():
    c, sent = _centre()
    d = Dev()
    _at_home(c, d, T0, T0)
    for t in range(30_000, 900_000, 30_000):          # 20 km: her own 900 s fix comes first
        c.offender_fix(9004, T0 + t, north_of(20_000), LON, 10, T0 + t)
    assert sent == []


def test_an_unanswered_reach_request_is_not_repeated_at_every_offender_fix():
    c, sent = _centre()
    d = Dev()
    _at_home(c, d, T0, T0)
    for t in range(15_000, 600_000, 15_000):
        c.offender_fix(9004, T0 + t, north_of(3200), LON, 10, T0 + t)
    times_s = [(t - T0) / 1000 for t, _arg in sent]
    assert len(times_s) >= 2 and all(b - a >= 90 for a, b in zip(times_s, times_s[1:], strict=False)), times_s


def _no_fix(c, d, last_fix_ms, now_ms):
    c.receive("L", d.seal("NO_FIX", {"send_time_ms": now_ms, "age_s": (now_ms - last_fix_ms)
                                     // 1000, "last_fix": fix(last_fix_ms)}), now_ms)


@pytest.mark.parametrize("no_fix", [True, False])
def test_a_device_reporting_no_fix_gets_at_most_one_locate_per_no_fix_locate_s(no_fix):
    c, sent = _centre()
    d = Dev()
    _at_home(c, d, T0, T0)
    hour_ms = 3_600_000
    for t in range(15_000, hour_ms, 15_000):          # he walks about 1.5-2 km from her
        if no_fix and t % 120_000 == 0:                # indoors: each try ends in NO_FIX
            _no_fix(c, d, T0, T0 + t)
        c.offender_fix(9004, T0 + t, north_of(1500 + 500 * (t // 300_000 % 2)), LON, 10,
                       T0 + t)
    times_s = sorted((t - T0) / 1000 for t, _arg in sent)
    if no_fix:
        after = [s for s in times_s if s >= 120]       # from her first NO_FIX on
        assert all(b - a >= CONFIG.no_fix_locate_s for a, b in zip(after, after[1:], strict=False)), times_s
        assert len(after) <= hour_ms // 1000 // CONFIG.no_fix_locate_s
        # every hold is in the evidence log, once per window (not once per offender fix)
        held = [e for e in c.events if e.kind == C.LOCATE_HELD]
        assert held and len(held) <= len(after) + 1, (len(held), times_s)
        assert {e.detail["limit"] for e in held} == {"no_fix_locate_s"}
        assert all(e.detail["next_allowed_ms"] > e.time_ms for e in held)
    else:
        assert len(times_s) > 4                        # without NO_FIX: not limited
        assert not [e for e in c.events if e.kind == C.LOCATE_HELD]
    # the levels are not held back: the operator saw the uncertain level either way
    levels = [e.detail["level"] for e in c.events if e.kind == C.PROXIMITY]
    assert "uncertain" in levels
