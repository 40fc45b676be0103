"""GNSS driver: a UART NMEA receiver behind a power-enable pin.

API (hardware is passed in, never created here):

    g = Gnss(uart, en_pin)   uart: machine.UART-like (any(), readinto(buf)); en_pin: Pin-like
                             (value(v)). The receiver starts powered off.
    g.power(on)              switch the receiver; powering off drops any half-read sentence
                             so a fix never mixes two power sessions.
    g.poll() -> [fix, ...]   read what the UART holds (up to 4 reads of 128 bytes into one
                             preallocated buffer) and return new fixes: dicts with the
                             CONTRACTS.md fix keys (see firmware/nmea.py). Never raises on
                             receiver data.
    g.powered                bool
    g.fix_count, g.no_fix_count    epochs seen with and without a fix since construction
    g.last_no_fix            the latest no-fix epoch dict, or None
    g.parser                 the NmeaParser, for its counters (bad_checksum, garbage, ...)

The core times acquisition itself (the driver has no clock); no-fix epochs are counted here
so the energy report and the self test can see that the receiver is alive but has no fix.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)


from firmware.nmea import NmeaParser

_READ_SIZE = const(128)
_MAX_READS = const(4)  # bound one poll: 512 bytes is ~0.5 s of NMEA at 9600 baud


class Gnss:
    def __init__(self, uart, en_pin):
        self.uart = uart
        self.en_pin = en_pin
        self.parser = NmeaParser()
        self._buf = bytearray(_READ_SIZE)
        self._view = memoryview(self._buf)
        self.powered = False
        self.fix_count = 0
        self.no_fix_count = 0
        self.last_no_fix = None
        en_pin.value(0)

    def power(self, on):
        on = bool(on)
        if on != self.powered:
            self.en_pin.value(1 if on else 0)
            self.powered = on
            if not on:
                # a sentence or epoch cut by the power switch must not join the next session
                self.parser.reset()

    def poll(self):
        fixes = []
        uart = self.uart
        for _ in range(_MAX_READS):
            try:
                if not uart.any():
                    break
                n = uart.readinto(self._buf)
            except OSError:
                break
            if not n:
                break
            for epoch in self.parser.feed(self._view[:n]):
                if "lat_e7" in epoch:  # a fix, not a no-fix epoch
                    self.fix_count += 1
                    fixes.append(epoch)
                else:
                    self.no_fix_count += 1
                    self.last_no_fix = epoch
        return fixes
