"""One conformance suite over every transport (trio check_two_way_stream style), plus URLs."""
import socket
import threading
import time

import pytest

from host.transport import (
    BadUrl,
    TransportClosed,
    TransportError,
    listen,
    open_transport,
)
from host.transport.loop import LoopTransport
from protocol import codec

KEY = bytes(range(16))
# pyserial 3.5's rfc2217 client uses Thread.setDaemon/setName
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:serial.rfc2217")


def _loop():
    return LoopTransport.pair(timeout_ms=2000)


def _tcp():
    listener = listen("tcp://127.0.0.1:0", timeout_ms=2000)
    client = open_transport(listener.url, timeout_ms=2000)
    server = listener.accept(timeout_ms=2000)
    listener.close()
    return client, server


def _pty_serial():
    master = open_transport("pty://", timeout_ms=2000)
    slave = open_transport("serial://" + master.peer_path, timeout_ms=2000)
    return master, slave


class _Rfc2217Server:
    """pyserial's RFC 2217 PortManager bridging one TCP client to a serial port (the pty's
    slave), as in pyserial's examples/rfc2217_server.py."""

    def __init__(self, port_path):
        import serial
        import serial.rfc2217

        class PtySerial(serial.Serial):
            """A pty has no modem lines: report them idle instead of failing the ioctl."""
            cts = dsr = ri = cd = property(lambda self: False)

            def _update_dtr_state(self):
                pass

            def _update_rts_state(self):
                pass

        self.serial = PtySerial(port_path, timeout=0.05)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "rfc2217://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.running = True
        self.sock = None
        self._manager = serial.rfc2217.PortManager
        threading.Thread(target=self._serve, daemon=True).start()

    def write(self, data):  # PortManager's telnet replies
        self.sock.sendall(data)

    def _serve(self):
        self.sock, _ = self.listener.accept()
        self._rfc2217 = self._manager(self.serial, self)  # negotiates on creation
        threading.Thread(target=self._to_socket, daemon=True).start()
        try:
            while self.running:
                data = self.sock.recv(4096)
                if not data:
                    break
                self.serial.write(b"".join(self._rfc2217.filter(data)))
        except OSError:
            pass

    def _to_socket(self):
        try:
            while self.running:
                data = self.serial.read(self.serial.in_waiting or 1)
                if data:
                    self.sock.sendall(b"".join(self._rfc2217.escape(data)))
        except (OSError, Exception):  # noqa: BLE001 - the test tore the bridge down
            pass

    def close(self):
        self.running = False
        for thing in (self.sock, self.listener):
            if thing is not None:
                thing.close()
        self.serial.close()


def _rfc2217():
    master = open_transport("pty://", timeout_ms=2000)
    server = _Rfc2217Server(master.peer_path)
    client = open_transport(server.url, timeout_ms=2000)
    close = master._close_internal

    def close_both():
        server.close()
        close()

    master._close_internal = close_both
    return master, client


def _socket():
    """socket:// (pyserial's raw TCP handler, what ser2net serves) against a TCP server."""
    listener = listen("tcp://127.0.0.1:0", timeout_ms=2000)
    client = open_transport("socket://127.0.0.1:%d" % listener.port, timeout_ms=2000)
    server = listener.accept(timeout_ms=2000)
    listener.close()
    return server, client


PAIRS = {"loop": _loop, "tcp": _tcp, "pty+serial": _pty_serial, "pty+rfc2217": _rfc2217,
         "tcp+socket": _socket}


@pytest.fixture(params=list(PAIRS))
def pair(request):
    a, b = PAIRS[request.param]()
    yield a, b
    a.close()
    b.close()


def frames(n, size=None):
    sender = codec.Sender(7, 1, KEY)
    if size is None:
        return [sender.seal("HEARTBEAT", dict(battery_mv=3900, battery_pct=80, charging=0,
                                              link_quality=i % 100, queue_depth=i, uptime_s=i,
                                              status=0, mode=1, interval_s=900))
                for i in range(n)]
    return [bytes([1 + (i + j) % 255 for j in range(size)]) + b"\x00" for i in range(n)]


