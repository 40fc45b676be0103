"""bench/recording.py runs (small sizes) and ends with one JSON line of its figures."""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "recording.py"


def test_bench_recording_quick_prints_its_figures_as_json():
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--frames", "3000",
                          "--replay-frames", "100"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.splitlines()[-1])
    assert figures["decode_frames"] == 3000
    assert figures["decode_valid"] + figures["decode_refused"] == 3000
    assert figures["decode_refused"] < 30  # 0.1 % line noise, a frame may be hit twice
    assert figures["replay_frames"] == figures["replay_delivered"] == 100
    assert figures["decode_frames_per_s"] > 0 and figures["replay_p99_ms"] >= 0
