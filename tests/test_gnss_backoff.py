"""Issue 9, GNSS without a fix: outside the tracking modes a failed acquisition backs off
(growing gaps, capped), each failure reports NO_FIX with the last fix and its age, a fix
brings full effort back, and a locate_now buys one try at most every 15 min; only a panic
or a warning/alarm level searches without backoff. Then the energy target: an
indoor hour while moving averages <= 3 mA on the product profile (it was ~48 mA: the GNSS
and the CPU reading it stayed on all hour)."""
from firmware import core, positioning

from .firmware_e2e import start_toml
from .test_core import Rig, make_fix


def _on_spans(rig, since):
    """[(on ticks, off ticks)] of the GNSS after `since`."""
    spans, on_at = [], None
    for t, action in rig.actions("gnss"):
        if core.ticks_diff(t, since) < 0:
            continue
        if action[1] and on_at is None:
            on_at = t
        elif not action[1] and on_at is not None:
            spans.append((on_at, t))
            on_at = None
    return spans


def _moving_then_indoors():
    rig = Rig()
    utc = 1_700_000_000_000
    for i in range(3):                                   # walking: fixes show motion
        rig.run(60_000, on_action=None)
        utc += 60_000
        rig.event(("fix", make_fix(utc, lon_e7=45_000_000 + 20_000 * i, speed_cmps=140)))
    assert positioning.cadence_mode(rig.core) == "moving"
    return rig, rig.now                                  # from here: no sky


def test_failed_acquisitions_back_off_with_growing_gaps_and_report_no_fix():
    rig, indoors = _moving_then_indoors()
    rig.run(3 * 3600_000)
    spans = [(a, b) for a, b in _on_spans(rig, indoors) if a != b]   # not the last fix's
    offs = [core.ticks_diff(spans[i + 1][0], spans[i][1]) for i in range(len(spans) - 1)]
    assert offs[:4] == [60_000, 240_000, 960_000, 1_800_000], offs
    assert len(offs) > 4 and set(offs[4:]) == {1_800_000}          # capped
    # the ephemeris is hot (a fix minutes ago): each try is short
    assert all(core.ticks_diff(b, a) <= 20_000 + 2_000 for a, b in spans[:3]), spans
    no_fix = rig.sends("NO_FIX", indoors)
    assert len(no_fix) == len(spans)                     # every failed try is reported
    last = no_fix[-1][1][2]
    assert last["last_fix"]["source"] == 2 and last["age_s"] > 3600   # the last known fix


def test_a_fix_ends_the_backoff():
    rig, indoors = _moving_then_indoors()
    rig.run(2 * 3600_000)                                # deep in backoff: 30 min gaps
    assert core.ticks_diff(rig.core._due["fix"], rig.now) > 60_000
    rig.core._want_fix = True                            # a fix arrives on a try
    rig.event(("fix", make_fix(1_700_010_000_000, speed_cmps=140)))
    assert rig.core._fix_fails == 0
    start = rig.now
    rig.run(600_000)
    spans = _on_spans(rig, start)
    # full rate again: the moving cadence (60 s), not the 30 min backoff
    assert spans and core.ticks_diff(spans[0][0], start) <= 60_000 + 1000, spans


def _locate(rig, arg=0):
    rig.counter = getattr(rig, "counter", 0) + 1
    rig.downlink("COMMAND", {"command": 1, "arg": arg}, counter=rig.counter)


