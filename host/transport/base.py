"""The Transport base class: one frame stream with send/recv/close and timeouts.

Backends implement three small methods and nothing else:
    _recv_internal(timeout_s) -> bytes   whatever arrived within timeout_s (None = wait
                                         forever); b"" if nothing did; raise TransportClosed
                                         when the peer has gone
    _send_internal(data)                 write all of data
    _close_internal()                    release the resource; wake a blocked receiver
The base class owns frame splitting at 0x00 delimiters, timeouts, close state and recording
taps, so every backend behaves the same (tests/test_transport.py runs one suite over all).
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

    def __init__(self, url, timeout_ms=1000):
        self.url = url
        self.timeout_ms = timeout_ms
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
        self._send_internal(frame)
        self._tap("tx", frame)

    def recv(self, timeout_ms=DEFAULT):
        """The next frame (ending in 0x00), or None if none arrived within timeout_ms
        (default: the transport's; 0 polls; None waits forever). Raises TransportClosed once
        this side is closed, or the peer has gone and every frame it sent was returned."""
        if self._closed:
            raise TransportClosed("%s is closed" % self.url)
        if timeout_ms is DEFAULT:
            timeout_ms = self.timeout_ms
        deadline = None if timeout_ms is None else self._clock() + timeout_ms / 1000
        while True:
            if self._frames:
                frame = self._frames.popleft()
                self._tap("rx", frame)
                return frame
            if self._peer_gone:
                raise TransportClosed("%s: the peer closed the connection" % self.url)
            remaining_s = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                data = self._recv_internal(remaining_s)
            except TransportClosed:
                if self._closed:
                    raise
                self._peer_gone = True
                continue
            if data:
                self._split(data)
            elif deadline is not None and self._clock() >= deadline:
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

    def _clock(self):
        """Seconds for recv timeouts: real time, or a backend's virtual clock (BLE on the
        emulator's radio)."""
        return time.monotonic()

    def _recv_internal(self, timeout_s):
        raise NotImplementedError

    def _send_internal(self, data):
        raise NotImplementedError

    def _close_internal(self):
        raise NotImplementedError
