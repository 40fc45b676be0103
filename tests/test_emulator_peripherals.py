"""Virtual peripherals (GNSS, link, battery, outputs), the energy model and the deploy layout."""
import io
import math
from pathlib import Path

import pynmea2
import pytest
from pynmeagps import NMEAReader
from pynmeagps.nmeahelpers import planar

from host.deploy import DeployError, build_image, device_files
from host.emulator import Route, World, load_profile
from host.emulator.flash import Flash

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def world():
    w = World(seed=3)
    yield w
    w.close()


def boot(world, main, device_id="d1", **options):
    return world.add_device(device_id, files={"/main.py": main.encode()}, **options)




# --- GNSS -------------------------------------------------------------------------------
GNSS_MAIN = """
import machine, time
en = machine.Pin(4, machine.Pin.OUT)
u = machine.UART(2, baudrate=9600, tx=17, rx=16, rxbuf=1024)
en.on()
got = b""
for i in range(ON_S * 2):
    time.sleep_ms(500)
    got += u.read() or b""
en.off()
time.sleep_ms(OFF_S * 1000)
en.on()
for i in range(10):
    time.sleep_ms(500)
    got += u.read() or b""
with open("/nmea.txt", "wb") as f:
    f.write(got)
print("done", len(got))
"""

ROUTE = [(52.0907, 5.1214), (52.0950, 5.1300, 12.0), (52.1000, 5.1300)]


def run_gnss(world, on_s=60, off_s=600, **gnss):
    main = GNSS_MAIN.replace("ON_S", str(on_s)).replace("OFF_S", str(off_s))
    dev = boot(world, main, gnss=dict(route=Route(ROUTE, speed_mps=1.4), **gnss))
    world.run_until((on_s + off_s + 10) * 1000 + 2000)
    assert dev.printed()[-1].startswith("done")
    return dev, dev.flash.read_file("/nmea.txt")


def test_gnss_nmea_is_valid_for_pynmeagps_and_follows_the_route(world):
    dev, data = run_gnss(world)
    messages = [parsed for _, parsed in NMEAReader(io.BytesIO(data), validate=1)]
    kinds = [m.msgID for m in messages]
    assert kinds.count("RMC") == kinds.count("GGA") == kinds.count("GSA") >= 65
    cold = dev.gnss.sessions[0]
    assert cold[1] == "cold" and 22_000 <= cold[2] <= 35_000  # 26 s x 0.85..1.3, 1 s ticks
    fixed = [m for m in messages if m.msgID == "RMC" and m.status == "A"]
    unfixed = [m for m in messages if m.msgID == "RMC" and m.status == "V"]
    assert fixed and unfixed and unfixed[0].lat == ""
    for m in fixed:
        t_ms = (m.time.hour * 3600 + m.time.minute * 60 + m.time.second) * 1000
        lat, lon, *_ = Route(ROUTE, speed_mps=1.4).at(t_ms)
        assert planar(lat, lon, m.lat, m.lon) < 15  # metres: HDOP x UERE noise only
    for m in messages:
        if m.msgID == "GGA" and m.quality == 1:
            assert 4 <= m.numSV <= 12 and 0.5 < m.HDOP < 2
        if m.msgID == "GSA":
            assert m.navMode in (1, 3)
    for line in data.decode().splitlines():  # an independent parser agrees
        pynmea2.parse(line, check=True)


def test_gnss_hot_start_after_a_short_off_period_and_cold_start_after_a_power_cut(world):
    dev, _ = run_gnss(world, on_s=40, off_s=600)
    assert [s[1] for s in dev.gnss.sessions] == ["cold", "hot"]
    assert dev.gnss.sessions[1][2] <= 2000
    assert dev.energy.counters["fixes"] == 2
    dev.power_cut()  # the receiver's backup supply goes too
    world.run_for(1000)
    dev.power_on()
    world.run_for(5000)
    assert dev.gnss.state == "acquiring" and dev.gnss.sessions[-1][1] == "cold"


def test_gnss_gives_no_fix_indoors(world):
    dev, data = run_gnss(world, on_s=60, indoor=[(0, 50_000)], cold_ttff_s=5)
    fixes = [m for _, m in NMEAReader(io.BytesIO(data), validate=1) if m.msgID == "RMC" and m.status == "A"]
    first_fix_s = dev.gnss.sessions[0][2] / 1000
    assert first_fix_s >= 50 + 4  # acquisition starts only once outside
    assert all(m.time.hour * 3600 + m.time.minute * 60 + m.time.second >= 50 for m in fixes)


