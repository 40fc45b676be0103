"""BLE end to end on bumble: the unchanged firmware driver (firmware/ble.py) on the emulated
`bluetooth` module, a bleak client on the bumble backend, all in virtual time."""
import pytest

pytest.importorskip("bumble")
pytest.importorskip("bleak")

from host.deploy import device_files  # noqa: E402
from host.emulator import World  # noqa: E402
from host.emulator.radio import radio_of  # noqa: E402
from host.transport import TransportClosed, open_transport  # noqa: E402
from host.transport.ble import BumbleBackends  # noqa: E402
from protocol import codec  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
KEY = b"k" * 16
DEVICE = 7

# A device that sends EVENT value 0 with time_ms = n every second, and answers every frame
# it gets with EVENT value 1 carrying that frame's counter.
ECHO_MAIN = '''
import bluetooth, time
from firmware.ble import BleLink
from protocol import codec
KEY = b"k" * 16
ring = codec.Keyring(); ring.add(7, 0, KEY)
receiver = codec.Receiver(ring, downlink=True)
link = BleLink(bluetooth.BLE(), bluetooth.UUID, time.ticks_ms, log=print,
               max_queued=%(max_queued)d, private=%(private)s)
sender = codec.Sender(7, 0, KEY)
n = 0
t = time.ticks_ms()
while True:
    for data in link.poll():
        for f in receiver.feed(data):
            if hasattr(f, "fields"):
                link.write(sender.seal("EVENT", {"kind": 3, "time_ms": f.counter, "value": 1}))
    if %(tick)d and time.ticks_diff(time.ticks_ms(), t) >= 1000:
        t = time.ticks_add(t, 1000)
        n += 1
        link.write(sender.seal("EVENT", {"kind": 3, "time_ms": n, "value": 0}))
        print("tick", n)
    time.sleep_ms(10)
'''


def make_device(world, tick=True, max_queued=64, main=None, private=True):
    files = device_files(REPO)
    files["/main.py"] = (main or ECHO_MAIN % {"tick": int(tick), "max_queued": max_queued,
                                  "private": private}).encode()
    return world.add_device(DEVICE, files=files)


@pytest.fixture
def world():
    w = World(seed=3)
    yield w
    w.close()


def open_ble(world, dev, central=None, **kw):
    radio = radio_of(world)
    central = central or radio.add_central()
    return open_transport("ble://" + dev.ble.identity_address, timeout_ms=2000, runner=radio,
                          backend=BumbleBackends, bumble_device=central,
                          irks=[(dev.ble.irk, dev.ble.identity_address)], **kw)


def uplink_receiver():
    ring = codec.Keyring()
    ring.add(DEVICE, 0, KEY)
    return codec.Receiver(ring, check_replay=False)


def read_frames(t, rx, ms):
    out = []
    end = t._now_s() + ms / 1000
    while t._now_s() < end:
        frame = t.recv(timeout_ms=max(1, int((end - t._now_s()) * 1000)))
        if frame is None:
            break
        out.extend(f for f in rx.feed(frame) if hasattr(f, "fields"))
    return out


@pytest.mark.parametrize("private", [False, True])
def test_round_trip_over_bleak_on_bumble(world, private):
    dev = make_device(world, tick=False, private=private)
    world.run_until(2000)
    t = open_ble(world, dev)
    assert t.mtu == 247
    sender = codec.Sender(DEVICE, 0, KEY, downlink=True)
    rx = uplink_receiver()
    wire = sender.seal("TIME_SYNC", {"utc_ms": 1_767_225_600_000})
    t.send(wire)
    frames = read_frames(t, rx, 500)
    assert [(f.name, f.fields["value"], f.fields["time_ms"]) for f in frames] == [
        ("EVENT", 1, sender.counter - 1)]
    t.close()


def test_advertisement_carries_nothing_identifying(world):
    dev = make_device(world, tick=False)
    world.run_until(2000)
    (t_ms, adv, address), = dev.ble.adv_log
    assert adv == b"\x02\x01\x06"                         # flags only: no name, no UUID
    assert address != dev.ble.public_address              # a resolvable private address
    assert address[0] >> 6 == 0b01
    t = open_ble(world, dev)
    # The GAP name that any central can read is empty, not the default "MPY ESP32".
    gap = t.runner.run(t.client.read_gatt_char("00002a00-0000-1000-8000-00805f9b34fb"))
    assert bytes(gap) == b""
    t.close()


def test_large_frame_is_fragmented_to_the_mtu(world):
    dev = make_device(world, tick=False)
    world.run_until(2000)
    t = open_ble(world, dev, mtu=23)                     # the central keeps the default MTU
    assert t.mtu == 23
    sender = codec.Sender(DEVICE, 0, KEY, downlink=True)
    rx = uplink_receiver()
    wire = sender.seal("CONFIG", {"config_version": 2, "items": [(1, 60), (2, 300), (3, 60)]})
    assert len(wire) > 20
    t.send(wire)
    frames = read_frames(t, rx, 1000)
    assert [f.fields["time_ms"] for f in frames] == [sender.counter - 1]
    assert dev.ble.stats["truncated_bytes"] == 0
    assert dev.ble.stats["writes"] >= 2
    t.close()


