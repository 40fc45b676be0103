"""docs/HARDWARE.md rules for the emulated machine/esp32/micropython/cryptolib APIs, the flash
geometry and the board profiles: each test runs a small firmware that breaks a rule on an
emulated board and checks it fails there the way it fails on an ESP32 running MicroPython."""
import pytest

from host import emulate, scenario
from host.deploy import build_image, device_files
from host.emulator import World
from host.emulator import cryptolib as emu_cryptolib
from host.emulator.device import EmulatedDevice
from host.emulator.energy import load_profile
from host.emulator.flash import BLOCK_COUNT, BLOCK_SIZE, Flash

from .vm import REPO, needs_micropython, run_micropython


@pytest.fixture
def world():
    w = World(seed=3)
    yield w
    w.close()


def boot(world, main, with_lib=False, **options):
    files = dict(device_files(REPO)) if with_lib else {}
    files.pop("/boot.py", None)
    files["/main.py"] = main.encode()
    return world.add_device("d1", files=files, **options)




def crash_of(main, run_ms=3000):
    """The one-line error a firmware `main` dies with on the emulated board (None: it ran)."""
    w = World(seed=3)
    try:
        dev = boot(w, main)
        w.run_until(run_ms)
        return dev.crashes[0][1] if dev.crashes else None
    finally:
        w.close()


# --- cryptolib ---------------------------------------------------------------------------
K16, K24, K32 = "b'k' * 16", "b'k' * 24", "b'k' * 32"
CRYPTOLIB_CASES = [
    # (snippet, what the ESP32 build does)
    ("cryptolib.aes(%s, 1)" % K24, "ValueError: key"),
    ("cryptolib.aes(%s, 6, b'i' * 16)" % K16, "ValueError: mode"),        # no CTR on the ESP32
    ("cryptolib.aes(%s, 3)" % K24, "ValueError: mode"),                   # mode is checked first
    ("cryptolib.MODE_ECB", "AttributeError"),                            # no MODE_* constants
    ("cryptolib.aes(%s, 2)" % K16, "ValueError: IV"),                     # CBC needs an IV
    ("cryptolib.aes(%s, 2, b'i' * 8)" % K16, "ValueError: IV"),
    ("cryptolib.aes(%s, 2, IV=b'i' * 16)" % K16, "TypeError: function doesn't take keyword arguments"),
    ("cryptolib.aes(%s, 1).encrypt(b'x' * 15)" % K16, "ValueError: blksize % 16"),
    ("cryptolib.aes(%s, 1).encrypt(b'x' * 16, bytearray(8))" % K16, "ValueError: output too small"),
    ("cryptolib.aes(%s, 1).encrypt(b'x' * 16, bytes(16))" % K16,
     "TypeError: object with buffer protocol required"),
    ("(lambda c: (c.encrypt(b'x' * 16), c.decrypt(b'x' * 16)))(cryptolib.aes(%s, 1))" % K16,
     "ValueError: can't encrypt & decrypt"),
    ("(lambda o: cryptolib.aes(%s, 1).encrypt(b'x' * 16, o) is o)(bytearray(16))" % K16, "True"),
    ("cryptolib.aes(%s, 1).encrypt(b'\\x00' * 16).hex()" % K32,
     "dec1406885cc4117b0f7a45ea8708be0"),  # AES-256-ECB of zeros, key b'k' * 32
    ("cryptolib.aes(%s, 2, b'i' * 16).decrypt(bytes(32))[16:].hex()" % K16, None),
]
CRYPTOLIB_PROBE = """
import cryptolib
for snippet in SNIPPETS:
    try:
        print(repr(eval(snippet)))
    except Exception as e:
        print(type(e).__name__ + (": " + str(e) if str(e) and type(e) is not AttributeError else ""))
"""


def _outcome(line):
    return line.strip("'")


def _run_on_emulator(snippets):
    ns = {"cryptolib": emu_cryptolib}
    out = []
    for snippet in snippets:
        try:
            out.append(repr(eval(snippet, ns)))  # noqa: S307 - our own test snippets
        except Exception as e:  # noqa: BLE001
            out.append(type(e).__name__ + (": " + str(e) if str(e) and not isinstance(
                e, AttributeError) else ""))
    return [_outcome(x) for x in out]


