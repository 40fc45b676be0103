"""Haptic motor and LED patterns, stepped without blocking.

    out = Outputs(haptic_pin, led_pin)
    out.haptic(name); out.led(name)
    out.wake(now)                 # at the start of every pass (the no-contact blink)
    out.step(now) -> ticks of the next change, or None      # call on every pass

A haptic pattern is a tuple of on/off durations in ms, starting with on. An LED mode is
the length of the blink it shows on every wake (ms, 0: off): "no_contact" blinks 30 ms,
which costs no extra wakes and still shows.

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
LED = {"off": 0, "no_contact": 30}


class Outputs:
    def __init__(self, haptic_pin, led_pin):
        self._haptic_pin = haptic_pin
        self._led_pin = led_pin
        self._pending = []                       # patterns waiting their turn, oldest first
        self._pattern = None                     # the haptic pattern playing
        self._index = 0                          # its step: even on, odd off, -1 resting
        self._until = 0                          # ticks the step ends
        self._ended = None                       # ticks the last pattern ended
        self._blink_ms = 0                       # the LED mode
        self._led_until = None                   # ticks the blink ends, None: LED off

    def haptic(self, name):
        pattern = HAPTIC.get(name, HAPTIC["confirm"])
        if pattern not in self._pending:
            if len(self._pending) >= _QUEUE_MAX:
                self._pending.pop(0)
            self._pending.append(pattern)

    def led(self, name):
        self._blink_ms = LED.get(name, 0)

    def wake(self, now):
        if self._blink_ms and self._led_until is None:
            self._led_pin.value(1)
            self._led_until = (now + self._blink_ms) & _TICKS_MAX

    def step(self, now):
        """Drive both pins up to now; return the ticks of the next change, or None."""
        pin = self._haptic_pin
        while True:
            if self._pattern is None:
                if not self._pending:
                    break
                # The next pattern, after _GAP_MS of stillness if another one ended lately.
                self._pattern = pattern = self._pending.pop(0)
                rest_ms = 0 if self._ended is None else _GAP_MS - ticks_diff(now, self._ended)
                if rest_ms > 0:
                    self._index = -1
                    pin.value(0)
                    self._until = (now + rest_ms) & _TICKS_MAX
                else:
                    self._index = 0
                    pin.value(1)
                    self._until = (now + pattern[0]) & _TICKS_MAX
            elif ticks_diff(now, self._until) < 0:
                break
            else:
                self._index += 1
                if self._index >= len(self._pattern):
                    self._pattern = None
                    pin.value(0)
                    self._ended = self._until
                else:
                    pin.value(0 if self._index % 2 else 1)
                    self._until = (self._until + self._pattern[self._index]) & _TICKS_MAX
        led_until = self._led_until
        if led_until is not None and ticks_diff(now, led_until) >= 0:
            self._led_pin.value(0)
            led_until = self._led_until = None
        if self._pattern is None:
            return led_until
        if led_until is None or ticks_diff(self._until, led_until) < 0:
            return self._until
        return led_until
