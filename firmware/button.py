"""Panic button driver: edges from the pin IRQ into a preallocated ring, plus a level check
after every wake (an edge during sleep fires no IRQ). Debounce and long press are the core's.

    b = Button(pin, ticks_ms)     # active low
    b.events() -> [(pressed, ticks), ...] since the last call, oldest first
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

_RING = const(16)


class Button:
    def __init__(self, pin, ticks_ms):
        self.pin = pin
        self.ticks_ms = ticks_ms
        self._levels = bytearray(_RING)
        self._ticks = [0] * _RING          # preallocated: the IRQ handler must not allocate
        self._head = 0
        self._tail = 0
        self.reported = 0                  # last level handed to the core (1 = pressed)
        pin.irq(handler=self._irq, trigger=pin.IRQ_FALLING | pin.IRQ_RISING)

    def _irq(self, pin):
        nxt = (self._head + 1) % _RING
        if nxt == self._tail:              # full: keep the oldest edges, the level check fixes up
            return
        self._levels[self._head] = 0 if pin.value() else 1
        self._ticks[self._head] = self.ticks_ms()
        self._head = nxt

    def pressed(self):
        return 0 if self.pin.value() else 1

    def events(self):
        out = []
        while self._tail != self._head:
            level = self._levels[self._tail]
            if level != self.reported:
                out.append((level, self._ticks[self._tail]))
                self.reported = level
            self._tail = (self._tail + 1) % _RING
        level = self.pressed()
        if level != self.reported:
            out.append((level, self.ticks_ms()))
            self.reported = level
        return out
