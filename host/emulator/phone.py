"""The wearer's phone (or a home gateway) as the device's BLE peer, in virtual time.

A bumble central on the World's radio that does what the phone app does, through bleak's
public API on the bumble backend: scan continuously (resolving the device's private address
with its IRK, as a bonded phone does), connect when the device advertises, subscribe to TX,
write the 0x00 "ready", pass every uplink piece to the centre, and write the downlinks it
holds. Like the UART gateway (link.py) it holds downlinks while the device is unreachable;
unlike it, nothing is pushed: the device's listen windows decide when the phone can talk.

    phone = PhoneGateway(dev)                  # same centre-side API as host/emulator/link.py
    phone.connect(on_uplink)                   # on_uplink(data, t_ms)
    phone.send_downlink(wire)
    phone.uplinks, phone.downlink_waits, phone.stats, phone.connections
    phone.away(start_ms, duration_ms)          # out of range: nothing either way
"""
import asyncio
from collections import deque

from .radio import radio_of

RX_UUID = "5a1e0002-7669-6769-6c00-000000000000"   # firmware/ble.py
TX_UUID = "5a1e0003-7669-6769-6c00-000000000000"


class PhoneGateway:
    def __init__(self, dev, address="C0:00:00:00:00:0A", mtu=247):
        self.dev = dev
        self.world = dev.world
        self.radio = radio_of(dev.world)
        self.central = self.radio.add_central(address, name="phone-%s" % dev.device_id)
        self.mtu = mtu
        self.on_uplink = None
        self.uplinks = []
        self.downlink_waits = []
        self.connections = []              # (connected_ms, disconnected_ms or None)
        self.away_spans = []               # (start_ms, end_ms)
        self.stats = {"up_sent": 0, "down_sent": 0, "up_delivered": 0, "down_delivered": 0,
                      "connects": 0, "connect_failures": 0}
        self._held = deque()               # (arrival_ms, wire)
        self._tail = b""                   # an uplink frame cut by the MTU, so far
        self._wake = asyncio.Event()
        self._client = None
        self._task = self.radio.loop.create_task(self._run())
        self.radio.kick()

    # --- centre side --------------------------------------------------------------------
    def connect(self, on_uplink):
        self.on_uplink = on_uplink

    def send_downlink(self, data):
        self._held.append((self.world.now_ms, bytes(data)))
        self.stats["down_sent"] += 1
        self._wake.set()
        self.radio.kick()

    @property
    def held(self):
        return len(self._held)

    def away(self, start_ms, duration_ms):
        """The phone is out of range from start_ms for duration_ms."""
        self.world.at(start_ms, self._leave, duration_ms)

    def _leave(self, duration_ms):
        # Nothing reaches either side: adverts, data, the phone's scans. A connection that
        # was up ends by supervision timeout on both sides.
        controller = self.radio.controllers[self.central]
        self.radio.block(controller)
        self.away_spans.append((self.world.now_ms, self.world.now_ms + duration_ms))
        ble = self.dev.ble
        timeout_ms = ble.conn["supervision_timeout_ms"]
        if duration_ms >= timeout_ms:
            self.world.after(timeout_ms, ble.drop_connections)
        self.world.after(duration_ms, self._back, controller)

    def _back(self, controller):
        self.radio.unblock(controller)
        self.radio.kick()

    # --- the phone app (radio loop) ------------------------------------------------------
    async def _run(self):
        from bleak import BleakClient, BleakScanner

        from host.transport.bleak_bumble import BumbleClient, BumbleScanner
        ble = self.dev.ble
        irks = [(ble.irk, ble.identity_address)]
        while True:
            found = asyncio.get_running_loop().create_future()

            seen = _matcher(found, ble.identity_address)
            scanner = BleakScanner(seen, backend=BumbleScanner, bumble_device=self.central,
                                   irks=irks)
            await scanner.start()
            try:
                device = await found
            finally:
                await scanner.stop()
            gone = asyncio.Event()
            client = BleakClient(device, disconnected_callback=lambda _c, gone=gone: gone.set(),
                                 backend=BumbleClient, bumble_device=self.central, irks=irks,
                                 mtu=self.mtu, timeout=5.0)
            try:
                await client.connect()
                await client.start_notify(TX_UUID, self._on_data)
                await client.write_gatt_char(RX_UUID, b"\x00", response=True)
            except Exception:  # noqa: BLE001 - the device went away mid-setup: scan again
                self.stats["connect_failures"] += 1
                if client.is_connected:
                    await client.disconnect()
                await asyncio.sleep(0.05)
                continue
            self.stats["connects"] += 1
            self.connections.append([self.world.now_ms, None])
            try:
                await self._serve(client, gone)
            finally:
                self.connections[-1][1] = self.world.now_ms

    async def _serve(self, client, gone):
        while not gone.is_set():
            while self._held and not gone.is_set():
                arrival_ms, wire = self._held[0]
                size = max(20, client.mtu_size - 3)
                try:
                    for i in range(0, len(wire), size):
                        await client.write_gatt_char(RX_UUID, wire[i:i + size], response=True)
                except Exception:  # noqa: BLE001 - link lost: keep it for the next time
                    break
                self._held.popleft()
                self.stats["down_delivered"] += 1
                now = self.world.now_ms
                self.downlink_waits.append((arrival_ms, now, now - arrival_ms))
                self.world.record(self.dev.device_id, "downlink",
                                  "%s waited %.3f ms" % (wire.hex(), now - arrival_ms))
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            goner = asyncio.ensure_future(gone.wait())
            await asyncio.wait((waiter, goner), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            goner.cancel()

    def _on_data(self, _char, data):
        data = bytes(data)
        self.uplinks.append((self.world.now_ms, data))
        self.world.record(self.dev.device_id, "uplink", data.hex())
        # Count frames, not pieces: each is 0x00 + frame + 0x00, cut at the MTU anywhere.
        parts = (self._tail + data).split(b"\x00")
        self._tail = parts[-1]
        frames = sum(1 for p in parts[:-1] if p)
        self.stats["up_sent"] += frames
        self.stats["up_delivered"] += frames
        if self.on_uplink is not None:
            self.on_uplink(data, self.world.now_ms)


def _matcher(found, address):
    def seen(device, _adv):
        if not found.done() and device.address == address:
            found.set_result(device)
    return seen
