"""A bleak backend on bumble: `BleakScanner(backend=BumbleScanner, bumble_device=central)` and
`BleakClient(dev, backend=BumbleClient, bumble_device=central)`.

In CI there is no Bluetooth controller (no BlueZ, no /dev/vhci), so the public bleak API runs
on a bumble central on a bumble LocalLink instead (host/emulator/radio.py). On lab machines
the OS backend is used unchanged; nothing here is imported then.

Extra keyword arguments (they reach the backend's constructor through bleak):
    bumble_device   a powered-on bumble Device on the same LocalLink (the central)
    irks            [(irk16, "identity address")]: resolve resolvable private addresses the
                    way a bonded OS does, and report the identity address
    mtu             the ATT MTU to ask for after connecting (default 247, as phones do)
"""
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble import core, hci
from bumble.device import Peer
from bumble.smp import AddressResolver


def _resolver(irks):
    if not irks:
        return None
    return AddressResolver([(bytes(k), hci.Address(a)) for k, a in irks])


def _addr_text(address):
    return str(address).split("/")[0].upper()


class BumbleScanner(BaseBleakScanner):
    def __init__(self, detection_callback, service_uuids, scanning_mode="active", *,
                 bumble_device=None, irks=None, **kwargs):
        super().__init__(detection_callback, service_uuids)
        if bumble_device is None:
            raise BleakError("BumbleScanner needs bumble_device=")
        self.device = bumble_device
        self.resolver = _resolver(irks)
        self._listening = False

    async def start(self):
        self.seen_devices = {}
        if not self._listening:
            self.device.on("advertisement", self._on_advertisement)
            self._listening = True
        await self.device.start_scanning(filter_duplicates=False)

    async def stop(self):
        await self.device.stop_scanning()
        if self._listening:
            self.device.remove_listener("advertisement", self._on_advertisement)
            self._listening = False

    def _on_advertisement(self, adv):
        data = adv.data
        on_air = adv.address
        identity = self.resolver.resolve(on_air) if self.resolver else None
        address = _addr_text(identity or on_air)
        name = data.get(core.AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
            core.AdvertisingData.SHORTENED_LOCAL_NAME)
        name = name if isinstance(name, str) else None
        uuids = [str(u).lower() for u in (data.get(core.AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS) or [])]
        if not self.is_allowed_uuid(uuids):
            return
        ad = AdvertisementData(local_name=name, manufacturer_data={}, service_data={},
                               service_uuids=uuids, tx_power=None, rssi=adv.rssi,
                               platform_data=(adv,))
        device = self.create_or_update_device(address, address, name, on_air, ad)
        self.call_detection_callbacks(device, ad)


class BumbleClient(BaseBleakClient):
    def __init__(self, address_or_ble_device, *, bumble_device=None, irks=None, mtu=247,
                 **kwargs):
        super().__init__(address_or_ble_device,
                         disconnected_callback=kwargs.get("disconnected_callback"),
                         timeout=kwargs.get("timeout", 10.0))
        if bumble_device is None:
            raise BleakError("BumbleClient needs bumble_device=")
        self.device = bumble_device
        self.irks = irks
        self.wanted_mtu = mtu
        self.on_air = (address_or_ble_device.details
                       if isinstance(address_or_ble_device, BLEDevice) else None)
        self.connection = None
        self.peer = None

    @property
    def name(self):
        return self.address

    @property
    def mtu_size(self):
        return self.connection.att_mtu if self.connection is not None else 23

    @property
    def is_connected(self):
        return self.connection is not None

    async def connect(self, pair, **kwargs):
        target = self.on_air if self.on_air is not None else hci.Address(self.address)
        try:
            connection = await self.device.connect(target, timeout=self._timeout)
        except (core.BaseBumbleError, TimeoutError) as exc:
            raise BleakError("%s: cannot connect: %s" % (self.address, exc)) from None
        self.connection = connection
        connection.on("disconnection", self._on_disconnection)
        self.peer = Peer(connection)
        if self.wanted_mtu and self.wanted_mtu > 23:
            await self.peer.request_mtu(self.wanted_mtu)
        await self._discover()

    def _on_disconnection(self, reason):
        self.connection = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _discover(self):
        peer = self.peer
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for proxy in peer.services:
            await proxy.discover_characteristics()
            service = BleakGATTService(proxy, proxy.handle, str(proxy.uuid).lower())
            collection.add_service(service)
            for char in proxy.characteristics:
                await char.discover_descriptors()
                props = [p.name.lower().replace("_", "-") for p in
                         type(char.properties) if char.properties & p]
                bc = BleakGATTCharacteristic(char, char.handle, _uuid_text(char.uuid),
                                             props, lambda: self.mtu_size - 3, service)
                collection.add_characteristic(bc)
                for desc in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_text(desc.type), bc))
        self.services = collection

    async def disconnect(self):
        if self.connection is not None:
            await self.connection.disconnect()

    async def pair(self, *args, **kwargs):
        raise NotImplementedError("pairing is not emulated")

    async def unpair(self):
        raise NotImplementedError("pairing is not emulated")

    def _need(self):
        if self.connection is None:
            raise BleakError("Not connected")

    async def read_gatt_char(self, characteristic, **kwargs):
        self._need()
        return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor, **kwargs):
        self._need()
        return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(self, characteristic, data, response):
        self._need()
        await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor, data):
        self._need()
        await descriptor.obj.write_value(bytes(data))

    async def start_notify(self, characteristic, callback, **kwargs):
        self._need()
        # Indication when the characteristic offers only that (as BlueZ and CoreBluetooth do).
        await characteristic.obj.subscribe(lambda value: callback(bytearray(value)),
                                           prefer_notify=True)

    async def stop_notify(self, characteristic):
        self._need()
        await characteristic.obj.unsubscribe()


def _uuid_text(uuid):
    text = uuid.to_hex_str("-") if hasattr(uuid, "to_hex_str") else str(uuid)
    text = text.lower()
    if len(text) == 4:
        return "0000%s-0000-1000-8000-00805f9b34fb" % text
    return text
