"""docs/HARDWARE.md, rule by rule: a few lines of firmware that break the rule, booted on an
emulated board, fail the way they would on a real ESP32 with stock MicroPython."""
import pytest

from host.emulator import World
from host.emulator.states import HARD_RESET, PWRON_RESET, SOFT_RESET, WDT_RESET


@pytest.fixture
def world():
    w = World(seed=3)
    yield w
    w.close()


def boot(world, main, device_id="hw", extra=None, **options):
    files = {"/main.py": main.encode()}
    for path, text in (extra or {}).items():
        files[path] = text.encode() if isinstance(text, str) else text
    dev = world.add_device(device_id, files=files, **options)
    dev.power_on()
    return dev


def text(dev):
    return "\n".join(line for _, line in dev.log)


def fault_kinds(dev):
    return [kind for _, kind, _ in dev.faults]


# --- UART --------------------------------------------------------------------------------
def test_repl_uart_buffer_size_is_fixed(world):
    dev = boot(world, "from machine import UART\nUART(0, baudrate=115200, rxbuf=1024)\n"
                      "print('never here')\n")
    world.run_for(3000)
    assert "ValueError: REPL UART buffer size is fixed" in text(dev)
    assert "never here" not in text(dev)
    assert dev.at_repl and "repl" in fault_kinds(dev)


def test_repl_uart_has_no_driver(world):
    dev = boot(world, "from machine import UART\nu = UART(0)\nprint(u.any())\n")
    world.run_for(3000)
    assert "OSError" in text(dev) and dev.at_repl


def test_repl_uart_has_no_irq(world):
    dev = boot(world, "from machine import UART\nUART(0).irq(handler=print)\n")
    world.run_for(3000)
    assert "REPL UART does not support IRQs" in text(dev)


def test_uart_rx_buffer_must_exceed_the_fifo(world):
    dev = boot(world, "from machine import UART\nUART(1, tx=18, rx=19, rxbuf=64)\n")
    world.run_for(3000)
    assert "ESP_FAIL" in text(dev) and dev.at_repl


def test_ctrl_c_on_the_repl_interrupts_the_firmware(world):
    dev = boot(world, """
import time
while True:
    try:
        time.sleep_ms(100)
    except Exception:
        print('caught by except Exception')
""")
    world.run_for(3000)
    assert not dev.at_repl
    dev.console_in(b"\x03")
    world.run_for(500)
    assert "KeyboardInterrupt" in text(dev)
    assert "caught by except Exception" not in text(dev)
    assert dev.at_repl


_UART1 = "from machine import UART\nimport machine, time\nu = UART(1, baudrate=115200, tx=18, rx=19, rxbuf=512)\n"


def test_uart_hears_nothing_in_light_sleep(world):
    dev = boot(world, _UART1 + """
machine.lightsleep(10000)
print('after sleep any', u.any())
time.sleep_ms(3000)
print('awake any', u.any())
""")
    world.run_for(3000)                      # booted, now in the 10 s light sleep
    assert dev.state == "light"
    lost = dev.feed_uart(1, b"x" * 40)
    assert lost == 40
    world.run_for(10000)
    assert dev.state != "light"
    assert dev.feed_uart(1, b"y" * 40) == 0  # awake: heard
    world.run_for(4000)
    assert "after sleep any 0" in text(dev)
    assert "awake any 40" in text(dev)
    assert dev.uarts[1].rx_lost_bytes == 40


def _received(dev):
    got = []
    dev.attach_uart(1, lambda data: got.append((dev.world.now_ms, data)))
    return got


def test_uart_bytes_take_their_baud_rate_time(world):
    dev = boot(world, """
from machine import UART
import time
u = UART(1, baudrate=9600, tx=18, rx=19)
t0 = time.ticks_ms()
u.write(b'a' * 960)
print('write returned after', time.ticks_diff(time.ticks_ms(), t0))
print('txdone', u.txdone())
u.flush()
print('flushed after', time.ticks_diff(time.ticks_ms(), t0))
""")
    got = _received(dev)
    world.run_for(5000)
    lines = text(dev)
    write_ms = int(lines.split("write returned after ")[1].split()[0])
    flush_ms = int(lines.split("flushed after ")[1].split()[0])
    # 960 bytes at 9600 baud take 1 s; write blocks until all but 256 + 128 are queued.
    assert 550 <= write_ms <= 650
    assert 990 <= flush_ms <= 1050
    assert "txdone False" in lines
    assert b"".join(d for _, d in got) == b"a" * 960


def test_uart_tx_pauses_in_light_sleep(world):
    dev = boot(world, _UART1 + "print('go')\nu.write(b'z' * 200)\nmachine.lightsleep(10000)\n"
                               "time.sleep_ms(100)\n")
    got = _received(dev)
    world.run_for(20000)
    assert got, "the bytes left in the end"
    go_at = [t for t, line in dev.log if line == "go"][0]
    # 200 bytes take 17 ms; they wait for the 10 s sleep to end instead.
    assert got[-1][0] - go_at >= 10000


