"""The transport base class's bench duties (host/transport/base.py): the wake/ready
handshake, reconnect after a port vanishes, timeouts on a virtual clock, scheme plugins by
entry point; and the conformance of the two device links the HIL rig uses, emu:// and the
pty board (`vigil device --listen pty`), which run firmware instead of echoing."""
import os
import sys
import time

import pytest

from host.transport import BadUrl, open_transport
from host.transport.base import FakeWakeLine, TransportTimeout
from host.transport.loop import LoopTransport


class _Clock:
    """A virtual clock for the base class: advance_s() jumps, nothing ever arrives."""
    virtual = True
    settle_s = 0

    def __init__(self):
        self.t = 0.0

    def now_s(self):
        return self.t

    def advance_s(self, seconds):
        self.t += seconds
        return False


def test_wake_handshake_waits_for_ready_then_releases():
    a, b = LoopTransport.pair()
    clock = _Clock()
    a.clock = clock
    a.wake_line = line = FakeWakeLine(delay_s=0.3, clock=clock)
    a.send(b"\x05\x00")
    assert b.recv(timeout_ms=100) == b"\x05\x00"
    assert line.history == [("wake", True), ("wake", False)]
    assert 0.3 <= clock.t < 0.32            # it waited for READY, on the transport's clock


def test_no_ready_no_send_and_wake_stays_asserted():
    a, b = LoopTransport.pair()
    a.clock = _Clock()
    a.ready_timeout_ms = 500
    a.wake_line = line = FakeWakeLine(delay_s=None)
    with pytest.raises(TransportTimeout) as info:
        a.send(b"\x05\x00")
    assert "LINK_READY did not rise within 500 ms" in str(info.value)
    assert "\n" not in str(info.value)
    assert line.wake is True                 # the peer keeps asking (docs/LINK.md step 5)
    assert b.recv(timeout_ms=50) is None     # never sent into a sleeping UART


def test_recv_timeout_runs_on_a_virtual_clock():
    a, _b = LoopTransport.pair()
    clock = a.clock = _Clock()
    start = time.monotonic()
    assert a.recv(timeout_ms=3_600_000) is None   # an hour of virtual time
    assert clock.t >= 3600 and time.monotonic() - start < 1.0


def test_reconnect_after_the_port_vanishes(tmp_path):
    """A USB bridge re-enumerates on reset: its path goes away and comes back (here a
    symlink moved to a new pty); the transport reopens it and frames flow again."""
    link = tmp_path / "ttyUSB0"
    first = open_transport("pty://")
    os.symlink(first.peer_path, link)
    port = open_transport("serial://%s" % link, timeout_ms=500, reconnect_ms=3000)
    first.send(b"\x01\x00")
    assert port.recv() == b"\x01\x00"
    first.close()                            # the board resets: the port vanishes...
    os.unlink(link)
    second = open_transport("pty://")
    os.symlink(second.peer_path, link)       # ...and comes back
    second.send(b"\x02\x00")
    got = port.recv(timeout_ms=2000)
    if got is None:                          # sent before the reopen: the bytes were lost
        second.send(b"\x02\x00")
        got = port.recv(timeout_ms=2000)
    assert got == b"\x02\x00" and port.reconnects == 1
    port.send(b"\x03\x00")
    assert second.recv() == b"\x03\x00"
    port.close()
    second.close()


def test_reconnect_gives_up_with_one_line(tmp_path):
    link = tmp_path / "ttyUSB0"
    first = open_transport("pty://")
    os.symlink(first.peer_path, link)
    port = open_transport("serial://%s" % link, timeout_ms=2000, reconnect_ms=300)
    first.close()
    os.unlink(link)
    with pytest.raises(OSError) as info:
        port.recv()
    assert "did not come back within 300 ms" in str(info.value)
    assert "\n" not in str(info.value)
    port.close()


def test_scheme_plugin_by_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "vigil_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vigil-fake-plugin\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[vigil.transports]\nfakeplug = vigil_fake_plugin:Plugged\n")
    (tmp_path / "vigil_fake_plugin.py").write_text(
        "from host.transport.loop import LoopTransport\n"
        "class Plugged(LoopTransport):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    t = open_transport("fakeplug://x")
    try:
        assert type(t).__name__ == "Plugged"
        t.send(b"\x07\x00")
        assert t.recv() == b"\x07\x00"
    finally:
        t.close()
        sys.modules.pop("vigil_fake_plugin", None)
    with pytest.raises(BadUrl):
        open_transport("notplugged://x")


# ---- the device links: emu:// and the pty board ------------------------------------------

def _emu():
    link = open_transport("emu://1004?seed=3", timeout_ms=5000)
    return link, link.board.key, link.close


def _pty_board():
    from hil.ptyboard import PtyBoardProcess
    from host.transport.sidechannel import RemoteClock, SideChannel

    proc = PtyBoardProcess(seed=3)
    channel = SideChannel(proc.info["control"])
    link = open_transport("serial://" + proc.info["link"], timeout_ms=5000)
    link.clock = RemoteClock(channel)

    def close():
        link.close()
        channel.close()
        proc.close()
    return link, bytes.fromhex(proc.info["key"]), close


DEVICE_LINKS = {"emu": _emu, "pty-board": _pty_board}


@pytest.fixture(params=list(DEVICE_LINKS), scope="module")
def device_link(request):
    link, key, close = DEVICE_LINKS[request.param]()
    yield link, key
    close()


def test_device_link_hello_ack_and_virtual_timeouts(device_link):
    from protocol import codec

    link, key = device_link
    ring = codec.Keyring()
    ring.add(1004, 0, key)
    receiver = codec.Receiver(ring)
    taps = []
    link.add_tap(lambda d, f, t: taps.append(d))
    start = time.monotonic()
    hello = receiver.feed(link.recv(timeout_ms=5000))[0]
    assert hello.name == "HELLO" and hello.device_id == 1004
    # an ACK goes down; then a 20-minute wait (the first heartbeat is due at 15 min) runs
    # on the board's clock, not the wall's, and returns each frame the moment it is sent
    sender = codec.Sender(1004, 0, key, downlink=True)
    link.send(sender.seal("ACK", {"highest": hello.counter, "bitmap": 0}))
    t0 = link.clock.now_s()
    names = []
    while link.clock.now_s() - t0 < 1200:
        frame = link.recv(timeout_ms=1200_000 - (link.clock.now_s() - t0) * 1000)
        if frame is None:
            break
        names.extend(f.name for f in receiver.feed(frame) if isinstance(f, codec.Frame))
    assert link.clock.now_s() - t0 >= 1200
    assert "HEARTBEAT" in names
    assert time.monotonic() - start < 60
    assert taps[:2] == ["rx", "tx"] and set(taps[2:]) == {"rx"}