def test_round_trip_both_ways(pair):
    a, b = pair
    for x, y in ((a, b), (b, a)):
        sent = frames(5)
        for f in sent:
            x.send(f)
        assert [y.recv() for _ in sent] == sent


def test_frames_decode_after_transport(pair):
    a, b = pair
    ring = codec.Keyring()
    ring.add(7, 1, KEY)
    receiver = codec.Receiver(ring)
    for f in frames(3):
        a.send(f)
    got = [receiver.feed(b.recv())[0] for _ in range(3)]
    assert [g.counter for g in got] == [1, 2, 3]


def test_split_and_joined_writes(pair):
    a, b = pair
    f1, f2, f3 = frames(3)
    a._send_internal(f1[:3])
    assert b.recv(timeout_ms=50) is None  # a partial frame is not a frame
    a._send_internal(f1[3:] + f2 + f3[:7])
    a._send_internal(f3[7:])
    assert [b.recv(), b.recv(), b.recv()] == [f1, f2, f3]


def test_noise_and_empty_blocks_skipped(pair):
    a, b = pair
    (f,) = frames(1)
    a._send_internal(b"\x00\x00\x00" + f + b"\x00")
    assert b.recv() == f and b.recv(timeout_ms=30) is None


def test_large_frames_and_bursts(pair):
    a, b = pair
    sent = frames(40, size=4000) + frames(200)
    thread = threading.Thread(target=lambda: [a.send(f) for f in sent])
    thread.start()
    got = [b.recv(timeout_ms=5000) for _ in sent]
    thread.join(5)
    assert got == sent


def test_missing_delimiter_added_and_bad_frames_refused(pair):
    a, b = pair
    a.send(b"\x01\x02\x03")
    assert b.recv() == b"\x01\x02\x03\x00"
    with pytest.raises(ValueError):
        a.send(b"")
    with pytest.raises(ValueError):
        a.send(b"\x01\x00\x02\x00")


def test_recv_timeout(pair):
    a, b = pair
    start = time.monotonic()
    assert b.recv(timeout_ms=0) is None
    assert b.recv(timeout_ms=80) is None
    elapsed = time.monotonic() - start
    assert 0.07 <= elapsed < 1.0


def test_recv_waits_for_a_late_frame(pair):
    a, b = pair
    (f,) = frames(1)
    timer = threading.Timer(0.05, a.send, (f,))
    timer.start()
    assert b.recv(timeout_ms=2000) == f
    timer.join()


def test_own_close(pair):
    a, b = pair
    a.close()
    a.close()  # idempotent
    assert a.closed
    with pytest.raises(TransportClosed):
        a.send(frames(1)[0])
    with pytest.raises(TransportClosed):
        a.recv(timeout_ms=0)
    assert issubclass(TransportClosed, OSError)


def test_close_wakes_a_blocked_receiver(pair):
    a, b = pair
    result = []

    def receive():
        try:
            result.append(b.recv(timeout_ms=5000))
        except TransportClosed as e:
            result.append(e)

    thread = threading.Thread(target=receive)
    thread.start()
    time.sleep(0.05)
    start = time.monotonic()
    b.close()
    thread.join(3)
    assert not thread.is_alive() and time.monotonic() - start < 2
    assert isinstance(result[0], TransportClosed) or result[0] is None


def test_peer_close_after_buffered_frames(pair):
    a, b = pair
    sent = frames(3)
    for f in sent:
        a.send(f)
    if b.peer_close_visible:
        time.sleep(0.02)
        a.close()
        assert [b.recv(timeout_ms=500) for _ in sent] == sent  # sent before the close
        with pytest.raises(TransportClosed):
            b.recv(timeout_ms=500)
        return
    # A serial line: a hang-up flushes what is still in flight (like a pulled cable), so the
    # frames must arrive before it, whole and in order; after it the receiver never hangs.
    assert [b.recv(timeout_ms=2000) for _ in sent] == sent
    a.close()
    try:
        assert b.recv(timeout_ms=100) is None
    except TransportClosed:
        pass


