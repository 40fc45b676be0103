"""firmware/main.py on an emulated board: safe mode gets an engineer the REPL back, a crash
anywhere (imports and the board build included) is counted and reset with a growing pause,
and a Ctrl-C on the REPL UART never leaves the wearer without the app."""
import pytest

from host.deploy import device_files
from host.emulate import REPO
from host.emulator import World
from host.emulator.states import DEEPSLEEP_RESET, HARD_RESET

SAFE_MODE_PIN = 13


@pytest.fixture
def world():
    w = World(seed=11)
    yield w
    w.close()


def _files(**replace):
    files = device_files(REPO)
    for path, text in replace.items():
        files[path] = text.encode()
    return files


def text(dev):
    return "\n".join(line for _, line in dev.log)


def test_a_key_within_2_s_starts_safe_mode_with_a_working_repl_and_no_watchdog(world):
    dev = world.add_device(61, files=_files())
    dev.power_on()
    world.run_until(1000)                              # main.py waits for a key
    dev.console_in(b"x")
    world.run_until(3000)
    assert "safe mode (key on the REPL)" in text(dev)
    assert dev.at_repl and "vigil: boot" not in text(dev)      # the app never started
    dev.console_in(b"6 * 7\r")
    world.run_until(4000)
    assert "42" in [line for _, line in dev.log]
    world.run_until(10 * 60_000)                       # no watchdog: still at the REPL
    assert dev.at_repl and dev.boot_count == 1


def test_the_safe_mode_pin_held_at_boot_starts_safe_mode(world):
    dev = world.add_device(62, files=_files())
    dev.drive_pin(SAFE_MODE_PIN, 0)
    dev.power_on()
    world.run_until(2000)
    assert "safe mode (safe-mode pin)" in text(dev) and dev.at_repl


def test_without_a_key_the_app_starts_after_the_window_and_deep_sleep_wakes_skip_it(world):
    dev = world.add_device(63, files=_files())
    dev.power_on()
    world.run_until(3 * 3600_000)
    boots = [(t, line) for t, line in dev.log if line.startswith("vigil: boot ")]
    assert boots and 2600 <= boots[0][0] <= 3200       # boot 0.6 s + the 2 s window
    assert "press a key" in text(dev)
    prompts = [t for t, line in dev.log if "press a key" in line]
    assert len(prompts) == 1 and len(boots) > 3        # deep-sleep wakes: no window
    assert not dev.at_repl


def test_a_press_ends_the_safe_mode_window_at_once(world):
    dev = world.add_device(64, files=_files())
    dev.button.press(at_ms=800)
    dev.power_on()
    world.run_until(1500)
    boots = [t for t, line in dev.log if line.startswith("vigil: boot ")]
    assert boots and boots[0] < 1500                   # did not wait the 2 s out


def test_a_crash_at_import_is_counted_reset_and_paused_from_the_third(world):
    broken = device_files(REPO)["/lib/firmware/core.py"].decode() + "\nraise ImportError('bad build')\n"
    dev = world.add_device(65, files=_files(**{"/lib/firmware/core.py": broken}))
    dev.power_on()
    world.run_until(10 * 60_000)
    assert "vigil: crash: ImportError('bad build')" in text(dev)
    assert not dev.at_repl, "a crash must not leave the board at the REPL"
    resets = [(t, d) for t, _, kind, d in world.trace if kind == "reset"]
    hard = [t for t, d in resets if d.startswith("HARD_RESET")]
    pauses = [d for t, d in resets if d.startswith("DEEPSLEEP_RESET")]
    assert len(hard) >= 3
    # from the third crash in a row: 10 s, then 20 s, then 40 s ... in deep sleep
    assert pauses[:3] == ["DEEPSLEEP_RESET 10000 ms", "DEEPSLEEP_RESET 20000 ms",
                          "DEEPSLEEP_RESET 40000 ms"]
    assert "3 crashes in a row" in text(dev)


def test_the_crash_count_survives_the_apps_deep_sleep_snapshot_and_clears_on_a_good_pass(world):
    dev = world.add_device(66, files=_files())
    dev.power_on()
    world.run_until(2 * 3600_000)
    memory = dev.rtc_memory
    assert memory[4] == 0                              # no crash counted
    assert memory[8:10] == b"VR"                       # the app's snapshot after the guard
    assert dev.reset_cause == DEEPSLEEP_RESET


def test_the_snapshot_and_the_crash_count_share_rtc_memory():
    from firmware.bootguard import BootGuard
    from firmware.persist import rtc_save, rtc_take

    class Rtc:
        data = b""

        def memory(self, data=None):
            if data is None:
                return self.data
            self.data = bytes(data)
    rtc = Rtc()
    BootGuard(rtc).save(1)                             # main.py after a crash
    rtc_save(rtc, {"counter": 5})
    assert BootGuard(rtc).crashes == 1                 # the save kept the count
    assert rtc_take(rtc) == {"counter": 5}
    guard = BootGuard(rtc)
    assert guard.crashes == 1                          # and so did the take
    guard.clear()
    assert BootGuard(rtc).crashes == 0


def test_ctrl_c_on_the_repl_uart_resets_into_the_app_instead_of_stopping_it(world):
    dev = world.add_device(67, files=_files())
    dev.power_on()
    world.run_until(10_000)                            # awake: the first fix is on its way
    assert dev.state not in ("deep", "light")
    dev.console_in(b"\x03")
    world.run_until(world.now_ms + 5000)
    assert "vigil: interrupted: reset" in text(dev)
    assert not dev.at_repl
    assert any(d.startswith("HARD_RESET") for _, _, kind, d in world.trace if kind == "reset")
    assert dev.reset_cause in (HARD_RESET, DEEPSLEEP_RESET)