@pytest.mark.parametrize("snippet,expected", [c for c in CRYPTOLIB_CASES if c[1]])
def test_cryptolib_behaves_as_the_esp32_build(snippet, expected):
    assert _run_on_emulator([snippet]) == [expected]


@pytest.mark.micropython
@needs_micropython
def test_cryptolib_matches_the_real_micropython_vm_case_by_case():
    """extmod/modcryptolib.c is the same file on the unix port and the ESP32 (both without
    MICROPY_PY_CRYPTOLIB_CTR and _CONSTS): the VM and the emulated module must agree."""
    snippets = [c[0] for c in CRYPTOLIB_CASES]
    code = "SNIPPETS = %r\n%s" % (snippets, CRYPTOLIB_PROBE)
    result = run_micropython(code, heapsize="256K")
    assert result.returncode == 0, result.stderr.decode()
    on_vm = [_outcome(x) for x in result.stdout.decode().splitlines()]
    assert on_vm == _run_on_emulator(snippets)


@pytest.mark.parametrize("main,error", [
    ("import cryptolib\ncryptolib.aes(b'k' * 24, 1)\n", "ValueError: key"),
    ("import cryptolib\ncryptolib.aes(b'k' * 16, cryptolib.MODE_ECB)\n", "AttributeError"),
    ("import cryptolib\ncryptolib.aes(b'k' * 16, 6, b'i' * 16)\n", "ValueError: mode"),
    ("import cryptolib\ncryptolib.aes(key=b'k' * 16, mode=1)\n",
     "TypeError: function doesn't take keyword arguments"),
    ("import cryptolib\nout = bytearray(16)\n"
     "assert cryptolib.aes(b'k' * 16, 1).encrypt(b'x' * 16, out) is None\n", "AssertionError"),
])
def test_a_firmware_breaking_cryptolib_rules_crashes_on_the_board(main, error):
    assert crash_of(main).startswith(error)


def test_the_protocol_builds_ctr_on_ecb_with_the_boards_cryptolib(world):
    from protocol.crypto import Keys

    dev = boot(world, """
from protocol.crypto import Keys
print(Keys(b'k' * 16).xor(1004, False, 7, 0, b'secret position, 21 bytes').hex())
""", with_lib=True)
    world.run_until(2000)
    host = Keys(b"k" * 16).xor(1004, False, 7, 0, b"secret position, 21 bytes").hex()
    assert dev.printed() == [host] and not dev.crashes


# --- machine.Pin -----------------------------------------------------------------------------
@pytest.mark.parametrize("main,error", [
    ("import machine\np = machine.Pin(33, machine.Pin.IN)\n"
     "p.irq(handler=lambda p: None, trigger=machine.Pin.IRQ_FALLING, hard=True)\n",
     "TypeError: extra keyword arguments given"),
    ("import machine\np = machine.Pin(33, machine.Pin.IN)\n"
     "p.irq(handler=lambda p: None, trigger=machine.Pin.IRQ_FALLING, priority=1)\n",
     "TypeError: extra keyword arguments given"),
    ("import machine\nmachine.Pin(4, machine.Pin.IN, machine.Pin.PULL_HOLD)\n", "AttributeError"),
    ("import machine\np = machine.Pin(5, machine.Pin.IN)\n"
     "p.irq(trigger=machine.Pin.WAKE_LOW, wake=machine.SLEEP)\n",
     "ValueError: invalid pin for wake"),
    ("import machine\np = machine.Pin(33, machine.Pin.IN)\n"
     "p.irq(trigger=machine.Pin.WAKE_LOW, wake=1)\n", "ValueError: bad wake value"),
    ("import machine\nmachine.Pin(33, machine.Pin.IN).irq(trigger=machine.Pin.WAKE_LOW, wake=machine.SLEEP)\n"
     "machine.Pin(32, machine.Pin.IN).irq(trigger=machine.Pin.WAKE_LOW, wake=machine.SLEEP)\n",
     "ValueError: no resources"),
    ("import esp32, machine\nesp32.wake_on_ext0(machine.Pin(5), 0)\n", "ValueError: invalid pin"),
    ("import esp32, machine\nesp32.wake_on_ext1([machine.Pin(33), machine.Pin(18)], 0)\n",
     "ValueError: invalid pin"),
    ("import machine\nmachine.Pin(34, machine.Pin.OUT)\n", "ValueError: pin can only be input"),
    ("import esp32\nesp32.mcu_temperature()\n", "AttributeError"),  # raw_temperature on the ESP32
])
def test_a_firmware_breaking_pin_rules_crashes_on_the_board(main, error):
    assert crash_of(main).startswith(error)