def test_flush_before_light_sleep_sends_at_once(world):
    dev = boot(world, _UART1 + "print('go')\nu.write(b'z' * 200)\nu.flush()\nprint('flushed')\n"
                               "machine.lightsleep(10000)\n")
    got = _received(dev)
    world.run_for(20000)
    flushed_at = [t for t, line in dev.log if line == "flushed"][0]
    assert got and got[-1][0] <= flushed_at + 1


# --- sleep and wake ----------------------------------------------------------------------
def test_light_sleep_wakes_only_on_timer_ext0_ext1(world):
    dev = boot(world, _UART1 + """
from machine import Pin
import esp32
p = Pin(26, Pin.IN, Pin.PULL_UP)
p.irq(handler=lambda pin: None, trigger=Pin.IRQ_FALLING)
t0 = time.ticks_ms()
machine.lightsleep(20000)
print('slept', time.ticks_diff(time.ticks_ms(), t0), 'reason', machine.wake_reason())
esp32.wake_on_ext1((Pin(32, Pin.IN, Pin.PULL_UP),), esp32.WAKEUP_ALL_LOW)
t0 = time.ticks_ms()
machine.lightsleep(20000)
print('slept', time.ticks_diff(time.ticks_ms(), t0), 'reason', machine.wake_reason())
""", link={"latency_ms": 0, "jitter_ms": 0})
    world.run_for(5000)
    dev.feed_uart(1, b"data")            # no UART wake
    dev.drive_pin(26, 0)                 # no plain GPIO wake
    world.run_for(20000)
    assert "reason 4" in text(dev)       # TIMER_WAKE after the full 20 s
    first = int(text(dev).split("slept ")[1].split()[0])
    assert first >= 19990
    world.run_for(2000)
    dev.drive_pin(32, 0)                 # ext1: the wake line
    world.run_for(1000)
    assert "reason 3" in text(dev)       # EXT1_WAKE, early


def test_wake_on_ext0_needs_an_rtc_pin(world):
    dev = boot(world, "import esp32\nfrom machine import Pin\n"
                      "esp32.wake_on_ext0(Pin(18, Pin.IN), esp32.WAKEUP_ALL_LOW)\n")
    world.run_for(3000)
    assert "ValueError" in text(dev) and dev.at_repl


# --- pins --------------------------------------------------------------------------------
_EXT0 = """
import esp32, machine, time
from machine import Pin
b = Pin(33, Pin.IN, Pin.PULL_UP)
esp32.wake_on_ext0(b, esp32.WAKEUP_ALL_LOW)
machine.lightsleep(1000)
print('after sleep', b.value())
"""


def test_ext0_pad_reads_pressed_after_light_sleep_until_reinit(world):
    dev = boot(world, _EXT0 + "b.init(Pin.IN, Pin.PULL_UP)\nprint('after init', b.value())\n")
    world.run_for(5000)
    assert "after sleep 0" in text(dev)      # the phantom press (worse case, HARDWARE.md)
    assert "after init 1" in text(dev)


def test_button_on_gpio0_held_through_a_brownout_leaves_the_board_in_the_rom(world):
    main = "print('firmware runs')\nimport time\nwhile True:\n    time.sleep_ms(1000)\n"
    bad = boot(world, main, "gpio0", wiring={"button": 0})
    good = boot(world, main, "gpio33")
    world.run_for(2000)
    for dev in (bad, good):
        dev.button.press()
        dev.power_cut()
    world.run_for(100)
    for dev in (bad, good):
        dev.power_on()
    world.run_for(5000)
    assert bad.state == "rom" and "strapping" in fault_kinds(bad)
    assert text(bad).count("firmware runs") == 1          # only before the brown-out
    assert text(good).count("firmware runs") == 2
    bad.button.release()
    world.run_for(5000)
    assert bad.state == "rom", "releasing the button does not help: it needs a power cycle"
    bad.power_cut()
    world.run_for(100)
    bad.power_on()
    world.run_for(5000)
    assert text(bad).count("firmware runs") == 2


def test_outputs_float_in_deep_sleep_without_hold(world):
    main = "from machine import Pin\nimport machine\nPin(25, Pin.OUT, value=0{hold})\n" \
           "machine.deepsleep(60000)\n"
    floating = boot(world, main.format(hold=""), "nohold")
    held = boot(world, main.format(hold=", hold=True"), "hold")
    world.run_for(10000)
    assert floating.state == "deep" and held.state == "deep"
    assert floating.pin_driven(25) is None
    assert floating.energy.state("haptic") == "floating"     # the worse case: it conducts
    assert held.pin_driven(25) == 0
    assert held.energy.state("haptic") == "off"


