"""Smoke test of bench/emulator.py --quick: it runs, profiles, and ends with one JSON object.
(The full fleet of 1,000 device-days is `make bench`, not CI.)"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_bench_prints_figures_profile_and_a_json_last_line():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "emulator.py"), "--quick"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for name in ("quiet-day", "commute"):
        assert figures["%s_wall_s" % name] > 0
        assert figures["%s_x_real_time" % name] > 1000
        assert figures["%s_device_days_per_s" % name] > 0
        # A gross regression guard on CPU time only: wall time on a shared machine is the
        # bench's figure to report, not a test's to assert.
        assert 0 < figures["%s_cpu_s" % name] < 30
    assert figures["quick"] is True
    assert figures["fleet_device_days"] == 20
    assert figures["fleet_crashes"] == 0 and figures["fleet_alarms_lost"] == 0
    assert figures["fleet_wall_s"] > 0 and figures["fleet_projected_1000_wall_s"] > 0
    assert figures["fleet_cpu_s_per_device_day"] > 0
    assert set(figures["targets_met"]) <= {"one device-day <= 1 s wall",
                                           "1,000 device-days <= 5 min"}
    text = done.stdout
    assert "where the time goes in one commute day" in text
    assert "firmware thread" in text and "/lib/firmware/" in text, "the firmware is profiled"
    assert "<method 'acquire' of '_thread.lock' objects>" not in text
