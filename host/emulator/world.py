"""The virtual clock and discrete-event scheduler that all emulated devices share."""
import hashlib
import heapq
import json
import math
import random


class EmulatorError(RuntimeError):
    """The emulation itself cannot go on (e.g. firmware that never yields)."""


class World:
    """Virtual time (integer microseconds) and a heap of scheduled callbacks.

    Time moves only in `run_until`: each callback runs at its time, in (time, order of
    scheduling) order, so the same seed and the same calls give the same run.
    """

    def __init__(self, seed=0, utc_start_ms=1767225600000, hang_timeout_s=30.0):
        self.seed = seed
        self.now_us = 0
        # UTC at virtual time 0 (default 2026-01-01T00:00:00Z): the GNSS constellation's time.
        self.utc_start_ms = utc_start_ms
        self.hang_timeout_s = hang_timeout_s
        self.devices = {}
        self.trace = []  # (t_ms, device_id, kind, detail)
        self.log = []  # (t_ms, device_id, line): firmware stdout
        self._heap = []
        self._seq = 0
        self._closed = False

    # --- time -------------------------------------------------------------------------
    @property
    def now_ms(self):
        return self.now_us / 1000

    def rng(self, *names):
        """A random stream derived from the seed and `names` only (str seeds hash with
        SHA-512 inside `random`, never with `hash()`)."""
        return random.Random("%s|%s" % (self.seed, "|".join(str(n) for n in names)))

    def at_us(self, t_us, fn, arg=None):
        """Run fn(arg) at virtual time t_us (no earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(int(t_us), self.now_us), self._seq, fn, arg))

    def at(self, t_ms, fn, *args):
        """Run fn(*args) at virtual time t_ms."""
        self.at_us(round(t_ms * 1000), _call_with, (fn, args))

    def after(self, delay_ms, fn, *args):
        self.at_us(self.now_us + round(delay_ms * 1000), _call_with, (fn, args))

    def next_event_us(self):
        return self._heap[0][0] if self._heap else None

    def run_until(self, t_ms):
        """Run every event up to and including t_ms, then set the clock to t_ms."""
        if self._closed:
            raise EmulatorError("world is closed")
        target = round(t_ms * 1000)
        self.at_us(target, _noop)  # firmware polling in a busy loop stops here, too
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= target:
            t_us, _, fn, arg = pop(heap)
            if t_us > self.now_us:
                self.now_us = t_us
            fn(arg)
        if target > self.now_us:
            self.now_us = target

    def run_for(self, ms):
        self.run_until(self.now_us / 1000 + ms)

    def run_until_done(self, ms, done, after_step=None):
        """Run event by event for up to `ms`, stopping early once done() is true; returns
        done(). after_step() runs after each step (e.g. to pump a console)."""
        # at least 1 us: a float deadline a hair ahead of now must still be reached
        target_us = self.now_us + max(1, math.ceil(ms * 1000))
        while not done():
            nxt = self.next_event_us()
            if nxt is None or nxt >= target_us:
                self.run_until(target_us / 1000)
                break
            self.run_until(nxt / 1000)
            if after_step is not None:
                after_step()
        if after_step is not None:
            after_step()
        return done()

    # --- devices ----------------------------------------------------------------------
    def add_device(self, device_id, key=None, profile="esp32-devkitc", files=None, image=None,
                   ticks_start_ms=None, rtc_utc_ms=None, **options):
        """Add and power on an emulated board. See EmulatedDevice for the options."""
        from .device import EmulatedDevice

        if device_id in self.devices:
            raise ValueError("device %r already exists" % (device_id,))
        dev = EmulatedDevice(self, device_id, key=key, profile=profile, files=files,
                             image=image, ticks_start_ms=ticks_start_ms,
                             rtc_utc_ms=rtc_utc_ms, **options)
        self.devices[device_id] = dev
        dev.power_on()
        return dev

    # --- records ----------------------------------------------------------------------
    def record(self, device_id, kind, detail=""):
        self.trace.append((self.now_us / 1000, device_id, kind, detail))

    def trace_sha256(self):
        """A hash of the full event trace, to compare two runs."""
        h = hashlib.sha256()
        for entry in self.trace:
            h.update(json.dumps(entry, default=repr, separators=(",", ":")).encode())
            h.update(b"\n")
        return h.hexdigest()

    def close(self):
        """Stop every device's firmware thread. The world cannot run afterwards."""
        if self._closed:
            return
        self._closed = True
        for dev in self.devices.values():
            dev._shutdown()
        radio = getattr(self, "radio", None)  # host/emulator/radio.py, made on first use
        if radio is not None:
            radio.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _noop(_):
    pass


def _call_with(fn_args):
    fn, args = fn_args
    fn(*args)
