"""GNSS driver: a UART NMEA receiver behind a power-enable pin, and its NMEA 0183 parser
(RMC, GGA and GSA, with checksums). One module, not two: a module object and its globals cost
heap on the device, and the driver is the parser's only user.

Driver API (hardware is passed in, never created here):

    g = Gnss(uart, en_pin)   uart: machine.UART-like (any(), readinto(buf)); en_pin: Pin-like
                             (value(v)). The receiver starts powered off.
    g.power(on)              switch the receiver; powering off drops any half-read sentence
                             so a fix never mixes two power sessions.
    g.poll() -> [fix, ...]   read what the UART holds (up to 4 reads of 128 bytes into one
                             preallocated buffer) and return new fixes: dicts with the
                             CONTRACTS.md fix keys (see the parser below). Never raises on
                             receiver data.
    g.powered                bool
    g.parser                 the NmeaParser, for its counters (bad_checksum, garbage, ...)

The core times acquisition itself (the driver has no clock), so poll() drops no-fix epochs
without keeping count: nothing on the device or host read the counts, and each attribute
costs heap on the device.

Parser API (MicroPython and CPython; no imports beyond micropython.const):

    p = NmeaParser()
    p.feed(data) -> [epoch, ...]    data: bytes from the UART, any split; never raises
    p.reset()                       forget a half-read sentence and epoch

An epoch is reported once both its RMC and GGA (same UTC time field, either order) are in:
  - a fix: a dict with exactly the CONTRACTS.md fix keys, when RMC status is A and GGA quality
    is not 0: fix_time_ms (UTC ms since 1970 from RMC date + time; years are 2000-2099), lat_e7, lon_e7, alt_m
    (GGA altitude, rounded), speed_cmps (from knots), course_cdeg, accuracy_m, hdop_x10, sats,
    source = 1. Values are clamped to the wire ranges (alt int16, hdop_x10 <= 255, ...).
    accuracy_m is an estimate: HDOP x 5 m (a typical user range error), rounded, at least 1;
    0 when no HDOP was given. HDOP comes from GGA, else from the epoch's GSA.
  - no fix: {"no_fix": True, "utc_ms": ms or None, "sats": n} when RMC status is V, GGA
    quality is 0, or the RMC has no date, so the driver can count acquisition time.
A fix is the epoch that has "lat_e7". GSA gives only the HDOP fallback.

Lat/lon are converted with integers (ddmm.mmmmmm, minutes to 6 decimals, rounded to 1e-7
degree), because the ESP32's floats are single precision. Counters: `sentences` (accepted),
`bad_checksum`, `garbage` (no `$`, overlong, missing checksum, malformed fields),
`ignored` (other sentence types). Lines longer than 100 bytes are dropped.

Every malformed field raises ValueError inside the parser, which feed() counts as garbage.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)


_MAX_LINE = const(100)
_MAX_FIELDS = const(24)
_DOLLAR = const(0x24)
_STAR = const(0x2A)
_COMMA = const(0x2C)
_CR = const(0x0D)
_LF = const(0x0A)
_SOURCE_GNSS = const(1)
_UERE_M = const(5)  # accuracy estimate = HDOP x this many metres
_MS_PER_DAY = const(86400000)
# sentence types, their three letters as one int (no bytes object to compare with)
_RMC = const(0x524D43)
_GGA = const(0x474741)
_GSA = const(0x475341)
_READ_SIZE = const(128)
_MAX_READS = const(4)  # bound one poll: 512 bytes is ~0.5 s of NMEA at 9600 baud


class NmeaParser:
    def __init__(self):
        self._line = bytearray(_MAX_LINE)
        # Field k of the current line spans _commas[k] .. _commas[k + 1] - 1; after the last
        # field, one more entry as if a comma followed it. Offsets are below _MAX_LINE.
        self._commas = bytearray(_MAX_FIELDS + 1)
        self.sentences = 0
        self.bad_checksum = 0
        self.garbage = 0
        self.ignored = 0
        self.reset()

    def reset(self):
        """Forget any half-read sentence and epoch: the receiver was switched off, or (from
        _sentence, once the line is read) the epoch is complete or a new one begins."""
        self._in_line = False
        self._len = 0
        self._time = None  # the epoch's UTC time field, to match RMC with GGA
        self._rmc = None  # (utc_ms or None, status A, lat_e7, lon_e7, speed_cmps, course_cdeg)
        self._gga = None  # (quality, sats, hdop_x10 or None, alt_m)
        self._gsa_hdop = None

    # ---- bytes to lines -------------------------------------------------------------------

    def feed(self, data):
        out = []
        line = self._line
        for byte in data:
            if byte == _DOLLAR:
                if self._in_line:
                    self.garbage += 1  # a sentence cut short by the next one
                self._in_line = True
                self._len = 0
            elif not self._in_line:
                if byte != _CR and byte != _LF:
                    # noise between sentences: count each run once, at its start
                    if self._len == 0:
                        self.garbage += 1
                        self._len = -1
            elif byte == _LF or byte == _CR:
                self._in_line = False
                n = self._len
                self._len = 0
                try:
                    self._sentence(n, out)
                except (ValueError, IndexError):
                    self.garbage += 1
            elif self._len >= _MAX_LINE or byte < 0x20 or byte > 0x7E:
                self.garbage += 1
                self._in_line = False
                self._len = -1
            else:
                line[self._len] = byte
                self._len += 1
        return out

    # ---- one sentence ---------------------------------------------------------------------

    def _sentence(self, n, out):
        """The n bytes between '$' and the line end: checksum, fields, then the epoch."""
        line = self._line
        if n < 10 or line[n - 3] != _STAR:
            self.garbage += 1
            return
        check = 0
        for i in range(n - 3):
            check ^= line[i]
        given = 0  # the two hex digits after the '*', either case
        for i in range(n - 2, n):
            c = line[i] | 0x20  # lower case; digits have that bit already
            if 0x30 <= c <= 0x39:
                given = given * 16 + c - 0x30
            elif 0x61 <= c <= 0x66:
                given = given * 16 + c - 0x57
            else:
                given = -1
                break
        if check != given:
            self.bad_checksum += 1
            return
        commas = self._commas
        count = 1
        for i in range(n - 3):
            if line[i] == _COMMA:
                if count >= _MAX_FIELDS:
                    self.garbage += 1
                    return
                commas[count] = i + 1
                count += 1
        commas[count] = n - 2
        kind = (line[2] << 16 | line[3] << 8 | line[4]) if commas[1] == 6 else 0
        if kind != _RMC and kind != _GGA and kind != _GSA:
            self.ignored += 1
            return
        if count < (18 if kind == _GSA else 10):
            self.garbage += 1
            return
        self.sentences += 1
        if kind == _GSA:
            # Mode and PDOP are checked, not kept (nothing reads them; each attribute costs
            # device heap): a GSA with either malformed is still garbage, its HDOP unused.
            self._fixed(2, 0)
            self._fixed(15, 1)
            self._gsa_hdop = self._fixed(16, 1)
            return
        is_rmc = kind == _RMC
        time_start = commas[1]
        time_end = commas[2] - 1
        time_field = bytes(line[time_start:time_end])
        if is_rmc:
            valid = commas[2] < commas[3] - 1 and line[commas[2]] == 0x41  # status A
            time_ms = 0
            utc_ms = None
            if time_start < time_end:
                if time_end - time_start < 6:
                    raise ValueError
                hh = (line[time_start] - 0x30) * 10 + line[time_start + 1] - 0x30
                mm = (line[time_start + 2] - 0x30) * 10 + line[time_start + 3] - 0x30
                ss_ms = self._fixed(1, 3, 4)
                if ss_ms is None or not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss_ms < 61000):
                    raise ValueError
                time_ms = hh * 3600000 + mm * 60000 + ss_ms
            start = commas[9]
            if start < commas[10] - 1:
                if commas[10] - 1 - start != 6:
                    raise ValueError
                d = (line[start] - 0x30) * 10 + line[start + 1] - 0x30
                m = (line[start + 2] - 0x30) * 10 + line[start + 3] - 0x30
                y = (line[start + 4] - 0x30) * 10 + line[start + 5] - 0x30
                if not (1 <= d <= 31 and 1 <= m <= 12 and 0 <= y <= 99):
                    raise ValueError
                # Days since 1970-01-01 (Howard Hinnant's days_from_civil, for years from 0),
                # with years 2000-2099: a device made in the 2020s.
                if m <= 2:
                    y -= 1
                y += 2000
                day_of_year = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
                days = y * 365 + y // 4 - y // 100 + y // 400 + day_of_year - 719468
                utc_ms = days * _MS_PER_DAY + time_ms
            lat = lon = speed = course = 0
            if valid:
                lat = self._angle_e7(3, 2)
                lon = self._angle_e7(5, 3)
                knots_x100 = self._fixed(7, 2) or 0
                speed = (knots_x100 * 463 + 450) // 900  # 1 knot = 1852 m/h = 463/9 cm/s
                course = self._fixed(8, 2) or 0
            mine, other = self._rmc, self._gga
        else:
            quality = self._fixed(6, 0) or 0
            sats = self._fixed(7, 0) or 0
            hdop = self._fixed(8, 1)
            alt_dm = self._fixed(9, 1) or 0
            alt_m = (alt_dm + 5) // 10 if alt_dm >= 0 else -((-alt_dm + 5) // 10)
            mine, other = self._gga, self._rmc
        # Join the epoch of time_field; a second sentence of the same kind, or another time,
        # starts a new one.
        if mine is not None or (other is not None and time_field != self._time):
            self.reset()
        self._time = time_field
        if is_rmc:
            self._rmc = (utc_ms, valid, lat, lon, speed, course)
        else:
            self._gga = (quality, sats, hdop, alt_m)
        if self._rmc is None or self._gga is None:
            return
        utc_ms, valid, lat, lon, speed, course = self._rmc
        quality, sats, hdop, alt_m = self._gga
        sats = min(max(sats, 0), 255)
        if valid and utc_ms is not None and quality:
            if hdop is None:
                hdop = self._gsa_hdop
            accuracy = 0 if hdop is None else max(1, (hdop * _UERE_M + 5) // 10)
            # Keyword names: interned like identifiers, not a string object each in the heap.
            out.append(dict(
                fix_time_ms=utc_ms,
                lat_e7=lat,
                lon_e7=lon,
                alt_m=min(max(alt_m, -32768), 32767),
                speed_cmps=min(max(speed, 0), 65535),
                course_cdeg=min(max(course, 0), 35999),
                accuracy_m=min(accuracy, 65535),
                hdop_x10=0 if hdop is None else min(max(hdop, 0), 255),
                sats=sats,
                source=_SOURCE_GNSS,
            ))
        else:
            out.append({"no_fix": True, "utc_ms": utc_ms, "sats": sats})
        self.reset()

    # ---- fields ---------------------------------------------------------------------------

    def _fixed(self, k, digits, skip=0):
        """Field k, from its byte `skip` on, as an int scaled by 10**digits, rounded half up;
        None if empty."""
        start = self._commas[k] + skip
        end = self._commas[k + 1] - 1
        if start >= end:
            return None
        line = self._line
        negative = line[start] == 0x2D  # '-'
        if negative:
            start += 1
        value = 0
        frac = -1  # digits seen after the point, -1 before it
        next_digit = 0
        for i in range(start, end):
            c = line[i]
            if c == 0x2E and frac < 0:
                frac = 0
            elif 0x30 <= c <= 0x39:
                if frac < digits:
                    value = value * 10 + c - 0x30
                    if frac >= 0:
                        frac += 1
                elif frac == digits:
                    next_digit = c - 0x30
                    frac += 1
            else:
                raise ValueError
        if frac < 0:
            frac = 0
        while frac < digits:
            value *= 10
            frac += 1
        if next_digit >= 5:
            value += 1
        return -value if negative else value

    def _angle_e7(self, k, degree_digits):
        """Field k, ddmm.mmmmmm (or dddmm...), and its hemisphere in field k + 1, to signed
        1e-7 degrees, in integers."""
        line = self._line
        start = self._commas[k]
        if start + degree_digits + 2 > self._commas[k + 1] - 1:
            raise ValueError
        degrees = 0
        for i in range(start, start + degree_digits):
            c = line[i] - 0x30
            if not 0 <= c <= 9:
                raise ValueError
            degrees = degrees * 10 + c
        # minutes in 1e-6 of a minute: below 6e7, a small int even on the ESP32
        minutes_e6 = self._fixed(k, 6, degree_digits)
        if minutes_e6 is None or minutes_e6 < 0 or minutes_e6 >= 60000000:
            raise ValueError
        value = degrees * 10000000 + (minutes_e6 + 3) // 6
        start = self._commas[k + 1]
        hemisphere = line[start] if start < self._commas[k + 2] - 1 else 0
        if hemisphere == 0x53 or hemisphere == 0x57:  # S, W
            return -value
        if hemisphere != 0x4E and hemisphere != 0x45:  # N, E
            raise ValueError
        return value


class Gnss:
    def __init__(self, uart, en_pin):
        self.uart = uart
        self.en_pin = en_pin
        self.parser = NmeaParser()
        self._buf = bytearray(_READ_SIZE)
        self._view = memoryview(self._buf)
        self.powered = False
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
                    fixes.append(epoch)
        return fixes