def test_route_from_gpx_and_validation():
    gpx = ('<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
           '<trkpt lat="52.0" lon="5.0"/><trkpt lat="52.001" lon="5.0"/></trkseg></trk></gpx>')
    route = Route.from_gpx(gpx, speed_mps=10)
    assert route.end_ms == pytest.approx(111.2 / 10 * 1000, rel=0.01)
    lat, lon, _, speed, course = route.at(route.end_ms / 2)
    assert lat == pytest.approx(52.0005) and speed == 10 and course == pytest.approx(0)
    with pytest.raises(ValueError, match="waypoint 0"):
        Route([(95.0, 5.0)])
    with pytest.raises(ValueError, match="no trkpt"):
        Route.from_gpx("<gpx></gpx>")


# --- link -------------------------------------------------------------------------------
SENDER_MAIN = """
import machine, time
u = machine.UART(1, baudrate=115200, tx=18, rx=19)
for i in range(2000):
    u.write(bytes([1, (i >> 7) + 1, (i & 127) + 1, 0]))  # no 0x00 inside the packet
    time.sleep_ms(5)
print("sent")
"""


def test_link_fault_statistics_follow_the_configured_rates(world):
    dev = boot(world, SENDER_MAIN, link={"loss": 0.3, "duplicate": 0.1, "reorder": 0.05,
                                         "corrupt": 0.05, "latency_ms": 100, "jitter_ms": 50,
                                         "outages": [(6_000, 7_000)]})
    world.run_until(15_000)
    stats = dev.link.stats
    assert stats["up_sent"] == 2000
    outage_frames = 1000 // 5
    assert stats["up_lost"] == pytest.approx(0.3 * (2000 - outage_frames) + outage_frames, rel=0.1)
    kept = 2000 - stats["up_lost"]
    assert stats["up_duplicated"] == pytest.approx(0.1 * kept, rel=0.25)
    assert stats["up_delivered"] == kept + stats["up_duplicated"] == len(dev.link.uplinks)
    numbers = [((d[1] - 1) << 7) | (d[2] - 1) for _, d in dev.link.uplinks]
    corrupted = [d for _, d in dev.link.uplinks if d[0] != 1 or d[-1] != 0 or d[2] > 128]
    assert stats["up_corrupted"] >= len(corrupted) > 0
    out_of_order = sum(1 for a, b in zip(numbers, numbers[1:], strict=False) if b < a)
    assert out_of_order > 10
    sent_in_outage = range(int((6_000 - 600) / 5) + 1, int((7_000 - 600) / 5))
    assert not set(numbers) & set(sent_in_outage)
    latencies = sorted(t for t, _ in dev.link.uplinks)
    assert latencies[0] >= 600 + 100  # nothing arrives faster than the base latency


_LISTENER = """
import machine, time, esp32
u = machine.UART(1, baudrate=115200, tx=18, rx=19)
ready = machine.Pin(27, machine.Pin.OUT, value=LIE)
wake = machine.Pin(32, machine.Pin.IN, machine.Pin.PULL_UP)
esp32.wake_on_ext1((wake,), esp32.WAKEUP_ALL_LOW)
while True:
    machine.lightsleep(20000)
    wake.init(machine.Pin.IN, machine.Pin.PULL_UP)
    ready.value(LIE)
    if wake.value() == 0:
        ready.on()
        time.sleep_ms(50)
        ready.off()
    data = u.read()
    if data:
        print("got", data, machine.wake_reason())
"""


def test_the_peer_wakes_the_device_and_sends_once_it_is_ready(world):
    dev = boot(world, _LISTENER.replace("LIE", "0"), link={"latency_ms": 40, "jitter_ms": 0})
    world.at(5_000, dev.link.send_downlink, b"\x05hi\x00")
    world.run_until(30_000)
    assert dev.printed() == ["got b'\\x05hi\\x00' 3"]          # EXT1_WAKE, not the timer
    (arrival, delivered, waited), = dev.link.downlink_waits
    assert arrival == pytest.approx(5_040)
    assert 0 < waited < 10                                      # a light-sleep wake, not 15 s
    assert dev.link.stats["wakes"] == 1 and dev.pin_level(32) == 1  # released when empty


def test_a_peer_told_ready_by_a_sleeping_device_loses_the_bytes(world):
    # A firmware that leaves LINK_READY high while it light-sleeps: the peer sends, the UART
    # hears nothing (docs/LINK.md), and the link counts the bytes as unheard.
    dev = boot(world, _LISTENER.replace("LIE", "1"), link={"latency_ms": 40, "jitter_ms": 0})
    world.at(5_000, dev.link.send_downlink, b"\x05hi\x00")
    world.run_until(30_000)
    assert dev.printed() == []
    assert dev.link.stats["down_unheard_bytes"] == 4


