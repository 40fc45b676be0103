"""A board's console port for flash, deploy and provision: one-line errors for the usual
ways it goes wrong (no port, a busy port, a board that never reaches its REPL)."""
import contextlib
import io
import os
import time

import serial


class PortError(Exception):
    """The port or the board on it cannot be used; the message is one line."""


def check_port(port):
    """Fail early, in one line, when the port is missing or another program holds it."""
    if "://" not in port and not os.path.exists(port):
        raise PortError("%s: no such port (is the board plugged in?)" % port)
    try:
        probe = serial.serial_for_url(port, exclusive=True, do_not_open=True)
        probe.open()
        probe.close()
    except (serial.SerialException, OSError, ValueError) as e:
        text = " ".join(str(e).split())
        if "lock" in text.lower() or "busy" in text.lower():
            raise PortError("%s is busy: another program has it open (mpremote, minicom, a "
                            "running rig?)" % port) from None
        raise PortError("%s: %s" % (port, text)) from None


def open_repl(port, timeout_s=5):
    """An mpremote transport in the raw REPL, without a soft reset (the unix port exits on
    one; a board's main.py would run again). A board stuck in a crash loop never gets there."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    check_port(port)
    _probe_repl(port, timeout_s)
    try:
        link = SerialTransport(port, exclusive=True)
    except TransportError as e:
        raise PortError("%s: %s" % (port, e)) from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # mpremote prints what it read
            link.enter_raw_repl(soft_reset=False, timeout_overall=timeout_s)
    except (TransportError, OSError, serial.SerialException):
        link.close()
        raise PortError("%s: the board does not answer its raw REPL" % port) from None
    return link


def _probe_repl(port, timeout_s):
    """Interrupt whatever runs and ask for the raw REPL, with our own deadline: mpremote
    reads a pty byte by byte without one and would wait forever on a board in a crash loop."""
    banner = b"raw REPL; CTRL-B to exit\r\n>"
    try:
        probe = serial.Serial(port, timeout=0.1, exclusive=True)
    except (serial.SerialException, OSError) as e:
        raise PortError("%s: %s" % (port, " ".join(str(e).split()))) from None
    try:
        probe.write(b"\r\x03\x03\r\x01")
        seen = b""
        deadline = time.monotonic() + timeout_s
        while banner not in seen and time.monotonic() < deadline:
            seen += probe.read(256)
        if banner not in seen:
            raise PortError("%s: the board does not reach its REPL within %g s (a crash loop? "
                            "boot it in safe mode: GPIO13 to GND, or a key within 2 s of "
                            "reset)" % (port, timeout_s))
        probe.write(b"\x02")  # back to the friendly REPL; mpremote enters raw mode itself
        probe.flush()
    finally:
        probe.close()


def run(link, code):
    """Run code on the board; its stdout as text. A board-side exception is a PortError."""
    from mpremote.transport import TransportError

    try:
        out = link.exec(code)
    except TransportError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise PortError("board: %s" % (lines[-1] if lines else e)) from None
    return out.decode("utf-8", "replace")
