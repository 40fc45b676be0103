"""Issue 10: the firmware on the real MicroPython VM (`--runtime micropython`), one process per
boot, its bus calls forwarded to the emulated board, its flash on littlefs blocks the host
keeps. The differential check: the same scenario and seed give the same trace_sha256 under
both runtimes (here on the first part of two scenarios; `make firmware-check` runs them all
in full)."""
import json
import subprocess
import sys

import littlefs
import pytest

from host import emulate, scenario
from host.emulator import World, device, machine_bus
from host.emulator.vmtools import parse_heap

from .vm import needs_micropython

pytestmark = [pytest.mark.micropython, needs_micropython]


def _run(name, duration_s, runtime, **kw):
    sc = scenario.load(name)
    sc["scenario"]["duration_s"] = duration_s
    return emulate.run(sc, runtime=runtime, **kw)[0]


@pytest.mark.parametrize("name,duration_s", [
    ("panic-walk", 1800),   # the walk and the panic press at 1500 s, acked by the centre
    ("deep-sleep", 5400),   # a boot per deep sleep, and the panic that wakes it at 5000 s
])
def test_both_runtimes_give_the_same_trace(name, duration_s):
    vm = _run(name, duration_s, "micropython")
    cp = _run(name, duration_s, "cpython")
    assert vm["trace_sha256"] == cp["trace_sha256"]
    assert vm["alarms_raised"] == cp["alarms_raised"] == 1
    assert (vm["runtime"], cp["runtime"]) == ("micropython", "cpython")
    assert vm["device_faults"] == [] and vm["crashes"] == 0
    (peak,) = vm["peak_heap_bytes"].values()
    assert 20_000 < peak < 256 * 1024
    assert cp["peak_heap_bytes"] is None


def test_a_memory_error_is_a_device_fault_not_a_traceback():
    summary = _run("panic-walk", 60, "micropython", heap_bytes=64 * 1024)
    assert summary["device_faults"], "64K cannot hold the firmware's imports"
    fault = summary["device_faults"][0]
    assert fault["device"] == 1003 and fault["kind"] == "memory_error"
    assert fault["detail"].startswith("MemoryError")


def test_the_cli_reports_the_runtime_and_refuses_bad_heaps(tmp_path):
    def vigil(*args):
        return subprocess.run([sys.executable, "-m", "host.cli", *args],
                              capture_output=True, text=True)
    bad = vigil("emulate", "panic-walk", "--runtime", "micropython", "--heap", "12Q")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "12Q" in bad.stderr
    no_vm = vigil("emulate", "panic-walk", "--heap", "96K")
    assert no_vm.returncode == 2 and "--runtime micropython" in no_vm.stderr
    toml = tmp_path / "short.toml"
    builtin = emulate.REPO / "host" / "scenarios" / "panic-walk.toml"
    toml.write_text(builtin.read_text().replace(
        "duration_s = 7200", "duration_s = 120"))
    ok = vigil("emulate", str(toml), "--runtime", "micropython", "--json",
               "--save-flash", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["runtime"] == "micropython" and summary["device_faults"] == []
    listing = vigil("flash-image", "ls", str(tmp_path / "device-1003.img"))
    assert "/lib/firmware/app.mpy" in listing.stdout and "/main.py" in listing.stdout


def test_parse_heap():
    assert parse_heap("96K") == 98304 and parse_heap("1M") == 1 << 20
    assert parse_heap("65536") == 65536
    for bad in ("", "K", "0K", "96Q", "-1K", "4K"):
        with pytest.raises(ValueError):
            parse_heap(bad)


# --- the bridge is generic over bus names -----------------------------------------------------
PROBE_MAIN = b"""
import _board, machine
print("echo", _board.probe_echo(7, -(1 << 40), b"\\x00\\xff", "t\\u00e9", [1, [None, True]], 2.5))
try:
    _board.probe_echo("boom")
except ValueError as e:
    print("raised", repr(e.args))
hits = []
p = machine.Pin(4, machine.Pin.IN)
p.irq(lambda pin: hits.append(pin.value()), trigger=machine.Pin.IRQ_RISING)
import time
time.sleep_ms(1000)
print("irq", hits)
"""


def test_a_new_bus_call_is_forwarded_without_changing_the_bridge(monkeypatch):
    def probe_echo(self, *args):
        if args == ("boom",):
            raise ValueError("probe says no", 3)
        return list(args)

    monkeypatch.setattr(machine_bus.BoardBus, "probe_echo", None, raising=False)
    monkeypatch.setattr(device.EmulatedDevice, "bus_probe_echo", probe_echo, raising=False)
    with World(seed=1) as world:
        dev = world.add_device(1, files={"/main.py": PROBE_MAIN}, runtime="micropython")
        world.at(1000, dev.drive_pin, 4, 1)
        world.run_until(2000)
        lines = [line for _t, line in dev.log]
    assert lines[0] == "echo [7, -1099511627776, b'\\x00\\xff', 't\\xe9', [1, [None, True]], 2.5]"
    assert lines[1] == "raised ('probe says no', 3)"
    assert lines[2] == "irq [1]"  # the handler ran in the VM, at the edge, in virtual time


def test_a_crash_shows_the_vm_traceback_and_resets():
    with World(seed=1) as world:
        dev = world.add_device(1, files={"/main.py": b"x = 1\n1 / 0\n"}, runtime="micropython")
        world.run_until(700)
        assert dev.crashes and dev.crashes[0][1] == "ZeroDivisionError: divide by zero"
        assert any('File "/main.py", line 2' in line for _t, line in dev.log)


# --- flash ----------------------------------------------------------------------------------
def test_firmware_writes_through_the_vm_land_in_the_hosts_image():
    with World(seed=1) as world:
        main = (b"import os\nos.mkdir('/state')\n"
                b"with open('/state/x.bin', 'wb') as f:\n    f.write(b'vm' * 3000)\n")
        dev = world.add_device(1, files={"/main.py": main}, runtime="micropython")
        world.run_until(2000)
        image = dev.flash.image
    fs = littlefs.LittleFS(block_size=4096, block_count=len(image) // 4096, mount=False)
    fs.context.buffer = bytearray(image)
    fs.mount()
    with fs.open("/state/x.bin", "rb") as f:
        assert f.read() == b"vm" * 3000


def test_a_firmware_that_never_waits_is_stopped_with_one_error():
    from host.emulator import EmulatorError

    with World(seed=1, hang_timeout_s=3) as world:
        world.add_device(1, files={"/main.py": b"while True:\n    pass\n"}, runtime="micropython")
        with pytest.raises(EmulatorError, match="without waiting"):
            world.run_until(2000)