def test_pin_hold_reaches_the_board_bus(world, monkeypatch):
    seen = []
    real = EmulatedDevice.bus_pin_init

    def spy(self, pin, mode, pull, value, hold=None):
        seen.append((pin, hold))
        return real(self, pin, mode, pull, value, hold)

    monkeypatch.setattr(EmulatedDevice, "bus_pin_init", spy)
    dev = boot(world, """
import machine
g = machine.Pin(4, machine.Pin.OUT, value=1, hold=True)
g.init(hold=False)
machine.Pin(26, machine.Pin.OUT)
print('held')
""")
    world.run_until(2000)
    assert dev.printed() == ["held"]
    assert seen == [(4, True), (4, False), (26, None)]


def test_an_exception_in_a_pin_handler_is_printed_and_the_firmware_runs_on(world):
    dev = boot(world, """
import machine, time
def bad(pin):
    raise ValueError('handler bug')
machine.Pin(33, machine.Pin.IN, machine.Pin.PULL_UP).irq(handler=bad, trigger=machine.Pin.IRQ_FALLING)
time.sleep_ms(5000)
print('still running')
""")
    world.at(2000, dev.drive_pin, 33, 0)
    world.run_until(7000)
    assert "ValueError: handler bug" in dev.printed() and dev.printed()[-1] == "still running"
    assert not dev.crashes


# --- ADC ---------------------------------------------------------------------------------
ADC_MAIN = """
import machine
adc = machine.ADC(machine.Pin(34))
print(adc.read_uv() // 1000, adc.read(), adc.read_u16())
adc.width(machine.ADC.WIDTH_10BIT)
print(adc.read())
adc = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_0DB)
print(adc.read_uv() // 1000, adc.read())
"""


def test_adc_default_attenuation_is_11db_and_read_uv_is_calibrated(world):
    dev = boot(world, ADC_MAIN)
    dev.set_analog(34, lambda: 1_900_000)
    world.run_until(2000)
    first, ten_bit, zero_db = [line.split() for line in dev.printed()]
    assert int(first[0]) == pytest.approx(1900, abs=1)   # not saturated at 950 mV (0 dB)
    assert int(first[1]) == 1900 * 4095 // 2450
    assert int(first[2]) == (int(first[1]) << 4) | (int(first[1]) >> 8)
    assert int(ten_bit[0]) == 1900 * 1023 // 2450
    assert zero_db == ["950", "4095"]                   # 0 dB saturates at 950 mV


@pytest.mark.parametrize("main,error", [
    ("import machine\nmachine.ADC(machine.Pin(34), atten=4)\n", "ValueError: invalid attenuation"),
    ("import machine\nmachine.ADC(machine.Pin(5))\n", "ValueError: invalid pin"),
    ("import machine\nmachine.ADC(machine.Pin(34)).width(13)\n", "ValueError: invalid bit-width"),
    ("import machine\nmachine.ADC(machine.Pin(34), 3)\n", "TypeError"),  # atten is keyword-only
])
def test_a_firmware_breaking_adc_rules_crashes_on_the_board(main, error):
    assert crash_of(main).startswith(error)


# --- idle and the scheduler ---------------------------------------------------------------
def test_idle_returns_at_once_and_keeps_the_cpu_active(world):
    """A firmware that "saves power" by spinning on machine.idle() keeps the CPU at its
    active current: idle() is taskYIELD() on the ESP32 port, not a sleep."""
    dev = boot(world, """
import machine, time
t0 = time.ticks_us()
machine.idle()
print(time.ticks_diff(time.ticks_us(), t0))
end = time.ticks_add(time.ticks_ms(), 200)
n = 0
while time.ticks_diff(end, time.ticks_ms()) > 0:
    machine.idle()
    n += 1
print('done', n)
time.sleep_ms(10000)
""")
    world.run_until(2000)
    assert int(dev.printed()[0]) < 100
    done, n = dev.printed()[1].split()
    # thousands of passes in 200 ms: no FreeRTOS tick (10 ms) per call, so no light sleep
    assert done == "done" and int(n) > 1000
    assert dev.energy.counters["wakes"] == 0


