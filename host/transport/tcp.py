"""tcp://host:port — a TCP client, and TcpListener, the server side the centre listens on."""
import select
import socket
import time

from host.transport.base import BadUrl, Transport, TransportClosed, TransportError, TransportTimeout


def parse_host_port(url, allow_zero=False):
    rest = url.split("://", 1)[1].split("?", 1)[0].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 if allow_zero else 1) <= int(port) <= 65535:
        raise BadUrl("%s: expected tcp://HOST:PORT" % url)
    return host.strip("[]"), int(port)


# A graceful close (FIN, not RST): after this side's last byte, wait for the peer to close
# too, reading (and dropping) what it still sends, for at most CLOSE_WAIT_S, or until it has
# been quiet for CLOSE_QUIET_S (a peer that never closes: two ends closed one after the
# other by one thread). Closing with unread bytes in the receive buffer sends RST, and a
# peer that then writes gets ECONNRESET: a reply in flight when we close is enough.
CLOSE_WAIT_S = 2.0
CLOSE_QUIET_S = 0.1


def _error(url, e):
    return TransportError(e.errno, "%s: %s" % (url, e.strerror or e))


class TcpTransport(Transport):
    def __init__(self, url, timeout_ms=1000, sock=None):
        super().__init__(url, timeout_ms)
        if sock is None:
            host, port = parse_host_port(url)
            try:
                sock = socket.create_connection(
                    (host, port), None if timeout_ms is None else max(timeout_ms, 1) / 1000)
            except OSError as e:
                raise _error(url, e) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None if timeout_ms is None else max(timeout_ms, 1) / 1000)  # for sends
        self._sock = sock

    def _recv_internal(self, timeout_s):
        try:
            readable, _, _ = select.select([self._sock], [], [], timeout_s)
            if not readable:
                return b""
            data = self._sock.recv(65536)
        except (OSError, ValueError) as e:  # ValueError: the fd was closed under us
            if self._closed:
                raise TransportClosed("%s is closed" % self.url) from None
            if isinstance(e, ConnectionError):
                raise TransportClosed("%s: %s" % (self.url, e)) from None
            raise _error(self.url, e) from None
        if not data:
            raise TransportClosed("%s: the peer closed the connection" % self.url)
        return data

    def _send_internal(self, data):
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise TransportTimeout("%s: send timed out" % self.url) from None
        except (BrokenPipeError, ConnectionError) as e:
            raise TransportClosed("%s: %s" % (self.url, e)) from None
        except OSError as e:
            raise _error(self.url, e) from None

    def _close_internal(self):
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_WR)  # FIN after everything already sent
            _drain_until_closed(sock, CLOSE_WAIT_S, CLOSE_QUIET_S)
        except OSError:
            pass  # already reset or gone: nothing left to deliver
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a receiver blocked in select
        except OSError:
            pass
        sock.close()


def _drain_until_closed(sock, wait_s, quiet_s):
    """Read and drop what the peer sends until it closes (True), or until it has sent
    nothing for quiet_s or wait_s have passed (False)."""
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select([sock], [], [], min(left, quiet_s))
        if not readable:
            return False
        if not sock.recv(65536):
            return True


class TcpListener:
    """Accepts TCP connections; each is one TcpTransport (one device link)."""

    def __init__(self, url, timeout_ms=1000):
        host, port = parse_host_port(url, allow_zero=True)
        self.timeout_ms = timeout_ms
        try:
            self._sock = socket.create_server((host, port), reuse_port=False)
        except OSError as e:
            raise _error(url, e) from None
        self.port = self._sock.getsockname()[1]
        self.url = "tcp://%s:%d" % (host, self.port)

    def accept(self, timeout_ms=None):
        """The next connection as a Transport, or None after timeout_ms (None waits)."""
        try:
            readable, _, _ = select.select([self._sock], [], [],
                                           None if timeout_ms is None else timeout_ms / 1000)
            if not readable:
                return None
            sock, (peer_host, peer_port) = self._sock.accept()[:2]
        except (OSError, ValueError):
            if self._sock.fileno() < 0:
                raise TransportClosed("%s is closed" % self.url) from None
            raise
        return TcpTransport("tcp://%s:%d" % (peer_host, peer_port), self.timeout_ms, sock)

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
