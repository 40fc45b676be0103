"""The GNSS driver against tiny UART and Pin fakes."""

import datetime

import pytest

from firmware.gnss import Gnss
from tests.test_nmea import WHEN, gga, gsa, rmc
from tests.vm import device_lib, needs_micropython, run_micropython


class FakeUart:
    def __init__(self):
        self.rx = bytearray()
        self.reads = 0

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        self.reads += 1
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


class FakePin:
    def __init__(self):
        self.values = []

    def value(self, v=None):
        if v is None:
            return self.values[-1] if self.values else 0
        self.values.append(v)


def epoch(seconds, status="A"):
    t = WHEN + datetime.timedelta(seconds=seconds)
    return rmc(t, 52.1, 5.1, status=status) + gga(t, 52.1, 5.1, quality=1 if status == "A" else 0) + gsa()


def test_starts_off_and_switches_the_enable_pin():
    pin = FakePin()
    g = Gnss(FakeUart(), pin)
    assert pin.values == [0] and not g.powered
    g.power(True)
    g.power(1)
    g.power(False)
    assert pin.values == [0, 1, 0]


def test_poll_returns_fixes_and_drops_no_fix_epochs():
    uart = FakeUart()
    g = Gnss(uart, FakePin())
    g.power(True)
    assert g.poll() == []
    uart.rx += epoch(0, "V") + epoch(1, "V") + epoch(2)
    fixes = []
    while uart.rx:
        fixes += g.poll()
    assert len(fixes) == 1 and fixes[0]["lat_e7"] == 521000000 and fixes[0]["source"] == 1
    assert g.parser.sentences == 9  # the two no-fix epochs were read, then dropped


def test_one_poll_is_bounded():
    uart = FakeUart()
    g = Gnss(uart, FakePin())
    uart.rx += b"".join(epoch(s) for s in range(10))
    g.poll()
    assert uart.reads == 4 and uart.rx, "a flood of NMEA must not stall the superloop"


def test_sentence_split_across_polls_still_parses():
    uart = FakeUart()
    g = Gnss(uart, FakePin())
    data = epoch(5)
    uart.rx += data[:37]
    assert g.poll() == []
    uart.rx += data[37:]
    assert len(g.poll()) == 1


def test_power_off_drops_half_an_epoch():
    uart = FakeUart()
    g = Gnss(uart, FakePin())
    g.power(True)
    t = WHEN
    uart.rx += rmc(t, 52.1, 5.1) + gga(t, 52.1, 5.1)[:20]
    assert g.poll() == []
    g.power(False)
    g.power(True)
    uart.rx += gga(t, 52.1, 5.1)  # same time field, but a new power session
    assert g.poll() == []


def test_uart_errors_and_garbage_never_raise():
    class BrokenUart(FakeUart):
        def readinto(self, buf):
            raise OSError(5)

    uart = BrokenUart()
    uart.rx += b"x"
    assert Gnss(uart, FakePin()).poll() == []
    uart = FakeUart()
    uart.rx += bytes(range(256)) * 2
    g = Gnss(uart, FakePin())
    while uart.rx:
        assert g.poll() == []
    assert g.parser.garbage > 0


VM_SCRIPT = r"""
from firmware.gnss import Gnss
class Uart:
    def __init__(self, data):
        self.rx = data
    def any(self):
        return len(self.rx)
    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n
class Pin:
    def value(self, v=None):
        self.v = v
g = Gnss(Uart(DATA), Pin())
g.power(1)
fixes = []
for _ in range(20):
    fixes += g.poll()
print(len(fixes), g.parser.sentences, fixes[-1]['fix_time_ms'], fixes[-1]['lon_e7'])
"""


@pytest.mark.micropython
@needs_micropython
def test_driver_on_the_vm_in_48k(tmp_path):
    data = epoch(0, "V") + b"".join(epoch(s) for s in range(1, 6))
    script = VM_SCRIPT.replace("DATA", repr(data))
    result = run_micropython(script, path=[device_lib(tmp_path, compiled=True)])
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    g = Gnss(FakeUart(), FakePin())
    g.uart.rx += data
    fixes = []
    while g.uart.rx:
        fixes += g.poll()
    want = "%d %d %d %d" % (len(fixes), g.parser.sentences, fixes[-1]["fix_time_ms"], fixes[-1]["lon_e7"])
    assert result.stdout.decode().split("\n")[0] == want == "5 18 %d 51000000" % fixes[-1]["fix_time_ms"]
