"""Taps: a Recorder on live transports, and `vigil centre --record` end to end."""
import json
import signal
import subprocess
import sys
import time

from host.decode import main as decode_main
from host.recording import read_all
from host.recording.tap import Recorder
from host.transport import open_transport
from host.transport.loop import LoopTransport
from tests.test_centre import Dev, heartbeat, hello
from tests.test_centre_cli import recv_frames, write_keys
from tests.vm import REPO


def test_recorder_taps_both_directions_of_a_transport(tmp_path):
    host_end, device_end = LoopTransport.pair(timeout_ms=1000)
    path = tmp_path / "loop.pcapng"
    recorder = Recorder(str(path), meta={"transport": "loop://"})
    recorder.attach(host_end, name="host", device_id=7)
    before = time.time_ns()
    device_end.send(b"\x02\x01\x00")
    assert host_end.recv() == b"\x02\x01\x00"
    host_end.send(b"\x03\x04\x05\x00")
    assert device_end.recv() == b"\x03\x04\x05\x00"
    recorder.close()
    reader, packets = read_all(str(path))
    assert reader.error is None and reader.meta["clock"] == "wall"
    assert [(p.direction, p.data) for p in packets] == [("up", b"\x02\x01\x00"),
                                                        ("down", b"\x03\x04\x05\x00")]
    assert all(before <= p.time_ns <= time.time_ns() for p in packets)
    assert packets[0].interface.meta == {"transport": "loop://a", "device_id": 7}


def test_centre_record_writes_every_link_both_ways(tmp_path, capsys):
    keys = write_keys(tmp_path)
    record = tmp_path / "centre.pcapng"
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "centre", "--listen", "tcp://127.0.0.1:0",
         "--keys", str(keys), "--record", str(record)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("listening on tcp://127.0.0.1:"), first
        url = first.split()[2]
        a = Dev(7)
        with open_transport(url, timeout_ms=3000) as link:
            link.send(a.seal("HELLO", hello()))
            recv_frames(link, a, ["ACK"])
            link.send(a.seal("HEARTBEAT", heartbeat()))
            recv_frames(link, a, ["ACK"])
        # Written live (flushed per packet): the file holds both ACKs while the centre runs.
        # (The tap follows each send, so Ctrl-C at that instant could cut the last one.)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            packets = read_all(str(record))[1]
            if sum(p.direction == "down" for p in packets) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    capsys.readouterr()
    assert decode_main([str(record), "--json", "--key-file", str(keys)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ups = [r["name"] for r in results if r["direction"] == "up"]
    downs = [r["name"] for r in results if r["direction"] == "down"]
    assert ups[:2] == ["HELLO", "HEARTBEAT"]
    assert downs.count("ACK") >= 2
    assert {r["status"] for r in results} == {"ok"}
    reader, packets = read_all(str(record))
    assert packets[0].interface.name == "link1"
    assert reader.meta["transport"] == "tcp://127.0.0.1:0"


def test_centre_record_to_an_unwritable_path_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli", "centre", "--listen", "tcp://127.0.0.1:0",
         "--keys", str(write_keys(tmp_path)), "--record", str(tmp_path / "no" / "x.pcapng")],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("vigil centre: --record ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_frame_splitter_cuts_at_delimiters_across_reads_and_bounds_noise():
    from host.recording.tap import FrameSplitter

    splitter = FrameSplitter(limit=8)
    assert splitter.feed(b"\x01\x02") == []
    assert splitter.feed(b"\x03\x00\x04\x00\x00\x05") == [b"\x01\x02\x03\x00", b"\x04\x00"]
    assert splitter.feed(b"\x05" * 20) == [b"\x05" * 8]  # noise: its first 8 bytes, once
    assert splitter.feed(b"\x05" * 20 + b"\x00\x06\x00") == [b"\x06\x00"]
