"""The emulated `bluetooth` module keeps the ESP32 port's rules (docs/HARDWARE.md
"## bluetooth"): each test is a firmware that breaks one and what the board does then."""
import pytest

pytest.importorskip("bumble")

from host.emulator import World  # noqa: E402
from host.emulator.radio import radio_of  # noqa: E402


@pytest.fixture
def world():
    w = World(seed=5)
    yield w
    w.close()




def run(world, body, ms=2000):
    main = "import bluetooth, time\nble = bluetooth.BLE()\n" + body
    dev = world.add_device("d", files={"/main.py": main.encode()})
    world.run_until(ms)
    return dev, dev.printed()


def attempt(expr):
    return ("try:\n    r = %s\n    print('ok', r)\nexcept Exception as e:\n"
            "    print(type(e).__name__, e.args[0] if e.args else '')\n" % expr)


def test_calls_before_active_raise_enodev(world):
    _, log = run(world, attempt("ble.gap_advertise(100000, b'')") + attempt("ble.config('mac')"))
    assert log == ["OSError 19", "OSError 19"]


def test_rxbuf_is_unknown_on_the_esp32_and_mtu_has_limits(world):
    _, log = run(world, "ble.active(True)\n" + attempt("ble.config(rxbuf=512)")
                 + attempt("ble.config(mtu=600)") + attempt("ble.config(mtu=247)")
                 + attempt("ble.config('mtu')") + attempt("ble.config('gap_name')"))
    assert log == ["ValueError unknown config param", "OSError 22", "ok None", "ok 247",
                   "ok b'MPY ESP32'"]


def test_advertising_payload_limits(world):
    _, log = run(world, "ble.active(True)\n" + attempt("ble.gap_advertise(100000, bytes(32))")
                 + attempt("ble.gap_advertise(10000, b'')")
                 + attempt("ble.gap_advertise(100000, b'\\x02\\x01\\x06')"))
    assert log == ["OSError 22", "OSError 22", "ok None"]


def test_notify_without_a_connection_raises_enotconn(world):
    _, log = run(world, "ble.active(True)\n"
                 "((h,),) = ble.gatts_register_services(((bluetooth.UUID(0x181A), "
                 "((bluetooth.UUID(0x2A6E), bluetooth.FLAG_NOTIFY),)),))\n"
                 + attempt("ble.gatts_notify(0, h, b'x')") + attempt("ble.gap_disconnect(0)"))
    assert log == ["OSError 107", "ok False"]


RX_FIRMWARE = """
ble.active(True)
((rx,),) = ble.gatts_register_services(((bluetooth.UUID(0x181A),
    ((bluetooth.UUID(0x2A6E), bluetooth.FLAG_WRITE),)),))
%s
got = []
def irq(event, data):
    if event == 3:
        got.append(ble.gatts_read(rx))
ble.irq(irq)
ble.gap_advertise(100000, b'\\x02\\x01\\x06')
while True:
    time.sleep_ms(50)
    if got:
        print(repr(got.pop(0)))
"""


def write_from_central(world, dev, *values):
    from bumble.core import UUID
    from bumble.device import Peer
    radio = radio_of(world)
    central = radio.add_central()

    async def go():
        conn = await central.connect(dev.ble.identity_address)
        peer = Peer(conn)
        await peer.request_mtu(247)
        await peer.discover_services()
        svc = peer.get_services_by_uuid(UUID.from_16_bits(0x181A))[0]
        await svc.discover_characteristics()
        for value in values:               # back to back: no virtual time passes between
            await svc.characteristics[0].write_value(value, with_response=True)
    radio.run(go())
    world.run_for(500)


def test_a_write_longer_than_the_20_byte_buffer_is_cut_silently(world):
    dev, _ = run(world, RX_FIRMWARE % "", ms=1000)
    write_from_central(world, dev, bytes(range(40)))
    assert dev.printed() == [repr(bytes(range(20)))]
    assert dev.ble.stats["truncated_bytes"] == 20


def test_gatts_set_buffer_keeps_the_whole_write(world):
    dev, _ = run(world, RX_FIRMWARE % "ble.gatts_set_buffer(rx, 100, True)", ms=1000)
    write_from_central(world, dev, bytes(range(40)))
    assert dev.printed() == [repr(bytes(range(40)))]
    assert dev.ble.stats["truncated_bytes"] == 0


@pytest.mark.parametrize("buffer_setup", ["", "ble.gatts_set_buffer(rx, 20, True)"])
def test_each_write_lands_just_before_its_handler_runs(world, buffer_setup):
    # characteristic_access_cb calls the handler before NimBLE takes the next write (sync
    # events): a 20-byte buffer is enough for writes of 20 bytes however fast they come.
    dev, _ = run(world, RX_FIRMWARE % buffer_setup, ms=1000)
    write_from_central(world, dev, b"A" * 20, b"B" * 20, b"C" * 20)
    assert dev.printed() == [repr(b"A" * 20), repr(b"B" * 20), repr(b"C" * 20)]
    assert dev.ble.stats["truncated_bytes"] == 0