def test_queued_while_no_central_then_delivered_in_order(world):
    dev = make_device(world)
    world.run_until(30_500)                               # 30 ticks with nobody connected
    t = open_ble(world, dev)
    frames = read_frames(t, uplink_receiver(), 3000)
    ticks = [f.fields["time_ms"] for f in frames if f.fields["value"] == 0]
    assert ticks[:30] == list(range(1, 31))
    t.close()


def test_disconnect_mid_indication_loses_nothing(world):
    dev = make_device(world)
    world.run_until(20_500)
    t = open_ble(world, dev)
    rx = uplink_receiver()
    seen = [f.fields["time_ms"] for f in read_frames(t, rx, 2)]  # a few pieces in flight
    dev.ble.drop_connections()                          # the link drops under the firmware
    with pytest.raises(TransportClosed):
        read_frames(t, rx, 2000)
    world.run_for(5000)
    t2 = open_ble(world, dev)
    seen += [f.fields["time_ms"] for f in read_frames(t2, rx, 3000) if f.fields["value"] == 0]
    assert set(range(1, 26)) <= set(seen)               # duplicates allowed, gaps not
    t2.close()


def test_phone_out_of_range_for_minutes_loses_nothing(world):
    dev = make_device(world, max_queued=256)
    world.run_until(2000)
    t = open_ble(world, dev)
    rx = uplink_receiver()
    seen = [f.fields["time_ms"] for f in read_frames(t, rx, 3000)]
    dev.ble.out_of_range(3 * 60_000)
    with pytest.raises(TransportClosed):
        read_frames(t, rx, 10_000)                          # supervision timeout: 5 s
    world.run_for(3 * 60_000)
    t2 = open_ble(world, dev)
    seen += [f.fields["time_ms"] for f in read_frames(t2, rx, 20_000) if f.fields["value"] == 0]
    last = max(seen)
    assert last > 180
    assert set(range(1, last + 1)) <= set(seen)
    t2.close()


def test_mtu_change_on_reconnect(world):
    dev = make_device(world, tick=False)
    world.run_until(2000)
    radio = radio_of(world)
    central = radio.add_central()
    t = open_ble(world, dev, central=central, mtu=23)
    assert t.mtu == 23
    t.close()
    world.run_for(2000)
    t = open_ble(world, dev, central=central, mtu=185)
    assert t.mtu == 185
    sender = codec.Sender(DEVICE, 0, KEY, downlink=True)
    t.send(sender.seal("COMMAND", {"command": 2, "arg": 1}))
    assert [f.fields["value"] for f in read_frames(t, uplink_receiver(), 500)] == [1]
    t.close()


def test_device_reset_drops_the_link(world):
    dev = make_device(world, tick=False)
    world.run_until(2000)
    t = open_ble(world, dev)
    dev.power_cut()
    with pytest.raises(TransportClosed):
        read_frames(t, uplink_receiver(), 6000)
    dev.power_on()
    world.run_for(3000)
    t2 = open_ble(world, dev)
    assert t2.mtu == 247
    t2.close()


def test_ram_queue_is_bounded_and_counts_what_it_drops(world):
    dev = make_device(world, max_queued=8)
    world.run_until(20_500)
    t = open_ble(world, dev)
    # The ticks the firmware had queued by the time the central subscribed (its console).
    written = bytes(dev.console).count(b"tick ")
    assert written >= 19
    ticks = [f.fields["time_ms"] for f in read_frames(t, uplink_receiver(), 3000)
             if f.fields["value"] == 0]
    # The 8 newest waited in RAM; older ones were dropped (resending them is the flash
    # queue's job in the app), never a newer one; later ones follow without a gap.
    assert ticks[:8] == list(range(written - 7, written + 1))
    assert ticks == list(range(written - 7, written - 7 + len(ticks)))
    t.close()


def test_the_centre_listens_on_ble_one_link_per_listen_window(world):
    from host.centre import Centre
    from host.emulate import KEY_ID, KeyStore, device_key
    from host.keys import device_key_file_bytes
    from host.transport import listen

    files = device_files(REPO)
    files["/lib/firmware/pins.py"] += b'\nLINK_KIND = "ble"\n'
    files["/keys/device.key"] = device_key_file_bytes(1001, {KEY_ID: device_key(1, 1001)})
    dev = world.add_device(1001, files=files)
    world.run_until(500)
    keys = KeyStore()
    keys.add(1001, KEY_ID, device_key(1, 1001))
    centre = Centre(keys)
    radio = radio_of(world)
    listener = listen("ble://" + dev.ble.identity_address, timeout_ms=1000, runner=radio,
                      backend=BumbleBackends, bumble_device=radio.add_central(),
                      irks=[(dev.ble.irk, dev.ble.identity_address)])
    links = 0
    while world.now_ms < 80_000:
        link = listener.accept(timeout_ms=30_000)
        assert link is not None                          # a window at least every 30 s
        links += 1
        try:
            while True:
                frame = link.recv(timeout_ms=5000)
                if frame is None:
                    break
                for wire in centre.receive("ble", frame, 1_767_225_600_000 + int(world.now_ms)):
                    link.send(wire)
        except TransportClosed:
            pass                                         # the window closed
        link.close()
    listener.close()
    assert links >= 3
    assert centre.devices[1001].schema_ok is True         # HELLO arrived and was checked
    assert centre.frames_up >= 2


