"""The Transport base class: one frame stream with send/recv/close and timeouts.

Backends implement three small methods and nothing else:
    _recv_internal(timeout_s) -> bytes   whatever arrived within timeout_s (None = wait
                                         forever); b"" if nothing did; raise TransportClosed
                                         when the peer has gone
    _send_internal(data)                 write all of data
    _close_internal()                    release the resource; wake a blocked receiver
The base class owns frame splitting at 0x00 delimiters, timeouts, close state and recording
taps, so every backend behaves the same (tests/test_transport.py runs one suite over all).
It also owns three things a bench link needs (docs/LINK.md, hil/README.md):
- `clock`: timeouts run on it. None is wall time; a virtual clock (an emulated board's)
  has now_s() and advance_s(s) -> True when the board did something before s passed, so a
  recv() on an emulated board spends virtual time, not wall time.
- `wake_line`: the LINK_WAKE / LINK_READY handshake. When set, send() pulls the wake line,
  waits up to ready_timeout_ms for the ready line, writes, then releases the wake line; if
  ready never rises the frame is not written (TransportTimeout) and wake stays asserted,
  so the device is never sent bytes while its UART sleeps.
- `reconnect_ms`: a port that vanishes (a reset re-enumerates the USB bridge) is reopened
  by the backend's `_reopen_internal()` for up to reconnect_ms before the link counts as gone.
"""
import time
from collections import deque

DEFAULT = object()  # "use the transport's timeout_ms"


class BadUrl(ValueError):
    """A transport URL that cannot be used; the message is one line for the user."""


class TransportError(OSError):
    """A host I/O problem on a transport (like pyserial's SerialException, an OSError)."""


class TransportClosed(TransportError):
    """The transport, or its peer, is closed."""


class TransportTimeout(TransportError):
    """A send could not complete within the timeout."""


