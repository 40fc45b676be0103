"""The crash count across resets: main.py counts each crash, safe mode (firmware/safemode.py)
pauses a crash loop, and the app clears the count once a pass has completed and the board
goes to sleep.

The count lives in the first PREFIX_BYTES of RTC memory ("VGRD", the count, 3 spare), which
survive a reset, the watchdog and deep sleep but not a power cut (persist.rtc_save keeps the
rest).
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

PREFIX_BYTES = const(8)


class BootGuard:
    def __init__(self, rtc):
        self.rtc = rtc
        memory = bytes(rtc.memory())
        self.crashes = memory[4] if len(memory) >= PREFIX_BYTES and memory[:4] == b"VGRD" else 0

    def save(self, crashes):
        """Write the count (main.py: one more after a crash), keeping the rest of RTC memory."""
        self.crashes = crashes
        rest = bytes(self.rtc.memory())[PREFIX_BYTES:]
        self.rtc.memory(b"VGRD" + bytes((min(crashes, 255), 0, 0, 0)) + rest)

    def clear(self):
        if self.crashes:
            self.save(0)