def test_a_held_pad_ignores_writes_until_released(world):
    dev = boot(world, """
from machine import Pin
import time
p = Pin(26, Pin.OUT, value=0, hold=True)
p.value(1)
time.sleep_ms(100)
p.init(hold=False)
time.sleep_ms(100)
""")
    world.run_for(2000)
    levels = [level for _, level in dev.led.edges]
    assert dev.pin_driven(26) == 1
    assert levels == [1]                    # the write took effect only at the release


def test_pin_irq_has_no_hard_or_priority(world):
    dev = boot(world, "from machine import Pin\n"
                      "Pin(33, Pin.IN).irq(handler=print, trigger=Pin.IRQ_FALLING, hard=True)\n")
    world.run_for(3000)
    assert "TypeError" in text(dev)


# --- resets, the REPL, the watchdog ------------------------------------------------------
def test_uncaught_exception_drops_to_the_repl(world):
    dev = boot(world, "print('start')\nraise RuntimeError('boom')\n")
    world.run_for(60000)
    assert "RuntimeError: boom" in text(dev)
    assert dev.at_repl and text(dev).count("start") == 1, "no reset: the board sits at >>>"
    dev.console_in(b"1 + 2\r")
    world.run_for(100)
    assert "3" in [line for _, line in dev.log]


def test_watchdog_resets_from_the_repl(world):
    dev = boot(world, "from machine import WDT\nw = WDT(timeout=5000)\nprint('start')\n"
                      "raise RuntimeError('boom')\n")
    world.run_for(3000)
    assert dev.at_repl
    world.run_for(6000)
    assert dev.reset_cause == WDT_RESET
    assert text(dev).count("start") == 2


def test_ctrl_d_at_the_repl_soft_resets(world):
    dev = boot(world, "print('start')\n")
    world.run_for(2000)
    assert dev.at_repl
    dev.console_in(b"\x04")
    world.run_for(2000)
    assert dev.reset_cause == SOFT_RESET and text(dev).count("start") == 2


def test_machine_reset_reads_back_as_hard_reset_and_en_as_power_on(world):
    dev = boot(world, "import machine, time\nprint('cause', machine.reset_cause())\n"
                      "time.sleep_ms(1000)\nmachine.reset()\n")
    world.run_for(2500)
    assert dev.reset_cause == HARD_RESET
    dev.press_en()
    world.run_for(1000)
    assert dev.reset_cause == PWRON_RESET
    assert "cause 1" in text(dev)


# --- RAM and boot time -------------------------------------------------------------------
def _big_module(n_functions):
    return "".join("def f%d(x):\n    return [x, %d, 'text %d', (x, x + %d)]\n" % (i, i, i, i)
                   for i in range(n_functions))


def test_import_past_the_heap_raises_memory_error(world):
    dev = boot(world, "import gc\nprint('free', gc.mem_free())\nimport big\nprint('imported')\n",
               extra={"/big.py": _big_module(3000)})
    world.run_for(10000)
    assert "MemoryError" in text(dev) and "imported" not in text(dev)
    assert "memory_error" in fault_kinds(dev)
    small = boot(world, "import big\nimport gc\nprint('imported', gc.mem_alloc())\n",
                 "small", extra={"/big.py": _big_module(50)})
    world.run_for(5000)
    assert "imported" in text(small)


def test_boot_time_grows_with_what_main_imports(world):
    main = "import time\nimport big\nprint('up at', time.ticks_ms())\n"
    small = boot(world, main, "small", extra={"/big.py": _big_module(10)})
    large = boot(world, main, "large", extra={"/big.py": _big_module(600)})
    world.run_for(10000)

    def up_ms(dev):
        return [t for t, line in dev.log if line.startswith("up at")][0]
    assert up_ms(large) - up_ms(small) > 50


def test_idle_returns_at_once(world):
    dev = boot(world, "import machine, time\nt = time.ticks_us()\nfor i in range(10):\n"
                      "    machine.idle()\nprint('idle us', time.ticks_diff(time.ticks_us(), t))\n")
    world.run_for(3000)
    us = int(text(dev).split("idle us ")[1].split()[0])
    assert us < 2000


def test_a_floating_output_draws_nothing_while_the_board_is_off(world):
    dev = boot(world, "from machine import Pin\nimport time\nPin(25, Pin.OUT, value=1)\n"
                      "time.sleep_ms(100000)\n")
    world.run_until(2000)
    assert dev.energy.state("haptic") == "on"
    dev.power_cut()                          # the pad floats, but there is no supply
    world.run_until(3000)
    assert dev.pin_driven(25) is None and dev.energy.state("haptic") == "off"
    dev.power_on()                           # powered again, the pad still undriven: worse case
    world.run_until(3100)
    assert dev.energy.state("haptic") == "floating"