class Transport:
    """A stream of frames. A frame on the wire is COBS bytes ending in one 0x00; send() takes
    and recv() returns frames in that form, so `Receiver.feed(transport.recv())` just works."""

    max_pending = 65536  # bytes without a delimiter before they are dropped as noise
    peer_close_visible = True  # False for serial lines, where a peer's close is not seen

    def __init__(self, url, timeout_ms=1000, ready_timeout_ms=2000, reconnect_ms=0):
        self.url = url
        self.timeout_ms = timeout_ms
        self.ready_timeout_ms = ready_timeout_ms
        self.reconnect_ms = reconnect_ms
        self.clock = None
        self.wake_line = None
        self.reconnects = 0
        self.taps = []
        self.dropped_bytes = 0
        self._pending = bytearray()
        self._discarding = False
        self._frames = deque()
        self._closed = False
        self._peer_gone = False

    # ---- public API -------------------------------------------------------------------------

    def send(self, frame):
        """Send one frame; a missing final 0x00 is added. Raises ValueError for a frame with a
        0x00 inside it (that would be two frames), TransportClosed once closed."""
        frame = bytes(frame)
        if not frame or frame == b"\x00":
            raise ValueError("an empty frame cannot be sent")
        if frame[-1] != 0:
            frame += b"\x00"
        if 0 in frame[:-1]:
            raise ValueError("a frame must not contain 0x00 before its end (COBS-encode it)")
        if self._closed:
            raise TransportClosed("%s is closed" % self.url)
        if self.wake_line is not None:
            self._await_ready()
        try:
            self._send_internal(frame)
        except TransportClosed:
            if self._closed or not self.reconnect_ms:
                raise
            self._reconnect()
            self._send_internal(frame)
        if self.wake_line is not None:
            self.wake_line.set_wake(False)
        self._tap("tx", frame)

    def recv(self, timeout_ms=DEFAULT):
        """The next frame (ending in 0x00), or None if none arrived within timeout_ms
        (default: the transport's; 0 polls; None waits forever). Raises TransportClosed once
        this side is closed, or the peer has gone and every frame it sent was returned."""
        if self._closed:
            raise TransportClosed("%s is closed" % self.url)
        if timeout_ms is DEFAULT:
            timeout_ms = self.timeout_ms
        now_s = self._now_s
        deadline = None if timeout_ms is None else now_s() + timeout_ms / 1000
        while True:
            if self._frames:
                frame = self._frames.popleft()
                self._tap("rx", frame)
                return frame
            if self._peer_gone:
                raise TransportClosed("%s: the peer closed the connection" % self.url)
            remaining_s = None if deadline is None else max(0.0, deadline - now_s())
            try:
                data = self._receive_some(remaining_s)
            except TransportClosed:
                if self._closed:
                    raise
                if self.reconnect_ms:
                    self._reconnect()
                    continue
                self._peer_gone = True
                continue
            if data:
                self._split(data)
            elif deadline is not None and now_s() >= deadline:
                return None

    def close(self):
        """Close; idempotent. A receiver blocked in another thread wakes with TransportClosed."""
        if not self._closed:
            self._closed = True
            self._close_internal()

    @property
    def closed(self):
        return self._closed

    def add_tap(self, tap):
        """Call tap(direction, frame, time_ns) for every frame sent ("tx") or returned ("rx"):
        the hook for recordings (pcapng)."""
        self.taps.append(tap)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<%s %s%s>" % (type(self).__name__, self.url, " closed" if self._closed else "")

    # ---- helpers ------------------------------------------------------------------------------

    def _now_s(self):
        return time.monotonic() if self.clock is None else self.clock.now_s()

    def _receive_some(self, remaining_s):
        clock = self.clock
        if clock is None:
            return self._recv_internal(remaining_s)
        # A virtual clock: take what is there, else let the board run until it does something
        # (or the time is up), then look again; bytes a board process just wrote to a pty
        # may need a moment of wall time to cross it.
        data = self._recv_internal(0)
        if data or remaining_s == 0:
            return data
        active = clock.advance_s(remaining_s if remaining_s is not None else 3600.0)
        return self._recv_internal(clock.settle_s if active else 0)

    def _await_ready(self):
        line = self.wake_line
        line.set_wake(True)
        if line.ready():
            return
        now_s = self._now_s
        deadline = now_s() + self.ready_timeout_ms / 1000
        while not line.ready():
            remaining_s = deadline - now_s()
            if remaining_s <= 0:
                raise TransportTimeout(
                    "%s: LINK_READY did not rise within %d ms of LINK_WAKE; frame kept, not sent"
                    % (self.url, self.ready_timeout_ms))
            if self.clock is None:
                line.wait_ready(remaining_s)
            else:
                self.clock.advance_s(min(remaining_s, 0.005))

    def _reconnect(self):
        deadline = time.monotonic() + self.reconnect_ms / 1000
        last = None
        while time.monotonic() < deadline and not self._closed:
            try:
                self._reopen_internal()
            except TransportError as e:
                last = e
                time.sleep(0.02)
                continue
            self.reconnects += 1
            self._pending.clear()  # a torn frame from before the reset is noise
            return
        raise TransportClosed("%s: the port went away and did not come back within %d ms%s"
                              % (self.url, self.reconnect_ms, " (%s)" % last if last else ""))

    def _tap(self, direction, frame):
        if self.taps:
            now_ns = time.time_ns()
            for tap in self.taps:
                tap(direction, frame, now_ns)

    def _split(self, data):
        start = 0
        while start < len(data):
            zero = data.find(b"\x00", start)
            end = len(data) if zero < 0 else zero
            if self._discarding:
                self.dropped_bytes += end - start
            else:
                self._pending += data[start:end]
                if len(self._pending) > self.max_pending:
                    self.dropped_bytes += len(self._pending)
                    self._pending.clear()
                    self._discarding = True
            if zero < 0:
                return
            if self._pending:
                self._frames.append(bytes(self._pending) + b"\x00")
                self._pending.clear()
            self._discarding = False
            start = zero + 1

    # ---- backends -------------------------------------------------------------------------------

    def _recv_internal(self, timeout_s):
        raise NotImplementedError

    def _send_internal(self, data):
        raise NotImplementedError

    def _close_internal(self):
        raise NotImplementedError

    def _reopen_internal(self):
        """Open the same port again after it vanished; raise TransportError while it is not
        back. Backends that cannot reopen leave this alone (no reconnect)."""
        raise TransportClosed("%s cannot be reopened" % self.url)


class WakeLine:
    """The LINK_WAKE / LINK_READY pair as the peer sees it (docs/LINK.md). Implementations:
    a USB-serial adapter's RTS/CTS (host.transport.serial.ModemLines), the pty board's side
    channel (host.transport.sidechannel.SideChannel), and FakeWakeLine for tests."""

    def set_wake(self, asserted):
        raise NotImplementedError

    def ready(self):
        raise NotImplementedError

    def wait_ready(self, timeout_s):
        """Block (wall time) until ready() or timeout_s passed."""
        deadline = time.monotonic() + timeout_s
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.ready()


class FakeWakeLine(WakeLine):
    """A wake line whose device raises READY `delay_s` after WAKE (None: never), for tests."""

    def __init__(self, delay_s=0.0, clock=None):
        self.delay_s = delay_s
        self.clock = clock
        self.wake = False
        self.history = []
        self._asserted_at = None

    def _now(self):
        return time.monotonic() if self.clock is None else self.clock.now_s()

    def set_wake(self, asserted):
        self.wake = bool(asserted)
        self.history.append(("wake", self.wake))
        self._asserted_at = self._now() if asserted else None

    def ready(self):
        return (self.delay_s is not None and self._asserted_at is not None and
                self._now() - self._asserted_at >= self.delay_s)