def test_locate_now_in_backoff_buys_one_bounded_try_at_most_every_15_min():
    # issue 9: the centre's repeated locate_now kept an indoor receiver searching
    rig, indoors = _moving_then_indoors()
    rig.run(2 * 3600_000)                                # deep in backoff: 30 min gaps
    fails = rig.core._fix_fails
    tried = rig.now
    _locate(rig)
    assert rig.core.gnss_on                              # one try at once
    rig.run(120_000)
    spans = _on_spans(rig, tried)
    # bounded: the ephemeris is 2 h old, so a cold search of gnss_timeout_s, then off
    assert len(spans) == 1, spans
    assert core.ticks_diff(spans[0][1], spans[0][0]) <= rig.cfg["gnss_timeout_s"] * 1000
    assert rig.core._fix_fails == fails + 1              # a failed try grows the gap
    assert len(rig.sends("NO_FIX", tried)) == 1          # and is reported
    after = rig.now
    for arg in (0, 300, 0):                              # repeats within 15 min: no try
        rig.run(60_000)
        _locate(rig, arg)
        assert not rig.core.gnss_on
    assert _on_spans(rig, after) == [] and not rig.core.gnss_on
    rig.run(900_000 - core.ticks_diff(rig.now, tried))   # 15 min after the last try
    _locate(rig)
    assert rig.core.gnss_on


def test_a_locate_now_that_gets_no_try_still_sends_the_next_fix_at_once():
    rig, indoors = _moving_then_indoors()
    rig.run(2 * 3600_000)
    _locate(rig)
    rig.run(120_000)
    mark = rig.now
    _locate(rig)                                         # no try now: it waits for the next
    assert rig.core._send_next_fix
    rig.core._due["fix"] = rig.now                       # that next try gets a fix
    rig.run(1000)
    rig.event(("fix", make_fix(1_700_010_000_000)))
    assert rig.sends("POSITION", mark)


def test_a_no_fix_uncertain_level_backs_off_and_keeps_the_routine_silence_promise():
    rig, indoors = _moving_then_indoors()
    rig.run(600_000)
    rig.downlink("PROXIMITY", {"level": 1})             # uncertain: the centre is unsure
    assert positioning.cadence_mode(rig.core) == "proximity"
    start = rig.now
    rig.run(3600_000)
    spans = _on_spans(rig, start)
    assert 1 <= len(spans) <= 4, spans                   # not a search every 15 s
    beats = rig.sends("HEARTBEAT", start)
    assert len(beats) <= 5                               # no 30 s keepalive all hour
    assert beats and beats[-1][1][2]["interval_s"] == rig.cfg["heartbeat_s"]


def test_a_warning_level_is_full_effort_even_without_a_fix():
    rig, indoors = _moving_then_indoors()
    rig.run(600_000)
    rig.downlink("PROXIMITY", {"level": 2})             # the offender within 1 km
    start = rig.now
    rig.run(600_000)
    assert rig.core.gnss_on                              # searching on, no backoff
    assert len(rig.sends("NO_FIX", start)) >= 5          # one per gnss_timeout_s
    beats = rig.sends("HEARTBEAT", start)
    assert beats and all(b[1][2]["interval_s"] <= 30 for b in beats)


def test_tracking_modes_never_back_off():
    rig, indoors = _moving_then_indoors()
    rig.press(1500)                                      # panic: the centre needs positions
    rig.run(600_000)
    assert rig.core.gnss_on and rig.core._fix_fails == 0
    assert len(rig.sends("NO_FIX", indoors)) >= 5        # one per gnss_timeout_s, on and on


INDOOR = """
[scenario]
name = "indoor-hour"
duration_s = 3900
seed = 1
profile = "product"

[[device]]
id = 31
location = [52.0907, 5.1214]
route = { start_s = 0, speed_kmh = 4.0, waypoints = [[52.0907, 5.1214], [52.1300, 5.1700]] }
indoor = [{ start_s = 300, duration_s = 3600 }]
"""
INDOOR_TARGET_MA = 3.0


def test_an_indoor_hour_while_moving_averages_at_most_3_ma():
    sim = start_toml(INDOOR)
    try:
        sim.world.run_until(300_000)
        before = sim.devices[31].energy.mah()
        sim.world.run_until(3_900_000)
        indoor_ma = sim.devices[31].energy.mah() - before      # mAh over one hour = mA
    finally:
        sim.close()
    print("indoor hour while moving, product profile: %.2f mA" % indoor_ma)
    assert indoor_ma <= INDOOR_TARGET_MA, indoor_ma
