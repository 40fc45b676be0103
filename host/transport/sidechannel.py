"""The pty board's side channel: what a USB-serial adapter's modem lines and a bench's
relays would carry, for an emulated board whose console and link are ptys. A pty has no
modem-control lines (TIOCMGET/TIOCMSET fail on it), so `vigil device --listen pty` serves
this channel on a unix socket, one text line per message (hil/README.md has the table):

    host -> board                       board -> host
    WAKE 0|1     pull LINK_WAKE (1)     OK | ERR text
    CAPS                                CAPS word ...      (link_ready: firmware drives READY)
    NOW                                 T now_ms
    RUN ms       virtual clock only     T now_ms ACTIVE|IDLE   (stops early at a link write)
    PRESS ms / BATTERY pct / POWER 0|1 / RESET / CUT_AFTER_WRITES n / REFLASH
    ROUTE speed_kmh sky lat,lon ...
    PULSES haptic|led since_ms          PULSES start:dur ...   (dur -1: still on)
                                        READY 0|1          (pushed whenever LINK_READY changes)

SideChannel is the host's end: a WakeLine (send() in the Transport base class pulls WAKE
and waits for READY through it), the board's virtual clock (RemoteClock) and the stimulus
commands of hil's Side* drivers.
"""
import math
import socket
import time

from host.transport.base import TransportError, WakeLine


class SideChannelError(TransportError):
    """The board refused a command or went away; one line."""


class SideChannel(WakeLine):
    def __init__(self, path, timeout_s=30.0):
        self.path = path
        self.timeout_s = timeout_s
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise SideChannelError("side channel %s: %s" % (path, e.strerror or e)) from None
        self._buf = b""
        self._ready = False
        self.caps = set(self.command("CAPS").split()[1:])

    # ---- lines ----------------------------------------------------------------------------
    def _line(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(4096)
            except socket.timeout:
                return None
            except OSError as e:
                raise SideChannelError("side channel %s: %s" % (self.path, e)) from None
            if not chunk:
                raise SideChannelError("side channel %s: the board went away" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode().strip()

    def _note(self, line):
        """Take an unsolicited READY line; True if it was one."""
        if line.startswith("READY "):
            self._ready = line.split()[1] == "1"
            return True
        return False

    def command(self, line):
        """Send one command; return its reply line. ERR replies raise SideChannelError."""
        try:
            self._sock.sendall(line.encode() + b"\n")
        except OSError as e:
            raise SideChannelError("side channel %s: %s" % (self.path, e)) from None
        while True:
            reply = self._line(self.timeout_s)
            if reply is None:
                raise SideChannelError("side channel %s: no reply to %r within %g s"
                                       % (self.path, line, self.timeout_s))
            if self._note(reply):
                continue
            if reply.startswith("ERR"):
                raise SideChannelError("board refused %r: %s" % (line, reply[4:]))
            return reply

    def _drain(self, timeout_s=0.0):
        while True:
            line = self._line(timeout_s)
            if line is None:
                return
            self._note(line)
            timeout_s = 0.0

    # ---- WakeLine ---------------------------------------------------------------------------
    def set_wake(self, asserted):
        self.command("WAKE %d" % (1 if asserted else 0))

    def ready(self):
        self._drain()
        return self._ready

    def wait_ready(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not self._ready and time.monotonic() < deadline:
            self._drain(max(0.0, deadline - time.monotonic()))
        return self._ready

    def close(self):
        self._sock.close()


class RemoteClock:
    """The pty board's virtual clock, stepped over the side channel."""

    virtual = True
    settle_s = 0.5  # the board wrote to the pty before it replied: the bytes are in flight

    def __init__(self, channel):
        self.channel = channel
        self._now_ms = self._parse(channel.command("NOW"))[0]

    @staticmethod
    def _parse(reply):
        words = reply.split()
        if not words or words[0] != "T":
            raise SideChannelError("unexpected clock reply %r" % reply)
        return float(words[1]), len(words) > 2 and words[2] == "ACTIVE"

    def now_s(self):
        return self._now_ms / 1000

    def now_ms(self):
        return self._now_ms

    def advance_s(self, seconds):
        self._now_ms, active = self._parse(self.channel.command("RUN %.3f" % max(0.001, math.ceil(seconds * 1e6) / 1000)))
        return active

    def sleep_ms(self, ms):
        target = self._now_ms + ms
        while self._now_ms < target:
            self.advance_s((target - self._now_ms) / 1000)
