"""The offender-approach scenario end to end (issue 4's proximity target): the unchanged
firmware on an emulated board, the centre's proximity engine and pre-alert, and the
offender's tag, over many seeds.

Target: an offender truly crossing 1000 m -> the wearer's haptic warning within 30 s at p95,
with no crossing missed, warning before alarm, no distance ever sent to the device, and the
silent pre-alert tracking costing little energy.
"""
import json
import math

import pytest

from host import emulate, scenario
from host.centre.proximity import ProximityConfig
from protocol import codec

SEEDS = range(16)
TARGET_P95_MS = 30_000
# Before the pre-alert (tag every 30 s, GNSS only with the 15-min heartbeat) the device
# averaged 2.84 mA in this scenario; tracking must not multiply that.
MAX_AVG_CURRENT_MA = 4.0
LOCATE_NOW = 1
PREALERT = ProximityConfig()


def _keyring(sc, seed):
    ring = codec.Keyring()
    for dev in sc["device"]:
        ring.add(dev["id"], emulate.KEY_ID, emulate.device_key(seed, dev["id"]))
    return ring


def _run(sc, seed, tmp_path):
    """(summary, trace events) of one seeded run."""
    path = tmp_path / ("trace-%d.jsonl" % seed)
    summary, _timeline = emulate.run(sc, seed=seed, trace_path=str(path))
    with open(path, encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    return summary, events


def _frames(sc, seed, events, kind):
    """[(t_ms, Frame)] of every authentic frame on the link in one direction."""
    receiver = codec.Receiver(_keyring(sc, seed), downlink=(kind == "downlink"),
                              check_replay=False)
    out = []
    for e in events:
        if e["kind"] == kind:
            for item in receiver.feed(bytes.fromhex(e["detail"].split(" ", 1)[0])):
                if isinstance(item, codec.Frame):
                    out.append((e["t_ms"], item))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    sc = scenario.load("offender-approach")
    tmp_path = tmp_path_factory.mktemp("traces")
    return sc, [(seed,) + _run(sc, seed, tmp_path) for seed in SEEDS]


def _p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def test_crossing_to_haptic_warning_p95_within_30_s_and_none_missed(runs):
    _sc, results = runs
    latencies, observed = [], []
    for seed, summary, _events in results:
        assert summary["proximity_warnings_missed"] == 0, "seed %d missed a crossing" % seed
        assert summary["crashes"] == 0
        stats = summary["proximity_warn_latency_ms"]
        assert stats["n"] >= 1, "seed %d: the offender never crossed the radius?" % seed
        latencies.append(stats["max"])
        if summary["proximity_observed_latency_ms"]["n"]:
            observed.append(summary["proximity_observed_latency_ms"]["max"])
    assert _p95(latencies) <= TARGET_P95_MS, sorted(latencies)
    # Once the centre has seen the offender inside, the warning goes out with the victim's
    # next tracked fix (proximity_fix_s, 15 s) and reaches the wearer at once (the wake line):
    # within one fix interval plus a second. The rest of the latency is the tag's interval.
    assert len(observed) == len(results) and _p95(observed) <= 16_000, sorted(observed)


def test_wearer_is_warned_before_alarm_and_only_for_proximity(runs):
    sc, results = runs
    for seed, _summary, events in results:
        downlinks = _frames(sc, seed, events, "downlink")
        levels = []
        for _t, f in downlinks:
            if f.name == "PROXIMITY" and (not levels or f.fields["level"] != levels[-1]):
                levels.append(f.fields["level"])
        assert 3 in levels and 2 in levels, "seed %d: levels %r" % (seed, levels)
        assert levels.index(2) < levels.index(3), "seed %d jumped to alarm: %r" % (seed, levels)
        # Every haptic pulse follows a rising PROXIMITY level within the pattern's length:
        # locate_now (pre-alert tracking, confirmation fixes) plays nothing.
        rises, level = [], 0
        for t, f in downlinks:
            if f.name == "PROXIMITY":
                if f.fields["level"] > level and f.fields["level"] >= 2:
                    rises.append(t)
                level = f.fields["level"]
        haptic_on = [e["t_ms"] for e in events if e["kind"] == "haptic" and e["detail"]]
        assert haptic_on
        for t in haptic_on:
            assert any(0 <= t - r <= 5_000 for r in rises), "seed %d: haptic at %d ms" % (seed, t)


def test_no_downlink_carries_a_distance_or_position(runs):
    sc, results = runs
    for seed, _summary, events in results:
        downlinks = _frames(sc, seed, events, "downlink")
        names = {f.name for _t, f in downlinks}
        assert names <= {"ACK", "PROXIMITY", "COMMAND", "OPERATOR_ACK", "TIME_SYNC"}, names
        locates = []
        for _t, f in downlinks:
            if f.name == "PROXIMITY":
                assert set(f.fields) == {"level"}
            elif f.name == "COMMAND":
                assert set(f.fields) == {"command", "arg"}
                assert f.fields["command"] == LOCATE_NOW
                assert f.fields["arg"] in (0, PREALERT.locate_track_s)
                locates.append(f)
        assert any(f.fields["arg"] for f in locates), "seed %d: no pre-alert tracking" % seed


def test_tracking_never_lapses_while_the_offender_is_near(runs):
    """While the offender is truly within the pre-alert radius (less a margin for the tag's
    report interval and the first request's delivery), the victim's fixes reach the centre
    at least every 30 s: fresh enough to evaluate at any time."""
    sc, results = runs
    offender_spec = sc["offender"][0]
    victim = emulate._route(sc["device"][0]["route"], sc["device"][0]["location"])
    offender = emulate._route(offender_spec["route"], offender_spec["location"])
    near = [t for t in range(0, int(sc["scenario"]["duration_s"] * 1000), 1000)
            if emulate.distance_m(*victim.at(t)[:2], *offender.at(t)[:2])
            <= PREALERT.prealert_m - 200]
    start, end = near[0] + 60_000, near[-1]
    assert end - start > 1800_000
    for seed, _summary, events in results:
        fixes = sorted(fix["fix_time_ms"] - sc["scenario"]["start_utc_ms"]
                       for _t, f in _frames(sc, seed, events, "uplink")
                       if f.name == "POSITION" for fix in f.fields["fixes"])
        inside = [t for t in fixes if start <= t <= end]
        gaps = [b - a for a, b in zip([start] + inside, inside + [end], strict=True)]
        assert max(gaps) <= 30_000, "seed %d: %d ms without a victim fix" % (seed, max(gaps))


def test_energy_stays_sane(runs):
    _sc, results = runs
    # the firmware's share: the average less the board's constant draws (board_mah)
    currents = [summary["avg_current_ma"] - summary["board_mah"] * 3600 / summary["virtual_s"]
                for _seed, summary, _events in results]
    assert max(currents) <= MAX_AVG_CURRENT_MA, currents
    assert all(summary["floor_ratio"] < 10 for _seed, summary, _events in results)
