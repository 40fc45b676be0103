"""Issue 9's targets on a fast subset of the safety suite (bench/safety.py runs every scenario
over 20 seeds): a few seeds each, the same per-run figures, the same limits."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_safety", REPO / "bench" / "safety.py")
safety = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(safety)
SEEDS = (0, 1)


def runs(name, seeds=SEEDS):
    return [safety.one((name, seed)) for seed in seeds]


# victim-bus runs six seeds: before the centre's reach rule, seed 5 (among 6 of 20) missed
# the crossing, because her stationary device fixed only every 900 s.
@pytest.mark.parametrize("name, seeds", [("offender-driving", SEEDS), ("tag-30s", SEEDS),
                                         ("loss-30", SEEDS), ("both-moving", SEEDS),
                                         ("victim-bus", range(6))])
def test_a_true_crossing_reaches_the_wearer_within_30_s_and_none_is_missed(name, seeds):
    for r in runs(name, seeds):
        assert r["crossing_ms"], "%s seed %d: the offender never crossed?" % (name, r["seed"])
        assert max(r["crossing_ms"]) <= safety.CROSSING_P95_TARGET_MS, r
        assert r["proximity_missed"] == 0 and r["proximity_false"] == 0, r
        assert r["crashes"] == 0 and r["alarms_lost"] == 0


def test_an_offender_circling_at_1050_to_1100_m_raises_no_warning():
    for r in runs("offender-circling"):
        assert r["warnings"] == 0 and r["proximity_false"] == 0, r
        assert r["crossing_ms"] == [] and r["proximity_missed"] == 0


def test_victim_indoors_gets_uncertain_at_wearer_and_operator_within_60_s():
    for r in runs("victim-indoors"):
        assert r["uncertain"] >= 1, r
        assert r["indoor_ms"] is not None and r["indoor_ms"] <= safety.INDOOR_TARGET_MS, r


def test_an_indoor_hour_while_moving_with_the_centre_averages_at_most_3_ma():
    # issue 9 (b): the centre's locate requests and the uncertain level kept the GNSS
    # searching and the radio sending keepalives indoors (53.6 mA); the uncertain level's
    # safety stays: the operator sees it, the wearer feels its pattern, nobody is "missing"
    for r in runs("indoor-moving"):
        assert r["indoor_hour_ma"] <= safety.INDOOR_HOUR_TARGET_MA, r
        assert r["uncertain"] >= 1 and r["haptic"].get("proximity_uncertain", 0) >= 1, r
        assert r["not_reporting"] == 0 and r["crashes"] == 0, r


def test_a_brownout_during_an_active_alarm_reaches_the_operator_within_90_s():
    for r in runs("brownout-panic"):
        assert r["presses_long"] == 1 and r["alarms_lost"] == 0, r
        assert r["brownout_ms"] is not None, "the cell did not run out?"
        assert r["brownout_ms"] <= safety.BROWNOUT_TARGET_MS, r


def test_the_bench_prints_one_json_object_last():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "safety.py"), "--seeds", "1",
                           "--jobs", "1", "--only", "brownout-panic"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["alarms_lost"] == 0 and figures["seeds"] == 1
    assert figures["brownout_to_operator_ms"]["n"] == 1
    for key in ("crossing_to_haptic_p95_ms", "proximity_missed", "proximity_false",
                "uncertain_levels", "indoor_uncertain_latency_ms", "circling_warnings"):
        assert key in figures


def test_aware_paired_aware_loses_no_press_and_routes_every_alarm_right():
    for r in runs("mode-switch"):
        assert r["presses_long"] == 5 and r["alarms_lost"] == 0, r
        assert r["alarms_misrouted"] == 0, r
