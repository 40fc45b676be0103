"""A small NMEA 0183 parser for RMC, GGA and GSA, with checksums, for the GNSS driver.

API (MicroPython and CPython; no imports beyond micropython.const):

    p = NmeaParser()
    p.feed(data) -> [epoch, ...]    data: bytes from the UART, any split; never raises
    p.reset()                       forget a half-read sentence and epoch
    is_fix(epoch) -> bool

An epoch is reported once both its RMC and GGA (same UTC time field, either order) are in:
  - a fix: a dict with exactly the CONTRACTS.md fix keys, when RMC status is A and GGA quality
    is not 0: fix_time_ms (UTC ms since 1970 from RMC date + time; years are 2000-2099), lat_e7, lon_e7, alt_m
    (GGA altitude, rounded), speed_cmps (from knots), course_cdeg, accuracy_m, hdop_x10, sats,
    source = 1. Values are clamped to the wire ranges (alt int16, hdop_x10 <= 255, ...).
    accuracy_m is an estimate: HDOP x 5 m (a typical user range error), rounded, at least 1;
    0 when no HDOP was given. HDOP comes from GGA, else from the epoch's GSA.
  - no fix: {"no_fix": True, "utc_ms": ms or None, "sats": n} when RMC status is V, GGA
    quality is 0, or the RMC has no date, so the driver can count acquisition time.
GSA also sets `p.fix_mode` (1 none, 2 2D, 3 3D) and `p.pdop_x10`.

Lat/lon are converted with integers (ddmm.mmmmmm, minutes to 6 decimals, rounded to 1e-7
degree), because the ESP32's floats are single precision. Counters: `sentences` (accepted),
`bad_checksum`, `garbage` (no `$`, overlong, missing checksum, malformed fields),
`ignored` (other sentence types). Lines longer than 100 bytes are dropped.
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

# epoch slots
_HAVE_RMC = const(1)
_HAVE_GGA = const(2)


def is_fix(epoch):
    return "lat_e7" in epoch


def _days_from_civil(y, m, d):
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _clamp(value, low, high):
    return low if value < low else high if value > high else value


class NmeaParser:
    def __init__(self):
        self._line = bytearray(_MAX_LINE)
        self._len = 0
        self._in_line = False
        self._commas = [0] * _MAX_FIELDS  # field start offsets of the current line
        self._nfields = 0
        self._end = 0
        self.sentences = 0
        self.bad_checksum = 0
        self.garbage = 0
        self.ignored = 0
        self.fix_mode = 1
        self.pdop_x10 = 0
        self._reset_epoch()

    def reset(self):
        """Forget any half-read sentence and epoch (the receiver was switched off)."""
        self._in_line = False
        self._len = 0
        self._reset_epoch()

    def _reset_epoch(self):
        self._have = 0
        self._time = b""  # the epoch's UTC time field, to match RMC with GGA
        self._rmc_ok = False
        self._date_days = None
        self._time_ms = 0
        self._lat = 0
        self._lon = 0
        self._speed = 0
        self._course = 0
        self._gga_quality = 0
        self._sats = 0
        self._hdop = None
        self._alt = 0
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
                continue
            elif byte == _LF or byte == _CR:
                self._in_line = False
                n = self._len
                self._len = 0
                try:
                    self._line_done(n, out)
                except (ValueError, IndexError):
                    self.garbage += 1
                continue
            elif self._len >= _MAX_LINE or byte < 0x20 or byte > 0x7E:
                self.garbage += 1
                self._in_line = False
                self._len = -1
                continue
            else:
                line[self._len] = byte
                self._len += 1
        return out

    def _line_done(self, n, out):
        line = self._line
        if n < 10 or line[n - 3] != _STAR:
            self.garbage += 1
            return
        check = 0
        for i in range(n - 3):
            check ^= line[i]
        if check != self._hex2(n - 2):
            self.bad_checksum += 1
            return
        # field offsets: field k spans commas[k] .. commas[k+1]-1
        commas = self._commas
        commas[0] = 0
        count = 1
        for i in range(n - 3):
            if line[i] == _COMMA:
                if count >= _MAX_FIELDS:
                    self.garbage += 1
                    return
                commas[count] = i + 1
                count += 1
        self._nfields = count
        self._end = n - 3
        kind = bytes(line[2:5]) if commas[1] == 6 else b""
        if kind == b"RMC" and count >= 10:
            self.sentences += 1
            self._rmc(out)
        elif kind == b"GGA" and count >= 10:
            self.sentences += 1
            self._gga(out)
        elif kind == b"GSA" and count >= 18:
            self.sentences += 1
            self._gsa()
        elif kind in (b"RMC", b"GGA", b"GSA"):
            self.garbage += 1
        else:
            self.ignored += 1

    def _hex2(self, at):
        value = 0
        for i in range(at, at + 2):
            c = self._line[i]
            if 0x30 <= c <= 0x39:
                value = value * 16 + c - 0x30
            elif 0x41 <= c <= 0x46:
                value = value * 16 + c - 0x37
            elif 0x61 <= c <= 0x66:
                value = value * 16 + c - 0x57
            else:
                return -1
        return value

    # ---- fields ---------------------------------------------------------------------------

    def _span(self, k):
        start = self._commas[k]
        end = self._commas[k + 1] - 1 if k + 1 < self._nfields else self._end
        return start, end

    def _empty(self, k):
        start, end = self._span(k)
        return start >= end

    def _char(self, k):
        start, end = self._span(k)
        return self._line[start] if start < end else 0

    def _fixed(self, k, digits):
        """Field k as an int scaled by 10**digits, rounded half up; None if empty."""
        start, end = self._span(k)
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
                raise ValueError("bad number")
        if frac < 0:
            frac = 0
        while frac < digits:
            value *= 10
            frac += 1
        if next_digit >= 5:
            value += 1
        return -value if negative else value

    def _angle_e7(self, k, hemisphere_k, degree_digits):
        """ddmm.mmmmmm (or dddmm...) to signed 1e-7 degrees, in integers."""
        start, end = self._span(k)
        if start + degree_digits + 2 > end:
            raise ValueError("short angle")
        line = self._line
        degrees = 0
        for i in range(start, start + degree_digits):
            c = line[i] - 0x30
            if not 0 <= c <= 9:
                raise ValueError("bad angle")
            degrees = degrees * 10 + c
        # minutes in 1e-6 of a minute: below 6e7, a small int even on the ESP32
        self._commas[k] = start + degree_digits
        try:
            minutes_e6 = self._fixed(k, 6)
        finally:
            self._commas[k] = start
        if minutes_e6 is None or minutes_e6 < 0 or minutes_e6 >= 60000000:
            raise ValueError("bad minutes")
        value = degrees * 10000000 + (minutes_e6 + 3) // 6
        hemisphere = self._char(hemisphere_k)
        if hemisphere == 0x53 or hemisphere == 0x57:  # S, W
            value = -value
        elif hemisphere != 0x4E and hemisphere != 0x45:  # N, E
            raise ValueError("bad hemisphere")
        return value

    def _time_field(self):
        start, end = self._span(1)
        return bytes(self._line[start:end])

    def _time_of_day_ms(self):
        start, end = self._span(1)
        if end - start < 6:
            raise ValueError("short time")
        line = self._line
        hh = (line[start] - 0x30) * 10 + line[start + 1] - 0x30
        mm = (line[start + 2] - 0x30) * 10 + line[start + 3] - 0x30
        self._commas[1] = start + 4
        try:
            ss_ms = self._fixed(1, 3)
        finally:
            self._commas[1] = start
        if not (0 <= hh < 24 and 0 <= mm < 60 and ss_ms is not None and 0 <= ss_ms < 61000):
            raise ValueError("bad time")
        return hh * 3600000 + mm * 60000 + ss_ms

    # ---- sentences ------------------------------------------------------------------------

    def _start(self, time_field, have, out):
        """Join this sentence to the epoch of `time_field`; start a new one if it differs."""
        if self._have and (time_field != self._time or self._have & have):
            self._reset_epoch()
        self._time = time_field
        self._have |= have

    def _rmc(self, out):
        time_field = self._time_field()
        status = self._char(2)
        valid = status == 0x41  # A
        days = None
        time_ms = 0
        lat = lon = speed = course = 0
        if not self._empty(1):
            time_ms = self._time_of_day_ms()
        if not self._empty(9):
            start, end = self._span(9)
            if end - start != 6:
                raise ValueError("bad date")
            line = self._line
            d = (line[start] - 0x30) * 10 + line[start + 1] - 0x30
            m = (line[start + 2] - 0x30) * 10 + line[start + 3] - 0x30
            y = (line[start + 4] - 0x30) * 10 + line[start + 5] - 0x30
            if not (1 <= d <= 31 and 1 <= m <= 12 and 0 <= y <= 99):
                raise ValueError("bad date")
            days = _days_from_civil(2000 + y, m, d)  # a device made in the 2020s
        if valid:
            lat = self._angle_e7(3, 4, 2)
            lon = self._angle_e7(5, 6, 3)
            knots_x100 = self._fixed(7, 2) or 0
            speed = (knots_x100 * 463 + 450) // 900  # 1 knot = 1852 m/h = 463/9 cm/s
            course = self._fixed(8, 2) or 0
        self._start(time_field, _HAVE_RMC, out)
        self._rmc_ok = valid and days is not None
        self._date_days = days
        self._time_ms = time_ms
        self._lat = lat
        self._lon = lon
        self._speed = speed
        self._course = course
        self._maybe_done(out)

    def _gga(self, out):
        time_field = self._time_field()
        quality = self._fixed(6, 0) or 0
        sats = self._fixed(7, 0) or 0
        hdop = self._fixed(8, 1)
        alt_dm = self._fixed(9, 1) or 0
        self._start(time_field, _HAVE_GGA, out)
        self._gga_quality = quality
        self._sats = sats
        self._hdop = hdop
        self._alt = (alt_dm + 5) // 10 if alt_dm >= 0 else -((-alt_dm + 5) // 10)
        self._maybe_done(out)

    def _gsa(self):
        mode = self._fixed(2, 0)
        self.fix_mode = mode if mode in (1, 2, 3) else 1
        self.pdop_x10 = self._fixed(15, 1) or 0
        self._gsa_hdop = self._fixed(16, 1)

    def _maybe_done(self, out):
        if self._have != _HAVE_RMC | _HAVE_GGA:
            return
        if self._rmc_ok and self._gga_quality:
            hdop = self._hdop if self._hdop is not None else self._gsa_hdop
            if hdop is None:
                hdop = 0
                accuracy = 0
            else:
                accuracy = max(1, (hdop * _UERE_M + 5) // 10)
            days = self._date_days if self._date_days is not None else 0  # set: _rmc_ok
            out.append(
                {
                    "fix_time_ms": days * 86400000 + self._time_ms,
                    "lat_e7": self._lat,
                    "lon_e7": self._lon,
                    "alt_m": _clamp(self._alt, -32768, 32767),
                    "speed_cmps": _clamp(self._speed, 0, 65535),
                    "course_cdeg": _clamp(self._course, 0, 35999),
                    "accuracy_m": _clamp(accuracy, 0, 65535),
                    "hdop_x10": _clamp(hdop, 0, 255),
                    "sats": _clamp(self._sats, 0, 255),
                    "source": _SOURCE_GNSS,
                }
            )
        else:
            utc = None
            if self._date_days is not None:
                utc = self._date_days * 86400000 + self._time_ms
            out.append({"no_fix": True, "utc_ms": utc, "sats": _clamp(self._sats, 0, 255)})
        self._reset_epoch()