def test_link_refuses_bad_probabilities(world):
    with pytest.raises(ValueError, match="link loss 1.5"):
        boot(world, "pass", link={"loss": 1.5})


def test_stdout_goes_to_the_repl_uart_not_the_link(world):
    dev = boot(world, """
import machine
print("hello")
machine.UART(1, tx=18, rx=19).write(b"\\x03ab\\x00")
""")
    world.run_until(2000)
    assert bytes(dev.console).startswith(b"hello\n")
    assert [d for _, d in dev.link.uplinks] == [b"\x03ab\x00"]


# --- battery, outputs -------------------------------------------------------------------
def test_battery_voltage_on_the_adc_divider_and_charger_sense(world):
    dev = boot(world, """
import machine, time
adc = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_11DB)
sense = machine.Pin(35, machine.Pin.IN)
raw = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_0DB)  # saturates at 0.95 V
while True:
    print(adc.read_uv() * 2 // 1000, sense.value(), raw.read_uv())
    time.sleep_ms(10000)
""", battery={"soc_pct": 50})
    dev.battery.plug(at_ms=15_000)
    world.run_until(21_000)
    first, _, third = [line.split() for line in dev.printed()]
    assert int(first[0]) == pytest.approx(3810 - 35.5 * 0.15, abs=2)  # OCV at 50 % minus I*R
    assert first[1] == "0" and third[1] == "1"
    assert first[2] == "950000"


def test_empty_battery_browns_out_until_the_charger_is_plugged(world):
    dev = boot(world, "import time\nwhile True:\n    time.sleep_ms(1000)\n",
               battery={"capacity_mah": 1, "soc_pct": 10})
    world.run_until(20 * 60_000)
    assert dev.state == "off" and dev.battery.browned_out
    dev.battery.plug()
    world.run_until(21 * 60_000)
    assert dev.state != "off" and dev.boot_count == 2


def test_led_and_haptic_patterns_are_recorded(world):
    dev = boot(world, """
import machine, time
motor = machine.Pin(25, machine.Pin.OUT, value=0)
for i in range(3):
    motor.on(); time.sleep_ms(200); motor.off(); time.sleep_ms(100)
""")
    world.run_until(3000)
    assert dev.haptic.pulses() == [(600.0, 200.0), (900.0, 200.0), (1200.0, 200.0)]
    assert dev.haptic.on_ms() == pytest.approx(600)
    assert dev.led.edges == []


# --- energy -----------------------------------------------------------------------------
ENERGY_MAIN = """
import machine, time
led = machine.Pin(26, machine.Pin.OUT, value=1, hold=False)
machine.UART(1, tx=18, rx=19).write(b"0123456789abcdefghi\\x00")
time.sleep_ms(400)
led.init(value=0, hold=True)   # else the LED pad floats in deep sleep (HARDWARE.md)
machine.deepsleep(9000)
"""


def test_energy_integration_matches_a_hand_calculation(world):
    dev = boot(world, ENERGY_MAIN)
    world.run_until(100_000)  # ten 10 s cycles: 0.6 s boot, 0.4 s awake, 9 s deep sleep
    p = load_profile()
    cpu, radio = p["cpu"], p["radio"]
    cycle_mas = 0.6 * cpu["boot_ma"] + 0.4 * cpu["active_160mhz_ma"] + 9 * cpu["deep_sleep_ma"]
    led_mas = 0.4 * p["outputs"]["led_ma"]
    tx_mas = radio["tx_ma"] * (radio["frame_us"] + 20 * radio["per_byte_us"]) / 1e6
    gnss_mas = 100 * p["gnss"]["backup_ma"]
    # the DevKitC's LDO, USB bridge and power LED draw for the whole 100 s the board has power
    board_mas = 100 * sum(v for k, v in p["board"].items() if k.endswith("_ma"))
    expected_mah = (10 * (cycle_mas + led_mas + tx_mas) + gnss_mas + board_mas) / 3600
    report = dev.energy.report()
    assert report["energy_mah"] == pytest.approx(expected_mah, rel=1e-9)
    assert report["by_component_mah"]["led"] == pytest.approx(10 * led_mas / 3600, rel=1e-9)
    assert report["board_mah"] == pytest.approx(board_mas / 3600, rel=1e-9)
    assert report["avg_current_ma"] == pytest.approx(expected_mah * 36, rel=1e-9)
    floor = (100 * (cpu["deep_sleep_ma"] + p["gnss"]["backup_ma"]) + 10 * tx_mas + board_mas) / 3600
    assert report["floor_mah"] == pytest.approx(floor, rel=1e-9)
    assert report["floor_ratio"] == pytest.approx(expected_mah / floor, rel=1e-9)
    days = p["battery"]["capacity_mah"] / report["avg_current_ma"] / 24
    assert report["projected_battery_days"] == pytest.approx(days)
    assert dev.battery.soc_pct == pytest.approx(100 - 100 * expected_mah / 2000, rel=1e-9)


