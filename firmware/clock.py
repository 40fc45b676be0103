"""Device time for the core: ticks of the ESP32 port, wrapping at 2**30, and only ever
compared with ticks_diff so that every timer survives the wrap."""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

_TICKS_MAX = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)
# Ages of past ticks (last fix, contact) carried over deep sleep are capped here (3.1 days):
# older is as good as "long ago", and ticks_diff stays exact.
_AGE_MAX_MS = const(0x10000000)


def ticks_add(ticks, delta_ms):
    return (ticks + delta_ms) & _TICKS_MAX


def ticks_diff(a, b):
    """a - b in ms, for a and b less than 2**29 ms (6.2 days) apart, as time.ticks_diff."""
    return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def ago(now, age_ms):
    """The ticks `age_ms` before `now`; ages beyond _AGE_MAX_MS stay there, so that
    ticks_diff (good for 2**29 ms) still reads them as old."""
    return ticks_add(now, -min(max(0, age_ms), _AGE_MAX_MS))


def as_int(value):
    """A decoded field as an int; anything else (None, a wrong type) as 0."""
    return value if isinstance(value, int) else 0
