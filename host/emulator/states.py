"""The emulated board's states: reset causes and wake reasons (the ESP32 port's values, as in
mpy/machine.py), the CPU states the energy model counts, and the exception that unwinds the
firmware at a reset. Shared by device.py and machine_bus.py."""

# machine.reset_cause() / wake_reason() values (the ESP32 port's, as in mpy/machine.py)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
RESET_NAMES = {PWRON_RESET: "PWRON_RESET", HARD_RESET: "HARD_RESET", WDT_RESET: "WDT_RESET",
               DEEPSLEEP_RESET: "DEEPSLEEP_RESET", SOFT_RESET: "SOFT_RESET"}
EXT0_WAKE, EXT1_WAKE, TIMER_WAKE = 2, 3, 4

# CPU states. "repl": awake at the REPL prompt; "rom": stuck in the ROM (strapping).
OFF, BOOT, RUN, WAIT, IDLE, LIGHT, DEEP, REPL, ROM = ("off", "boot", "run", "wait", "idle",
                                                      "light", "deep", "repl", "rom")


class DeviceReset(BaseException):
    """Unwinds the firmware for a reset; a BaseException so `except Exception` lets it by."""

    def __init__(self, cause, sleep_ms=None, power_cut=False, why=""):
        super().__init__(RESET_NAMES.get(cause, cause), why)
        self.cause = cause
        self.sleep_ms = sleep_ms
        self.power_cut = power_cut
        self.why = why
