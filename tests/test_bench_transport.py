"""bench/transport.py runs and ends with one JSON object (the ratio itself is a figure for the
closing note, not a timed test: the machine's load moves it)."""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "transport.py"


def test_bench_transport_prints_json_last():
    out = subprocess.run([sys.executable, str(BENCH), "--rounds", "30"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["rounds"] == 30 and figures["vigil_median_us"] > 0
    assert figures["raw_median_us"] > 0 and figures["ratio"] > 0
