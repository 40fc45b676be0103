"""What main.py does before the app, after any reset but a deep-sleep wake: safe mode, and a
pause in a crash loop (docs/HARDWARE.md). Boot only: main.py drops this module before it
imports the app, so none of it stays in the heap.

Safe mode: the SAFE_MODE pin held low at boot, or any key on the REPL UART within 2 s,
skips the app and the watchdog, so an engineer always gets the REPL back. A press of the
panic button ends the window at once (the app must see it).

From the third crash in a row (the count is bootguard.py's), the board waits before trying
again: 10 s, 20 s, 40 s ... up to 5 min, in deep sleep (the next boot is a deep-sleep wake,
which tries the app); the button and the link's wake line still wake it at once.
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

_BACKOFF_FROM = const(3)
_BACKOFF_BASE_MS = const(10000)
_BACKOFF_MAX_MS = const(300000)
_WINDOW_MS = const(2000)
_POLL_MS = const(50)  # app.py's _WINDOW_POLL_MS


def start_app(machine, esp32, ticks, stdin, pins, crashes):
    """False for safe mode; True to start the app, after the crash-loop pause if one is due
    (a deep sleep: on the board it does not return)."""
    print("vigil: press a key within 2 s for safe mode")
    Pin = machine.Pin
    why = None
    if Pin(pins.SAFE_MODE_PIN, Pin.IN, Pin.PULL_UP).value() == 0:
        why = "safe-mode pin"
    else:
        button = Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP)
        import select
        poll = select.poll()
        poll.register(stdin, select.POLLIN)
        deadline = ticks.ticks_add(ticks.ticks_ms(), _WINDOW_MS)
        while ticks.ticks_diff(deadline, ticks.ticks_ms()) > 0 and button.value() != 0:
            if poll.poll(_POLL_MS):
                stdin.read(1)
                why = "key on the REPL"
                break
    if why:
        print("vigil: safe mode (%s): app and watchdog not started" % why)
        return False
    if crashes >= _BACKOFF_FROM:
        pause_ms = min(_BACKOFF_BASE_MS << min(crashes - _BACKOFF_FROM, 8), _BACKOFF_MAX_MS)
        print("vigil: %d crashes in a row, pausing %d s" % (crashes, pause_ms // 1000))
        esp32.wake_on_ext0(Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP), esp32.WAKEUP_ALL_LOW)
        esp32.wake_on_ext1((Pin(pins.LINK_WAKE_PIN, Pin.IN, Pin.PULL_UP),), esp32.WAKEUP_ALL_LOW)
        machine.deepsleep(pause_ms)
    return True
