"""loop:// — in-process frames, for tests. `loop://` alone echoes what it is sent;
`LoopTransport.pair()` gives two connected ends."""
import threading
from collections import deque

from host.transport.base import Transport, TransportClosed


class _Pipe:
    def __init__(self):
        self.chunks = deque()
        self.closed = False
        self.cond = threading.Condition()


class LoopTransport(Transport):
    def __init__(self, url="loop://", timeout_ms=1000, _pipes=None):
        super().__init__(url, timeout_ms)
        if _pipes is None:
            pipe = _Pipe()
            _pipes = (pipe, pipe)
        self._in, self._out = _pipes

    @classmethod
    def pair(cls, timeout_ms=1000):
        a_to_b, b_to_a = _Pipe(), _Pipe()
        return (cls("loop://a", timeout_ms, (b_to_a, a_to_b)),
                cls("loop://b", timeout_ms, (a_to_b, b_to_a)))

    def _recv_internal(self, timeout_s):
        pipe = self._in
        with pipe.cond:
            pipe.cond.wait_for(lambda: pipe.chunks or pipe.closed, timeout_s)
            if pipe.chunks:
                data = b"".join(pipe.chunks)
                pipe.chunks.clear()
                return data
            if pipe.closed:
                raise TransportClosed(self.url)
            return b""

    def _send_internal(self, data):
        pipe = self._out
        with pipe.cond:
            if pipe.closed:
                raise TransportClosed("%s: the peer closed the connection" % self.url)
            pipe.chunks.append(bytes(data))
            pipe.cond.notify_all()

    def _close_internal(self):
        for pipe in (self._in, self._out):
            with pipe.cond:
                pipe.closed = True
                pipe.cond.notify_all()
