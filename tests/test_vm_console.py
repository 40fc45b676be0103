"""Issue 10: under `--runtime micropython` a key typed on the REPL UART reaches the firmware's
sys.stdin in the VM, so safe mode's "a key within 2 s" gets an engineer the REPL back there
too (the same claims as test_main_guard.py makes under CPython)."""
import pytest

from host.deploy import device_files
from host.emulate import REPO
from host.emulator import World

from .vm import needs_micropython

pytestmark = [pytest.mark.micropython, needs_micropython]


def _text(dev):
    return "\n".join(line for _, line in dev.log)


def test_a_key_within_2_s_starts_safe_mode_in_the_vm():
    with World(seed=11) as world:
        dev = world.add_device(71, files=device_files(REPO), runtime="micropython")
        dev.power_on()
        world.run_until(1000)                          # main.py waits for a key
        dev.console_in(b"x")
        world.run_until(3000)
        assert "safe mode (key on the REPL)" in _text(dev)
        assert dev.at_repl and "vigil: boot" not in _text(dev)
        dev.console_in(b"6 * 7\r")                     # the key was read: the line is clean
        world.run_until(4000)
        assert "42" in [line for _, line in dev.log]
        world.run_until(5 * 60_000)                    # no watchdog: still at the REPL
        assert dev.at_repl and dev.boot_count == 1


def test_without_a_key_the_vm_starts_the_app_after_the_window():
    with World(seed=11) as world:
        dev = world.add_device(72, files=device_files(REPO), runtime="micropython")
        dev.power_on()
        world.run_until(4000)
        boots = [t for t, line in dev.log if line.startswith("vigil: boot ")]
        assert boots and 2600 <= boots[0] <= 3300, boots  # boot 0.6 s + the 2 s window
        assert "vigil: safe mode (" not in _text(dev)