@pytest.mark.parametrize("name", ["esp32-devkitc", "product"])
def test_profile_cites_a_source_for_every_figure(name):
    text = (REPO / "host/emulator/profiles" / (name + ".toml")).read_text().splitlines()
    profile = load_profile(name)
    for section in ("board", "cpu", "gnss", "radio", "outputs"):
        for key in profile[section]:
            line_no = next(i for i, line in enumerate(text) if line.startswith(key + " "))
            while text[line_no - 1] and not text[line_no - 1].startswith(("#", "[")):
                line_no -= 1  # figures grouped under one citation
            assert text[line_no - 1].startswith("#"), key


# --- deploy and flash -------------------------------------------------------------------
def test_device_files_follow_the_contract_layout():
    files = device_files(REPO)
    assert all(p.startswith(("/lib/firmware/", "/lib/protocol/", "/boot.py", "/main.py")) for p in files)
    assert "/lib/protocol/codec.py" in files
    assert not [p for p in files if "/host_" in p]
    assert files["/lib/protocol/codec.py"] == (REPO / "protocol/codec.py").read_bytes()
    with pytest.raises(DeployError, match="no firmware/"):
        device_files(REPO / "docs")


def test_image_mounts_and_files_read_back():
    files = {"/main.py": b"print(1)\n", "/lib/protocol/x.py": b"y = 2\n"}
    flash = Flash(build_image(files, block_count=32))
    flash.mount()
    assert flash.read_file("/lib/protocol/x.py") == b"y = 2\n"
    assert flash.is_dir("/lib/protocol")
    with pytest.raises(DeployError, match="do not fit"):
        build_image({"/big": bytes(40_000)}, block_count=4)


def test_firmware_imports_the_deployed_protocol_and_its_frames_decode_on_the_host(world):
    from protocol import codec

    files = device_files(REPO)
    files["/main.py"] = b"""
import machine
from protocol import codec
s = codec.Sender(7, 1, b"k" * 16)
u = machine.UART(1, tx=18, rx=19)
u.write(s.seal("EVENT", {"kind": 3, "time_ms": 5, "value": 9}))
u.flush()
"""
    dev = world.add_device("d7", files=files)
    world.run_until(2000)
    assert not dev.crashes, dev.printed()
    keyring = codec.Keyring()
    keyring.add(7, 1, b"k" * 16)
    (frame,) = codec.Receiver(keyring).feed(dev.link.uplinks[0][1])
    assert frame.name == "EVENT" and frame.fields["value"] == 9


def test_power_cut_in_the_middle_of_a_flash_write_keeps_the_old_or_new_file(world):
    dev = boot(world, """
import machine, time
try:
    with open("/state.bin", "rb") as f:
        print("read", f.read())
except OSError:
    print("none")
for i in range(20):
    with open("/state.tmp", "wb") as f:
        f.write(bytes([i]) * 3000)
    import os
    os.rename("/state.tmp", "/state.bin")
    time.sleep_ms(10)
""")
    world.run_until(700)
    dev.cut_power_after_flash_writes(7)
    world.run_until(2000)
    assert dev.state == "off"
    dev.power_on()
    world.run_until(5000)          # the 12 kB line takes ~1 s at the REPL's 115200 baud
    last = dev.printed()[1]
    assert last.startswith("read b'") and len(set(eval(last[5:]))) == 1  # one whole version


def test_planar_helper_sanity():
    assert planar(52.0, 5.0, 52.0, 5.0) == 0
    assert math.isclose(planar(52.0, 5.0, 52.001, 5.0), 111.2, rel_tol=0.01)


@pytest.mark.skipif(not (REPO / "firmware/main.py").exists(), reason="no firmware/main.py yet")
def test_the_deployed_firmware_boots_and_reports_without_crashing(world):
    dev = world.add_device("fw", key=b"k" * 16, files=device_files(REPO))
    world.run_until(3600_000)
    assert not dev.crashes, dev.crashes
    assert dev.boot_count >= 1 and dev.link.uplinks  # it said something to the centre