def test_schedule_queue_holds_eight_and_the_ninth_raises_in_a_handler(world):
    dev = boot(world, """
import machine, micropython, time
ran = []
def job(i):
    ran.append(i)
def on_press(pin):
    for i in range(9):
        micropython.schedule(job, i)
machine.Pin(33, machine.Pin.IN, machine.Pin.PULL_UP).irq(handler=on_press, trigger=machine.Pin.IRQ_FALLING)
time.sleep_ms(3000)
print('ran', ran)
for i in range(20):
    micropython.schedule(job, 100 + i)   # main code: the queue drains at every loop jump
time.sleep_ms(10)
print('main', len(ran))
""")
    world.at(1500, dev.drive_pin, 33, 0)
    world.run_until(5000)
    log = dev.printed()
    assert "RuntimeError: schedule queue full" in log      # printed by the protected handler
    assert "ran [0, 1, 2, 3, 4, 5, 6, 7]" in log
    assert log[-1] == "main 28" and not dev.crashes


def test_schedule_takes_two_positional_arguments(world):
    assert crash_of("import micropython\nmicropython.schedule(print)\n").startswith("TypeError")


# --- WDT, Timer, UART arguments -------------------------------------------------------------------------
@pytest.mark.parametrize("main,error", [
    ("import machine\nmachine.WDT(timeout=0)\n", "ValueError: WDT timeout too short"),
    ("import machine\nmachine.WDT(1, 5000)\n", "ValueError"),
    ("import machine\nmachine.Timer(-1)\n", "ValueError: invalid Timer number"),
    ("import machine\nmachine.Timer(4)\n", "ValueError: invalid Timer number"),
    ("import machine\nmachine.Timer(0).init(period=10, callback=print, hard=True)\n",
     "ValueError: hard Timers are not implemented"),
    ("import machine\nmachine.Timer(0).init(10)\n", "TypeError"),   # keyword-only arguments
    ("import machine\nmachine.UART(1, 9600, 8, None, 1, 17, 16)\n", "TypeError"),  # tx= rx=
    ("import machine\ntry:\n    machine.UART(1, baudrate=9600, tx=18, rx=19, rxbuf=128)\n"
     "except OSError as e:\n    raise ValueError(e.args)\n", "ValueError: (1, 'ESP_FAIL')"),                     # uart_driver_install: rx > 128
    ("import machine\ntry:\n    machine.UART(1, baudrate=9600, tx=18, rx=19, txbuf=64)\n"
     "except OSError as e:\n    raise ValueError(e.args)\n", "ValueError: (1, 'ESP_FAIL')"),
    ("import machine\nmachine.UART(1, baudrate=9600, tx=18, rx=19, flow=4)\n",
     "ValueError: invalid flow control mask"),
    ("import machine\nmachine.UART(1, 9600, 9)\n", "ValueError: invalid data bits"),
])
def test_a_firmware_breaking_wdt_or_timer_rules_crashes_on_the_board(main, error):
    assert crash_of(main).startswith(error)


# --- flash geometry ---------------------------------------------------------------------------
RAM_BDEV = """
import os
class RamDevice:
    def __init__(self, data):
        self.data = data
    def readblocks(self, n, buf, off=0):
        start = n * 4096 + off
        buf[:] = self.data[start:start + len(buf)]
    def writeblocks(self, n, buf, off=None):
        start = n * 4096 + (off or 0)
        self.data[start:start + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // 4096
        if op == 5:
            return 4096
        if op == 6:
            self.data[arg * 4096:(arg + 1) * 4096] = b'\\xff' * 4096
        return 0
"""


@pytest.mark.micropython
@needs_micropython
def test_the_deployed_image_mounts_under_micropythons_vfslfs2_and_back(tmp_path):
    image_path = tmp_path / "vfs.img"
    image_path.write_bytes(build_image({"/main.py": b"print('hi')\n", "/lib/a/b.py": b"x = 1\n"}))
    code = RAM_BDEV + """
data = bytearray(open(%r, 'rb').read())
bdev = RamDevice(data)
vfs = os.VfsLfs2(bdev)        # readsize/progsize/lookahead 32, as _boot.py mounts "/"
os.mount(vfs, '/flash')
print(open('/flash/main.py').read().strip(), os.listdir('/flash/lib/a'), os.statvfs('/flash')[:3])
with open('/flash/state.bin', 'wb') as f:
    f.write(b'written on the VM')
os.umount('/flash')
open(%r, 'wb').write(data)
""" % (str(image_path), str(image_path))
    result = run_micropython(code, heapsize="16M")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split("\n")[0] == "print('hi') ['b.py'] (4096, 4096, 512)"
    flash = Flash(image_path.read_bytes())   # and the emulator mounts what the VM wrote
    flash.mount()
    assert flash.read_file("/state.bin") == b"written on the VM"


