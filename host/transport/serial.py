"""serial:///dev/ttyUSB0?baudrate=115200, rfc2217://host:port and socket://host:port (a raw
TCP serial server such as ser2net), through pyserial's serial_for_url. A real serial line
does not tell when its peer goes away; a USB bridge that re-enumerates is reopened by path
(Transport.reconnect_ms). ModemLines is the bench wake line: the adapter's RTS drives
LINK_WAKE, its CTS reads LINK_READY (docs/LINK.md)."""
import errno
import os
import select
from urllib.parse import parse_qs, urlsplit

import serial

from host.transport.base import BadUrl, Transport, TransportClosed, TransportError, TransportTimeout

DEFAULT_BAUDRATE = 115200  # the link UART (docs/CONTRACTS.md)
_POLL_S = 0.05  # read timeout of ports without a file descriptor (rfc2217://)


def _pyserial_args(url):
    if url.startswith("rfc2217://"):
        return url, {"write_timeout": None}  # pyserial's rfc2217 does not support one
    if url.startswith("socket://"):
        rest = url.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise BadUrl("%s: expected socket://HOST:PORT" % url)
        return url, {}
    parts = urlsplit(url)
    if not parts.path or parts.netloc:
        raise BadUrl("%s: expected serial:///dev/PORT (three slashes)" % url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"baudrate"}
    if unknown:
        raise BadUrl("%s: unknown option %s (known: baudrate)" % (url, sorted(unknown)[0]))
    baudrate = options.get("baudrate", str(DEFAULT_BAUDRATE))
    if not baudrate.isdigit():
        raise BadUrl("%s: baudrate must be a number" % url)
    return parts.path, {"baudrate": int(baudrate)}


class SerialTransport(Transport):
    peer_close_visible = False

    def __init__(self, url, timeout_ms=1000, **options):
        super().__init__(url, timeout_ms, **options)
        port, kwargs = _pyserial_args(url)
        kwargs.setdefault("write_timeout", None if timeout_ms is None else timeout_ms / 1000)
        self._port_args = (port, kwargs)
        self._open_port()
        self._wake_r, self._wake_w = os.pipe()

    def _open_port(self):
        port, kwargs = self._port_args
        try:
            self._serial = serial.serial_for_url(port, timeout=0, **kwargs)
        except (serial.SerialException, ValueError, OSError) as e:
            raise TransportError("%s: %s" % (self.url, _one_line(e))) from None
        try:
            self._fd = self._serial.fileno()
        except (AttributeError, NotImplementedError, OSError, serial.SerialException):
            self._fd = None
            self._serial.timeout = _POLL_S

    def _reopen_internal(self):
        try:
            self._serial.close()
        except (serial.SerialException, OSError):
            pass
        self._open_port()

    def _recv_internal(self, timeout_s):
        # Setting pyserial's `timeout` reconfigures the port (tcsetattr, or telnet options on
        # rfc2217) every time, so ports with a file descriptor wait in select() (with a wake-up
        # pipe for close()), and others poll in short fixed reads.
        ser = self._serial
        try:
            if self._fd is None:
                data = ser.read(1)
                if not data and timeout_s is not None and timeout_s < _POLL_S:
                    return b""
            else:
                readable, _, _ = select.select([self._fd, self._wake_r], [], [], timeout_s)
                if self._closed:
                    raise TransportClosed("%s is closed" % self.url)
                if not readable:
                    return b""
                data = ser.read(max(1, ser.in_waiting))
            if data and ser.in_waiting:
                data += ser.read(ser.in_waiting)
            return data
        except (serial.SerialException, OSError, TypeError, ValueError) as e:
            if self._closed:
                raise TransportClosed("%s is closed" % self.url) from None
            if ("returned no data" in str(e) or "socket disconnected" in str(e)
                    or getattr(e, "errno", None) == errno.EIO):
                # the pty master hung up, the USB device went away, or a socket:// peer closed
                raise TransportClosed("%s: the peer went away" % self.url) from None
            raise TransportError("%s: %s" % (self.url, e)) from None

    def _send_internal(self, data):
        try:
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialTimeoutException:
            raise TransportTimeout("%s: send timed out" % self.url) from None
        except (serial.SerialException, OSError) as e:
            raise TransportError("%s: %s" % (self.url, e)) from None

    @property
    def serial(self):
        """The pyserial port, for its modem lines (ModemLines) and the esptool-style reset."""
        return self._serial

    def _close_internal(self):
        cancel = getattr(self._serial, "cancel_read", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:  # noqa: BLE001 - best effort wake-up before close
                pass
        os.write(self._wake_w, b"x")
        self._serial.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def _one_line(e):
    return " ".join(str(e).split())


class ModemLines:
    """LINK_WAKE on the adapter's RTS, LINK_READY on its CTS (a WakeLine). RTS is asserted
    (logic 1 on pyserial's side, the pin driven low) to pull the active-low wake line."""

    def __init__(self, transport):
        self.transport = transport

    def set_wake(self, asserted):
        self.transport.serial.rts = bool(asserted)

    def ready(self):
        return bool(self.transport.serial.cts)

    def wait_ready(self, timeout_s):
        import time
        deadline = time.monotonic() + timeout_s
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.ready()
