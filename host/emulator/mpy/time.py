# MicroPython `time` for the emulated ESP32. MicroPython-compatible subset: every platform
# detail goes through the board bus `_board` (virtual clock, sleeping, the RTC).
import _board

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# The ESP32 port's ticks wrap at MICROPY_PY_TIME_TICKS_PERIOD = 2**30.
_TICKS_PERIOD = const(1 << 30)
_TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)
# Days from 0000-03-01 to 2000-01-01, the ESP32 port's epoch (days_from_civil below).
_EPOCH_DAYS = const(730425)


def ticks_us():
    return _board.ticks_us() & _TICKS_MAX


def ticks_ms():
    return (_board.ticks_us() // 1000) & _TICKS_MAX


def ticks_cpu():
    return ticks_us()


def ticks_diff(ticks1, ticks2):
    return ((ticks1 - ticks2 + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def ticks_add(ticks, delta):
    if delta >= _TICKS_HALF or delta < -_TICKS_HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _TICKS_MAX


def sleep_us(us):
    if us > 0:
        _board.sleep_us(int(us), 0)


def sleep_ms(ms):
    if ms > 0:
        _board.sleep_us(int(ms) * 1000, 0)


def sleep(seconds):
    if seconds > 0:
        _board.sleep_us(int(seconds * 1000000), 0)


def time():
    return _board.rtc_us() // 1000000


def time_ns():
    return _board.rtc_us() * 1000


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - _EPOCH_DAYS


def _civil_from_days(days):
    z = days + _EPOCH_DAYS
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def gmtime(secs=None):
    if secs is None:
        secs = time()
    secs = int(secs)
    days = secs // 86400
    rem = secs - days * 86400
    y, m, d = _civil_from_days(days)
    weekday = (days + 5) % 7  # 2000-01-01 was a Saturday; Monday is 0
    yearday = days - _days_from_civil(y, 1, 1) + 1
    return (y, m, d, rem // 3600, rem // 60 % 60, rem % 60, weekday, yearday)


def localtime(secs=None):
    return gmtime(secs)


def mktime(t):
    return _days_from_civil(t[0], t[1], t[2]) * 86400 + t[3] * 3600 + t[4] * 60 + t[5]