def test_the_emulated_filesystem_is_the_boards_vfs_partition(world):
    dev = boot(world, """
import os
print(os.statvfs('/')[:3])
n = 0
try:
    with open('/fill.bin', 'wb') as f:
        while True:
            f.write(bytes(4096))
            n += 1
except OSError as e:
    print('full', e.args[0], n * 4096 < 2 * 1024 * 1024)
""")
    world.run_until(5000)
    assert dev.printed()[0] == "(4096, 4096, 512)" and (BLOCK_SIZE, BLOCK_COUNT) == (4096, 512)
    assert dev.printed()[1] == "full 28 True"   # ENOSPC before 2 MiB: the partition, not the host


# --- board profiles -----------------------------------------------------------------------
PROFILE_DAY = """
[scenario]
name = "profile-hours"
duration_s = 10800
profile = "%s"

[[device]]
id = 41
location = [52.0907, 5.1214]
battery_mah = 1500
"""


@pytest.fixture(scope="module")
def on_both_profiles():
    out = {}
    for name in ("esp32-devkitc", "product"):
        sc = scenario.parse(PROFILE_DAY % name, "<test>")
        summary, _ = emulate.run(sc)
        out[name] = summary
    return out


def test_the_scenario_profile_selects_the_board(on_both_profiles):
    assert {s["profile"] for s in on_both_profiles.values()} == {"esp32-devkitc", "product"}
    devkitc, product = on_both_profiles["esp32-devkitc"], on_both_profiles["product"]
    # the same firmware and cadence: the same frames
    assert devkitc["frames_up"] == product["frames_up"] > 0


def test_the_difference_between_the_profiles_is_explained(on_both_profiles):
    devkitc, product = on_both_profiles["esp32-devkitc"], on_both_profiles["product"]
    hours = 3.0
    dk, pr = load_profile("esp32-devkitc"), load_profile("product")
    # the board draws: AMS1117 5 mA + CP2102N 0.2 mA + power LED 1.3 mA, for the whole run
    assert devkitc["board_mah"] == pytest.approx(6.5 * hours, abs=1e-4)  # summary: 4 places
    assert product["board_mah"] == pytest.approx((0.000025 + 0.1) * hours, abs=1e-4)
    # what is left is the CPU, GNSS, LED and the link radio: the same except the radio
    frames = devkitc["frames_up"] + devkitc["frames_down"]

    def radio_mah(p, n):
        r = p["radio"]
        return n * r["tx_ma"] * r["frame_us"] / 3.6e9
    rest_devkitc = devkitc["energy_mah"] - devkitc["board_mah"] - radio_mah(dk, frames)
    # The modem pays one connection for frames within its connection window (an uplink and
    # its ACK): between one per uplink and one per frame.
    product_rest = product["energy_mah"] - product["board_mah"]
    low = product_rest - radio_mah(pr, frames)
    high = product_rest - radio_mah(pr, product["frames_up"] // 2)
    assert low * 0.98 <= rest_devkitc <= high * 1.02


def test_the_devkitc_cannot_reach_the_products_battery_life(on_both_profiles):
    devkitc, product = on_both_profiles["esp32-devkitc"], on_both_profiles["product"]
    assert devkitc["projected_battery_days"] < product["projected_battery_days"]
    # even a firmware that cost nothing: 1500 mAh over the DevKitC's 6.5 mA of board draws
    assert 1500 / 6.5 / 24 < product["projected_battery_days"]


def test_an_unknown_profile_is_a_one_line_error():
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.parse(PROFILE_DAY % "esp32-wrover", "day.toml")
    message = str(e.value)
    assert "\n" not in message and message.startswith("day.toml: scenario.profile")
    assert "esp32-devkitc, product" in message