# The app's way of running the driver: with its secrets file on flash.
PRIVATE_MAIN = '''
import bluetooth, os, time
from firmware.ble import BleLink
try:
    os.mkdir("/state")
except OSError:
    pass
link = BleLink(bluetooth.BLE(), bluetooth.UUID, time.ticks_ms, log=print,
               secrets="/state/ble.bin")
print("bonding", link.bonding)
while True:
    link.poll()
    time.sleep_ms(1000)
'''


def scan(world, ms):
    """What a stranger's scanner hears for ms: [(address bytes little-endian, adv data)]."""
    radio = radio_of(world)
    central = radio.add_central("C0:00:00:00:00:0F", name="stranger")
    heard = []

    def on_adv(adv):
        heard.append((bytes(adv.address), bytes(adv.data_bytes)))
    central.on("advertisement", on_adv)
    radio.run(central.start_scanning(active=True), 1000)
    world.run_for(ms)
    radio.run(central.stop_scanning(), 1000)
    central.remove_listener("advertisement", on_adv)
    return heard


def resolves(irk, address_le):
    from bumble.crypto import ah
    return address_le[5] >> 6 == 0b01 and ah(irk, address_le[3:6]) == address_le[0:3]


def test_adverts_over_a_rotation_period_identify_nothing_and_the_address_moves(world):
    from host.emulator.ble_address import NIMBLE_DEFAULT_IRK, RPA_TIMEOUT_S

    dev = make_device(world, main=PRIVATE_MAIN)
    world.run_until(2000)
    first = scan(world, 1000)
    world.run_for(RPA_TIMEOUT_S * 1000)                  # one rotation period of NimBLE's RPA
    second = scan(world, 1000)
    assert first and second
    for address, adv in first + second:
        assert adv == b"\x02\x01\x06"                    # flags only: no name, UUID, TX power
        assert address != bytes(reversed(dev.ble.public_address))
        assert resolves(dev.ble.irk, address)            # a bonded phone still finds it
        assert not resolves(NIMBLE_DEFAULT_IRK, address)  # a stranger with NimBLE's IRK not
    assert len({a for a, _ in first}) == 1 and len({a for a, _ in second}) == 1
    assert first[0][0] != second[0][0]                  # the address changed
    assert dev.ble.irk_source == "generated"
    assert "bonding True" in [line for _, line in dev.log]


def test_the_irk_survives_a_reset_and_the_address_does_not(world):
    dev = make_device(world, main=PRIVATE_MAIN)
    world.run_until(2000)
    irk, before = dev.ble.irk, scan(world, 500)
    dev.power_cut()
    world.run_for(10)
    dev.power_on()
    world.run_for(2000)
    after = scan(world, 500)
    assert dev.ble.irk_source == "stored" and dev.ble.irk == irk
    assert before and after and before[0][0] != after[0][0]
    assert resolves(irk, after[0][0])
    assert not dev.faults                   # the IRK was written by poll(), not the handler


def test_without_a_secret_store_anyone_resolves_the_private_address(world):
    # The driver as a firmware without a secrets file would run it: NimBLE's built-in IRK.
    from host.emulator.ble_address import NIMBLE_DEFAULT_IRK

    dev = make_device(world, tick=False)
    world.run_until(2000)
    heard = scan(world, 500)
    assert heard and dev.ble.irk_source == "nimble-default"
    assert resolves(NIMBLE_DEFAULT_IRK, heard[0][0])


def test_the_driver_runs_on_the_real_micropython_vm(world):
    # The same round trip with firmware/ble.py (and its IRK handshake) in the MicroPython
    # unix port: the VM bridge carries the IRQ handler's arguments and its result.
    from host.emulator.vmtools import VmUnavailable, check_available
    try:
        check_available()
    except VmUnavailable as e:
        pytest.skip(str(e))
    files = device_files(REPO)
    files["/main.py"] = (ECHO_MAIN % {"tick": 0, "max_queued": 8, "private": True}).replace(
        "log=print,", "log=print, secrets='/ble.bin',").encode()
    dev = world.add_device(DEVICE, files=files, runtime="micropython", heap_bytes=256 * 1024)
    world.run_until(3000)
    assert dev.ble.irk_source == "generated" and not dev.crashes
    t = open_ble(world, dev)
    sender = codec.Sender(DEVICE, 0, KEY, downlink=True)
    t.send(sender.seal("TIME_SYNC", {"utc_ms": 1_767_225_600_000}))
    frames = read_frames(t, uplink_receiver(), 500)
    assert [(f.name, f.fields["value"]) for f in frames] == [("EVENT", 1)]
    t.close()
