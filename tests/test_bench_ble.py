"""bench/transport.py --link ble and bench/ble_heap.py run and end with one JSON object."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run(script, *args):
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_bench_ble_round_trip_prints_json_last():
    pytest.importorskip("bumble")
    figures = run("transport.py", "--link", "ble", "--rounds", "5")
    assert figures["link"] == "ble" and figures["rounds"] == 5
    assert 0 < figures["virtual_rtt_ms_median"] <= figures["virtual_rtt_ms_p99"]


def test_bench_ble_heap_counts_the_queue_it_fills():
    from host.emulator.vmtools import VmUnavailable, check_available
    try:
        check_available()
    except VmUnavailable as e:
        pytest.skip(str(e))
    figures = run("ble_heap.py", "--frames", "16", "--frame-bytes", "200")
    assert figures["frames"] == 16
    # The queue holds every byte of the 16 frames (plus the 0x00 each starts with).
    assert figures["ble_link_full_queue_bytes"] >= 16 * 201
    assert figures["ble_total_bytes"] > figures["uart_link_total_bytes"] > 0
