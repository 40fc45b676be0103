"""Smoke test of bench/report.py --quick: seven devices for an hour, the report built, one
JSON object last. (The 7-device-day figure itself is `python bench/report.py`, not CI.)"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_report_bench_prints_size_and_time_as_json():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "report.py"), "--quick"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["quick"] is True
    assert abs(figures["device_days"] - 7 / 24) < 1e-9
    assert 10_000 < figures["report_bytes"] < figures["target_report_bytes"]
    assert figures["trace_bytes"] > 0
    assert 0 < figures["report_cpu_s"] < figures["target_report_s"]
