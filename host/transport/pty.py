"""pty:// — a new pseudo-terminal pair in raw mode. This transport owns the master side; the
peer (the MicroPython VM, an emulated board, or `serial://` + `peer_path` through pyserial)
uses the slave side. Raw mode matters: a cooked tty mangles 0x03, 0x0D, 0x1A and 0x7F.

Like a UART, a peer that closes the slave is not seen here (the slave stays open on this side,
so peers can come and go); a peer on the slave does see this side close.
"""
import os
import select
import tty

from host.transport.base import (
    BadUrl,
    Transport,
    TransportClosed,
    TransportError,
    TransportTimeout,
)


class PtyTransport(Transport):
    peer_close_visible = False

    def __init__(self, url="pty://", timeout_ms=1000):
        if url.split("://", 1)[1].strip("/"):
            raise BadUrl("%s: pty:// takes no path (to open an existing tty use serial://PATH)"
                         % url)
        super().__init__(url, timeout_ms)
        self._master, self.peer_fd = os.openpty()
        tty.setraw(self.peer_fd)
        tty.setraw(self._master)
        self.peer_path = os.ttyname(self.peer_fd)
        self._wake_r, self._wake_w = os.pipe()

    def _recv_internal(self, timeout_s):
        readable, _, _ = select.select([self._master, self._wake_r], [], [], timeout_s)
        if self._closed:
            raise TransportClosed("%s is closed" % self.url)
        if not readable:
            return b""
        try:
            return os.read(self._master, 65536)
        except OSError as e:  # EIO: no slave open
            raise TransportError(e.errno, "%s: %s" % (self.url, e.strerror)) from None

    def _send_internal(self, data):
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self._master], [],
                                           None if self.timeout_ms is None else self.timeout_ms / 1000)
            if not writable:
                raise TransportTimeout("%s: send timed out (nobody reads the slave?)" % self.url)
            view = view[os.write(self._master, view):]

    def _close_internal(self):
        os.write(self._wake_w, b"x")
        for fd in (self._master, self.peer_fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
