"""A recording tap (host/recording/tap.py, on the Transport base class's tap hook) on every
transport: loop, tcp, pty+serial, pty+rfc2217 and tcp+socket (the pairs of the transport
conformance suite), emu:// (an emulated board's link) and ble:// (bleak on bumble). Each
recording holds exactly the frames that crossed, both ways, with the link's URL."""
import pytest

from host.recording import read_all
from host.recording.tap import Recorder
from host.transport import open_transport
from protocol import codec
from tests.test_transport import PAIRS


def _recorded(path):
    reader, packets = read_all(str(path))
    assert reader.error is None
    return packets


@pytest.mark.parametrize("name", list(PAIRS))
def test_every_byte_stream_transport_records_both_ways(name, tmp_path):
    host_end, device_end = PAIRS[name]()
    path = tmp_path / (name + ".pcapng")
    recorder = Recorder(str(path), meta={"transport": host_end.url})
    try:
        recorder.attach(host_end, device_id=9)
        device_end.send(b"\x02up\x00")
        assert host_end.recv(timeout_ms=2000) == b"\x02up\x00"
        host_end.send(b"\x03down\x00")
        assert device_end.recv(timeout_ms=2000) == b"\x03down\x00"
    finally:
        recorder.close()
        host_end.close()
        device_end.close()
    packets = _recorded(path)
    assert [(p.direction, p.data) for p in packets] == [("up", b"\x02up\x00"),
                                                        ("down", b"\x03down\x00")]
    assert packets[0].interface.meta == {"transport": host_end.url, "device_id": 9}


def _frames(packets, key, device_id):
    ring = codec.Keyring()
    ring.add(device_id, 0, key)
    out = []
    for packet in packets:
        receiver = codec.Receiver(ring, downlink=packet.direction == "down",
                                  check_replay=False)
        out += [(packet.direction, f.name) for f in receiver.feed(packet.data)
                if hasattr(f, "fields")]
    return out


def test_an_emulated_board_link_records_its_frames(tmp_path):
    link = open_transport("emu://1004?seed=3", timeout_ms=5000)
    path = tmp_path / "emu.pcapng"
    recorder = Recorder(str(path), meta={"transport": link.url})
    try:
        recorder.attach(link, device_id=1004)
        hello = link.recv()
        up = codec.Receiver(_ring(link.board.key, 1004)).feed(hello)[0]
        assert up.name == "HELLO"
        down = codec.Sender(1004, 0, link.board.key, downlink=True)
        link.send(down.seal("ACK", {"highest": up.counter, "bitmap": 0}))
    finally:
        recorder.close()
        link.close()
    packets = _recorded(path)
    assert _frames(packets, link.board.key, 1004) == [("up", "HELLO"), ("down", "ACK")]
    assert packets[0].interface.meta["transport"].startswith("emu://1004")


def _ring(key, device_id):
    ring = codec.Keyring()
    ring.add(device_id, 0, key)
    return ring


def test_a_ble_link_records_its_frames(tmp_path):
    pytest.importorskip("bumble")
    pytest.importorskip("bleak")
    from host.emulator import World
    from tests.test_ble import DEVICE, KEY, make_device, open_ble, read_frames, uplink_receiver

    world = World(seed=3)
    try:
        dev = make_device(world, tick=False)
        world.run_until(2000)
        link = open_ble(world, dev)
        path = tmp_path / "ble.pcapng"
        recorder = Recorder(str(path), meta={"transport": link.url})
        recorder.attach(link, device_id=DEVICE)
        sender = codec.Sender(DEVICE, 0, KEY, downlink=True)
        link.send(sender.seal("TIME_SYNC", {"utc_ms": 1_767_225_600_000}))
        assert [f.name for f in read_frames(link, uplink_receiver(), 500)] == ["EVENT"]
        recorder.close()
        link.close()
    finally:
        world.close()
    packets = _recorded(path)
    assert _frames(packets, KEY, DEVICE) == [("down", "TIME_SYNC"), ("up", "EVENT")]
    assert packets[0].interface.meta["transport"].startswith("ble://")


TWO_DEVICES = """
[scenario]
name = "two-devices"
duration_s = 900
seed = 5

[[device]]
id = 3001
location = [52.0907, 5.1214]
button = [{ at_s = 300, hold_ms = 2500 }]

[[device]]
id = 3002
location = [52.1007, 5.1214]
"""


def test_vigil_emulate_record_writes_one_file_with_an_interface_per_device(tmp_path):
    import json
    import subprocess
    import sys

    from tests.vm import REPO

    scenario = tmp_path / "two.toml"
    scenario.write_text(TWO_DEVICES)
    record, keys = tmp_path / "run.pcapng", tmp_path / "keys.json"
    run = subprocess.run([sys.executable, "-m", "host.cli", "emulate", str(scenario), "--json",
                          "--record", str(record), "--keys", str(keys)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    reader, packets = read_all(str(record))
    assert reader.error is None and reader.meta["devices"] == [3001, 3002]
    frames = [p for p in packets if not p.interface.is_stimuli]
    assert {p.interface.device_id for p in frames} == {3001, 3002}
    assert sum(p.direction == "up" for p in frames) == summary["frames_up"]
    assert sum(p.direction == "down" for p in frames) == summary["frames_down"]
    assert any(p.interface.is_stimuli and p.stimulus()["kind"] == "button" for p in packets)
    decoded = subprocess.run([sys.executable, "-m", "host.cli", "decode", str(record), "--json",
                              "--key-file", str(keys)], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    rows = [json.loads(line) for line in decoded.stdout.splitlines()]
    names = {r["name"] for r in rows if r.get("status") == "ok"}
    assert {"HELLO", "ALARM", "ACK"} <= names
    assert all(r.get("status") in ("ok", "retransmission") for r in rows
               if r.get("kind") != "stimulus")
