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
