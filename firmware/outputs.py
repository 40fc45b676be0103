"""Haptic motor and LED patterns, stepped without blocking.

    out = Outputs(haptic_pin, led_pin)
    out.haptic(name); out.led(name)
    out.wake(now)                 # at the start of every pass (the no-contact blink)
    out.step(now) -> ticks of the next change, or None      # call on every pass

A pattern is a tuple of on/off durations in ms, starting with on. The LED "no_contact"
pattern is a 30 ms blink on every wake: it costs no extra wakes and still shows.

A haptic pattern asked for while another plays waits its turn (issue 9: an operator ACK
~350 ms after a repeat press cut the panic_repeat pattern short, so the wearer could not
tell her press was taken). Each pattern means something to the wearer, so none is cut:
up to _QUEUE_MAX wait, the oldest waiting one gives way when more come, a pattern already
waiting is not queued twice, and _GAP_MS of stillness separates two patterns so they are
felt as two (the longest gap inside one is 600 ms).
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware.clock import ticks_diff

_TICKS_MAX = const(0x3FFFFFFF)
_QUEUE_MAX = const(3)
_GAP_MS = const(1000)

# Keyword names: interned like identifiers, not a string object each in the heap.
HAPTIC = dict(
    panic_confirm=(300,),                     # one firm buzz: the press was taken
    operator_ack=(100, 100, 100, 100, 600),   # two short, one long: a person has it
    proximity_warning=(500, 300, 500),
    proximity_alarm=(800, 200, 800, 200, 800),
    confirm=(150,),
    locate=(100, 100, 100),
    panic_repeat=(300, 150, 300),             # two firm buzzes: the press was taken again
    proximity_uncertain=(250, 600, 250, 600, 250),   # slow pulses: the centre is unsure
)
LED = {"off": None, "no_contact": (30,)}


class _Player:
    def __init__(self, pin):
        self.pin = pin
        self.pattern = None
        self.index = 0
        self.until = 0
        self.ended = None                        # ticks the last pattern ended

    def start(self, pattern, now, rest_ms):
        """Play `pattern` from now, or after rest_ms of stillness (index -1: resting)."""
        self.pattern = pattern
        if rest_ms > 0:
            self.index = -1
            self.pin.value(0)
            self.until = (now + rest_ms) & _TICKS_MAX
            return
        self.index = 0
        self.pin.value(1)
        self.until = (now + pattern[0]) & _TICKS_MAX

    def step(self, now):
        while self.pattern is not None and ticks_diff(now, self.until) >= 0:
            self.index += 1
            if self.index >= len(self.pattern):
                self.pattern = None
                self.pin.value(0)
                self.ended = self.until
                return None
            self.pin.value(0 if self.index % 2 else 1)
            self.until = (self.until + self.pattern[self.index]) & _TICKS_MAX
        return None if self.pattern is None else self.until


class Outputs:
    def __init__(self, haptic_pin, led_pin):
        self._haptic = _Player(haptic_pin)
        self._led = _Player(led_pin)
        self._blink = None                       # the LED pattern shown at each wake
        self._pending = []                       # patterns waiting their turn, oldest first

    def haptic(self, name):
        pattern = HAPTIC.get(name, HAPTIC["confirm"])
        if pattern not in self._pending:
            if len(self._pending) >= _QUEUE_MAX:
                self._pending.pop(0)
            self._pending.append(pattern)

    def led(self, name):
        self._blink = LED.get(name)

    def wake(self, now):
        if self._blink is not None and self._led.pattern is None:
            self._led.start(self._blink, now, 0)

    def step(self, now):
        player = self._haptic
        a = player.step(now)
        if player.pattern is None and self._pending:
            rest_ms = 0
            if player.ended is not None:         # soon after another pattern: be still first
                rest_ms = _GAP_MS - ticks_diff(now, player.ended)
            player.start(self._pending.pop(0), now, rest_ms)
            a = player.step(now)
        b = self._led.step(now)
        if a is None:
            return b
        if b is None or ticks_diff(a, b) < 0:
            return a
        return b