def test_a_handler_that_writes_the_flash_is_a_fault(world):
    # IRQ handlers run on NimBLE's task (sync events) with its 6 KB stack: littlefs under a
    # few Python calls may overflow it. The worse case is modelled: a fault.
    body = RX_FIRMWARE % ""
    body = body.replace("        got.append(ble.gatts_read(rx))",
                        "        got.append(ble.gatts_read(rx))\n"
                        "        with open('/seen', 'w') as f:\n            f.write('1')")
    dev, _ = run(world, body, ms=1000)
    assert not dev.faults
    write_from_central(world, dev, b"x")
    assert [f[1] for f in dev.faults] == ["ble_irq_flash"]


def test_light_sleep_with_the_radio_on_drops_the_connection(world):
    body = RX_FIRMWARE % ""
    body = body.replace("while True:", "time.sleep_ms(1500)\nimport machine\n"
                        "machine.lightsleep(8000)\nwhile True:")
    dev, _ = run(world, body, ms=1000)
    write_from_central(world, dev, b"hi")
    assert dev.ble.connections
    world.run_for(10_000)                 # past the 5 s supervision timeout while asleep
    assert not dev.ble.connections
    assert dev.ble.stats["disconnects"] == 1


def test_a_reset_takes_the_stack_down(world):
    dev, _ = run(world, RX_FIRMWARE % "", ms=1000)
    write_from_central(world, dev, b"hi")
    assert dev.ble.connections
    dev.power_cut()
    world.run_for(10)
    assert not dev.ble.active and not dev.ble.connections


def test_the_radio_current_follows_its_state(world):
    dev, _ = run(world, "ble.active(True)\nble.gap_advertise(250000, b'\\x02\\x01\\x06')\n"
                 "time.sleep_ms(1000)\nble.active(False)\ntime.sleep_ms(100000)\n", ms=1500)
    ble = dev.profile["ble"]
    assert dev.energy.state("ble") == "advertising"
    assert dev.energy._ma["ble"] == pytest.approx(ble["adv_event_uc"] / 250)
    world.run_for(5000)
    assert dev.energy.state("ble") == "off"
    by = dev.energy.report()["by_component_mah"]["ble"]
    # ~1 s of advertising at 0.6 mA (plus the init), nothing after the radio went off
    assert by == pytest.approx(ble["adv_event_uc"] / 250 * 1.0 / 3600, rel=0.2)


def test_the_address_of_a_private_stack_cannot_be_read_back(world):
    # mp_bluetooth_get_current_address: an RPA has no readback in NimBLE (EINVAL).
    _, log = run(world, "ble.active(True)\n" + attempt("ble.config('mac')[0]")
                 + "ble.config(addr_mode=2)\n" + attempt("ble.config('mac')"))
    assert log == ["ok 0", "OSError 22"]


IRK_HANDLER = '''
seen = []
def irq(event, data):
    if event == 29:
        seen.append((29, data[0], data[1], bytes(data[2])))
        return None
    if event == 30:
        seen.append((30, data[0], bytes(data[1]), len(data[2])))
        return %s
ble.irq(irq)
ble.active(True)
print(seen)
'''


@pytest.mark.parametrize("stores, source", [("True", "generated"), ("False", "nimble-default")])
def test_active_asks_the_handler_for_our_irk_and_falls_back_to_nimbles(world, stores, source):
    from host.emulator.ble_address import NIMBLE_DEFAULT_IRK

    dev, log = run(world, IRK_HANDLER % stores)
    # load_irk: get_secret(type 10, index 0, key b"irk"); none stored, so set_secret offers a
    # fresh 16-byte IRK; a handler that does not store it leaves NimBLE's built-in one.
    assert log == ["[(29, 10, 0, b'irk'), (30, 10, b'irk', 16)]"]
    assert dev.ble.irk_source == source
    assert (dev.ble.irk == NIMBLE_DEFAULT_IRK) == (source == "nimble-default")


def test_a_handler_registered_after_active_is_never_asked(world):
    from host.emulator.ble_address import NIMBLE_DEFAULT_IRK

    dev, log = run(world, "asked = []\nble.active(True)\nble.irq(lambda e, d: asked.append(e))\n"
                          "print(asked)\n")
    assert log == ["[]"]
    assert dev.ble.irk == NIMBLE_DEFAULT_IRK


def test_an_exception_in_the_handler_is_printed_and_switches_it_off(world):
    dev, log = run(world, "def irq(e, d):\n    raise ValueError('boom')\n"
                          "ble.irq(irq)\nble.active(True)\nprint('active', ble.active())\n")
    # invoke_irq_handler_run_protected: printed, handler gone, active(True) carries on.
    assert log[0] == "Unhandled exception in IRQ callback handler"
    assert "ValueError: boom" in log and log[-1] == "active True"
    assert dev.ble.irq is None
