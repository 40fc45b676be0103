"""The crash count across resets, and safe mode: how an engineer always gets the REPL back.

The count lives in the first PREFIX_BYTES of RTC memory, which survive a reset, the watchdog
and deep sleep but not a power cut (persist.RtcState keeps the rest). main.py counts each
crash; the app clears the count once a pass has completed and the board goes to sleep.
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

PREFIX_BYTES = const(8)
_MAGIC = b"VGRD"
# From the third crash in a row, wait before trying again: 10 s, 20 s, 40 s ... up to 5 min.
# The button and the link's wake line still wake the board at once.
_BACKOFF_FROM = const(3)
_BACKOFF_BASE_MS = const(10000)
_BACKOFF_MAX_MS = const(300000)


class BootGuard:
    def __init__(self, rtc):
        self.rtc = rtc
        self.crashes = 0
        memory = bytes(rtc.memory())
        if len(memory) >= PREFIX_BYTES and memory[:4] == _MAGIC:
            self.crashes = memory[4]

    def _write(self):
        memory = bytes(self.rtc.memory())
        rest = memory[PREFIX_BYTES:] if len(memory) >= PREFIX_BYTES else b""
        prefix = _MAGIC + bytes((min(self.crashes, 255), 0, 0, 0))
        self.rtc.memory(prefix + rest)

    def count_crash(self):
        self.crashes += 1
        self._write()

    def clear(self):
        if self.crashes:
            self.crashes = 0
            self._write()

    def backoff_ms(self):
        """How long to wait before starting the app again (0: at once)."""
        if self.crashes < _BACKOFF_FROM:
            return 0
        ms = _BACKOFF_BASE_MS << min(self.crashes - _BACKOFF_FROM, 8)
        return min(ms, _BACKOFF_MAX_MS)


def safe_mode_requested(machine, stdin, pins, window_ms, ticks):
    """Safe mode: the SAFE_MODE pin held low at boot, or any key on the REPL UART within
    window_ms. A press of the panic button ends the window at once (the app must see it)."""
    Pin = machine.Pin
    if Pin(pins.SAFE_MODE_PIN, Pin.IN, Pin.PULL_UP).value() == 0:
        return "safe-mode pin"
    button = Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP)
    import select
    poll = select.poll()
    poll.register(stdin, select.POLLIN)
    deadline = ticks.ticks_add(ticks.ticks_ms(), window_ms)
    while ticks.ticks_diff(deadline, ticks.ticks_ms()) > 0:
        if button.value() == 0:
            return None
        if poll.poll(50):
            stdin.read(1)
            return "key on the REPL"
    return None
