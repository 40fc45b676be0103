"""Haptic motor and LED patterns, stepped without blocking.

    out = Outputs(haptic_pin, led_pin)
    out.haptic(name); out.led(name)
    out.wake(now)                 # at the start of every pass (the no-contact blink)
    out.step(now) -> ticks of the next change, or None      # call on every pass

A pattern is a tuple of on/off durations in ms, starting with on. The LED "no_contact"
pattern is a 30 ms blink on every wake: it costs no extra wakes and still shows.
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

_TICKS_MAX = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)

HAPTIC = {
    "panic_confirm": (300,),                     # one firm buzz: the press was taken
    "operator_ack": (100, 100, 100, 100, 600),   # two short, one long: a person has it
    "proximity_warning": (500, 300, 500),
    "proximity_alarm": (800, 200, 800, 200, 800),
    "confirm": (150,),
    "locate": (100, 100, 100),
    "panic_repeat": (300, 150, 300),             # two firm buzzes: the press was taken again
    "proximity_uncertain": (250, 600, 250, 600, 250),   # slow pulses: the centre is unsure
}
LED = {"off": None, "no_contact": (30,)}


def _diff(a, b):
    return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


class _Player:
    def __init__(self, pin):
        self.pin = pin
        self.pattern = None
        self.index = 0
        self.until = 0

    def start(self, pattern, now):
        self.pattern, self.index = pattern, 0
        self.pin.value(1)
        self.until = (now + pattern[0]) & _TICKS_MAX

    def step(self, now):
        while self.pattern is not None and _diff(now, self.until) >= 0:
            self.index += 1
            if self.index >= len(self.pattern):
                self.pattern = None
                self.pin.value(0)
                return None
            self.pin.value(0 if self.index % 2 else 1)
            self.until = (self.until + self.pattern[self.index]) & _TICKS_MAX
        return None if self.pattern is None else self.until


class Outputs:
    def __init__(self, haptic_pin, led_pin):
        self._haptic = _Player(haptic_pin)
        self._led = _Player(led_pin)
        self.led_mode = "off"
        self._pending = None
        self.played = []                         # names, most recent last (kept short)

    def haptic(self, name):
        self._pending = HAPTIC.get(name, HAPTIC["confirm"])
        self.played.append(name)
        if len(self.played) > 8:
            self.played.pop(0)

    def led(self, name):
        self.led_mode = name if name in LED else "off"

    def wake(self, now):
        blink = LED.get(self.led_mode)
        if blink is not None and self._led.pattern is None:
            self._led.start(blink, now)

    def busy(self):
        return self._pending is not None or self._haptic.pattern is not None \
            or self._led.pattern is not None

    def step(self, now):
        if self._pending is not None:
            self._haptic.start(self._pending, now)
            self._pending = None
        a = self._haptic.step(now)
        b = self._led.step(now)
        if a is None:
            return b
        if b is None or _diff(a, b) < 0:
            return a
        return b