def test_taps_record_both_directions(pair):
    a, b = pair
    log = []
    a.add_tap(lambda d, f, t: log.append(("a", d, f)))
    b.add_tap(lambda d, f, t: log.append(("b", d, f)))
    (f,) = frames(1)
    a.send(f)
    b.recv()
    assert log == [("a", "tx", f), ("b", "rx", f)]


# ---- URLs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("nonsense", "not a transport URL"),
    ("gopher://x", "unknown scheme gopher://"),
    ("tcp://localhost", "expected tcp://HOST:PORT"),
    ("tcp://localhost:99999", "expected tcp://HOST:PORT"),
    ("emu://board1", "expected emu://[DEVICE_ID]"),
    ("emu://7?speed=2", "unknown option speed"),
    ("socket://nohost", "expected socket://HOST:PORT"),
    ("replay://file.pcapng", "not available yet"),
    ("pty://foo", "pty:// takes no path"),
    ("serial://dev/ttyUSB0", "three slashes"),
    ("serial:///dev/ttyUSB0?speed=9", "unknown option speed"),
])
def test_bad_urls_one_line(url, message):
    with pytest.raises(BadUrl) as info:
        open_transport(url)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_host_refusals_are_oserrors():
    listener = listen("tcp://127.0.0.1:0")
    url = listener.url
    listener.close()
    with pytest.raises(TransportError) as info:
        open_transport(url, timeout_ms=500)
    assert isinstance(info.value, OSError) and url in str(info.value)
    with pytest.raises(TransportError) as info:
        open_transport("serial:///dev/does-not-exist")
    assert "/dev/does-not-exist" in str(info.value) and "\n" not in str(info.value)


def test_loop_echo_and_single_link_listener():
    with open_transport("loop://") as echo:
        echo.send(b"\x05\x00")
        assert echo.recv() == b"\x05\x00"
    single = listen("pty://")
    link = single.accept()
    assert link is not None and single.accept(timeout_ms=0) is None
    single.close()
    assert link.closed


def test_register_a_backend():
    from host import transport

    class Fake(LoopTransport):
        pass

    transport.register("fake", Fake)
    try:
        t = open_transport("fake://x")
        assert isinstance(t, Fake)
        t.close()
    finally:
        del transport.BACKENDS["fake"]


def test_tcp_close_waits_for_the_peer_so_its_late_replies_do_not_reset_it(monkeypatch):
    """The peer is still reading (and answering every frame) when this side closes: a
    graceful close (FIN, then reading until the peer closes) lets it read everything and
    answer everything; an abortive one (unread bytes, or bytes arriving after the close)
    resets the connection and the peer's next send fails."""
    from host.transport import tcp

    monkeypatch.setattr(tcp, "CLOSE_QUIET_S", 5.0)  # wait for the peer however slow it is
    listener = listen("tcp://127.0.0.1:0", timeout_ms=2000)
    client = open_transport(listener.url, timeout_ms=2000)
    server = listener.accept(timeout_ms=2000)
    listener.close()
    sent = frames(200)
    report = {"got": [], "replies": 0, "error": None}

    def peer():
        time.sleep(0.2)  # the client has sent everything and is closing by now
        with server:
            try:
                while True:
                    frame = server.recv(timeout_ms=5000)
                    if frame is None:
                        return
                    report["got"].append(frame)
                    server.send(b"\x05\x01\x02\x03\x00")
                    report["replies"] += 1
            except TransportClosed:
                return  # the client's FIN, after its last frame
            except OSError as e:
                report["error"] = e

    thread = threading.Thread(target=peer)
    thread.start()
    for f in sent:
        client.send(f)
    started = time.monotonic()
    client.close()
    elapsed_s = time.monotonic() - started
    thread.join(5)
    assert report["error"] is None and report["got"] == sent and report["replies"] == 200
    assert 0.1 < elapsed_s < 5.0  # it waited for the peer, and not for the whole bound


def test_tcp_close_of_a_peer_that_never_closes_is_bounded():
    from host.transport import tcp

    client, server = _tcp()
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < tcp.CLOSE_QUIET_S + 0.5
    server.close()
