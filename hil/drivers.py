"""Drivers: one small protocol per capability, an implementation per kind of board, and a
fake of each (labgrid's drivers). The Dut only ever calls these protocols:

    Button   press(ms)
    Gps      set_route(waypoints, speed_kmh, sky)     waypoints [(lat, lon)]; sky=False: no fix
    Battery  set_pct(pct)
    Power    cut(); on(); reset()                      reset = EN / esptool DTR-RTS reset
    Console  lines() -> [str]                          the console text so far
             write(data)                               type into the console (the REPL UART)
    Outputs  pulses(name, since_ms) -> [(start_ms, duration_ms or None)]   haptic, led

Emu*: an in-process emulated board (host.emulator). Side*: the pty board's side channel
(host/transport/sidechannel.py). Fake*: record what they were asked, for the rig's own tests.
"""
import time

EN_PULSE_MS = 10  # how long a reset holds EN low (esptool holds it ~100 ms; any will do)


class EmuButton:
    def __init__(self, device):
        self.device = device

    def press(self, ms):
        self.device.button.hold(ms)


class EmuGps:
    def __init__(self, device):
        self.device = device

    def set_route(self, waypoints, speed_kmh=5.0, sky=True):
        from host.emulator import Route

        gnss = self.device.gnss
        now_ms = self.device.world.now_ms
        gnss.set_route(Route([tuple(p) for p in waypoints], speed_mps=speed_kmh / 3.6,
                             start_ms=now_ms))
        gnss.indoor = [s for s in gnss.indoor if s[1] <= now_ms]
        if not sky:
            gnss.indoor.append((now_ms, float("inf")))


class EmuBattery:
    def __init__(self, device):
        self.device = device

    def set_pct(self, pct):
        self.device.battery.set_soc(float(pct))


class EmuPower:
    def __init__(self, device):
        self.device = device

    def cut(self):
        self.device.power_cut()

    def on(self):
        self.device.power_on()

    def reset(self):
        # EN pulls CHIP_PU low: the whole chip, RTC domain included, restarts (PWRON_RESET).
        # The cut takes effect when the board next runs, so power returns a pulse later.
        self.device.power_cut()
        self.device.world.after(EN_PULSE_MS, self.device.power_on)

    def cut_after_flash_writes(self, n):
        self.device.cut_power_after_flash_writes(n)


class EmuConsole:
    def __init__(self, device):
        self.device = device
        self._text = bytearray()
        device.on_console(self._text.extend)  # the whole session, not the device's last 64 KiB

    def lines(self):
        return _lines(bytes(self._text).decode("utf-8", "replace"))

    def write(self, data):
        self.device.console_in(bytes(data))


def _lines(text):
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


class EmuOutputs:
    def __init__(self, device):
        self.device = device

    def pulses(self, name, since_ms=0):
        return getattr(self.device, name).pulses(since_ms)


class SideButton:
    def __init__(self, channel):
        self.channel = channel

    def press(self, ms):
        self.channel.command("PRESS %d" % ms)


class SideGps:
    def __init__(self, channel):
        self.channel = channel

    def set_route(self, waypoints, speed_kmh=5.0, sky=True):
        points = " ".join("%.7f,%.7f" % (p[0], p[1]) for p in waypoints)
        self.channel.command("ROUTE %g %d %s" % (speed_kmh, 1 if sky else 0, points))


class SideBattery:
    def __init__(self, channel):
        self.channel = channel

    def set_pct(self, pct):
        self.channel.command("BATTERY %g" % pct)


class SidePower:
    def __init__(self, channel):
        self.channel = channel

    def cut(self):
        self.channel.command("POWER 0")

    def on(self):
        self.channel.command("POWER 1")

    def reset(self):
        self.channel.command("RESET")

    def cut_after_flash_writes(self, n):
        self.channel.command("CUT_AFTER_WRITES %d" % n)


class SerialConsole:
    """Console text from a tty (the board's USB, or the pty board's console pty).

    settle_s: wall time to give typed bytes to reach a board whose clock the rig steps over
    another channel (a pty hands bytes to its other end asynchronously; ser2net adds TCP):
    a key must be in the board's UART before its virtual clock runs on."""

    def __init__(self, port, settle_s=0.0):
        self.port = port
        self.settle_s = settle_s
        self._bytes = bytearray()

    def lines(self):
        # pyserial's rfc2217 port hands out one byte per read() at timeout 0: read until
        # nothing waits. Decoded whole, so a character split between reads stays whole.
        while True:
            waiting = self.port.in_waiting
            if not waiting:
                break
            self._bytes += self.port.read(waiting)
        return _lines(bytes(self._bytes).decode("utf-8", "replace"))

    def write(self, data):
        self.port.write(bytes(data))
        self.port.flush()
        if self.settle_s:
            time.sleep(self.settle_s)


class Fake:
    """Base of the fakes: every call is appended to `calls` as (name, args)."""

    def __init__(self):
        self.calls = []

    def _record(self, name, *args):
        self.calls.append((name, args))


class FakeButton(Fake):
    def press(self, ms):
        self._record("press", ms)


class FakeGps(Fake):
    def set_route(self, waypoints, speed_kmh=5.0, sky=True):
        self._record("set_route", list(waypoints), speed_kmh, sky)


class FakeBattery(Fake):
    def set_pct(self, pct):
        self._record("set_pct", pct)


class FakePower(Fake):
    def cut(self):
        self._record("cut")

    def on(self):
        self._record("on")

    def reset(self):
        self._record("reset")

    def cut_after_flash_writes(self, n):
        self._record("cut_after_flash_writes", n)


class FakeOutputs(Fake):
    def __init__(self, pulses=None):
        super().__init__()
        self.given = pulses or {}

    def pulses(self, name, since_ms=0):
        self._record("pulses", name, since_ms)
        return [p for p in self.given.get(name, []) if p[0] >= since_ms]


class FakeConsole(Fake):
    def __init__(self, text=()):
        super().__init__()
        self.text = list(text)

    def lines(self):
        return list(self.text)

    def write(self, data):
        self._record("write", bytes(data))


class RealClock:
    """Wall time, for real boards: the same HIL test is honest in the lab."""

    virtual = False
    settle_s = 0

    def __init__(self):
        self._start = time.monotonic()

    def now_s(self):
        return time.monotonic() - self._start

    def now_ms(self):
        return self.now_s() * 1000

    def advance_s(self, seconds):
        time.sleep(seconds)
        return False

    def sleep_ms(self, ms):
        time.sleep(ms / 1000)
