"""The board side of the emulated `bluetooth` module: one NimBLE-like host per device, bridged
to a bumble peripheral on the World's virtual radio (host/emulator/radio.py).

mpy/bluetooth.py (the MicroPython API) calls these methods as `_ble.<name>` from the firmware
thread, under the device's baton, while the radio loop is idle; work for bumble is queued on
the loop and the radio is kicked. Events from bumble (connect, disconnect, write, MTU,
indication done) become the firmware's IRQ handler calls, delivered like the ESP32 port's
sync events: in the firmware thread between its steps, or at once if it is waiting. Each rule
below cites the port in docs/HARDWARE.md "## bluetooth".

Faults for tests: `drop_connections(reason)`, `out_of_range(duration_ms)`,
`central_mtu(...)` lives on the central; `stats` counts what happened.
"""
import collections
import hashlib

from bumble import gatt, hci
from bumble.core import UUID

from .ble_address import BleAddresses
from .radio import radio_of

# MicroPython IRQ event codes (extmod/modbluetooth.h)
IRQ_CENTRAL_CONNECT = 1
IRQ_CENTRAL_DISCONNECT = 2
IRQ_GATTS_WRITE = 3
IRQ_GATTS_INDICATE_DONE = 20
IRQ_MTU_EXCHANGED = 21
IRQ_CONNECTION_UPDATE = 27
# IRQ_GET_SECRET and IRQ_SET_SECRET: host/emulator/ble_address.py (load_irk asks them)

# errno values as MicroPython raises them (py/mperrno.h)
ENODEV, EINVAL, EBUSY, ENOTCONN, EALREADY, ENOMEM = 19, 22, 16, 107, 114, 12

DEFAULT_ATTR_LEN = 20        # MP_BLUETOOTH_DEFAULT_ATTR_LEN: a characteristic's buffer
DEFAULT_MTU = 23             # NimBLE preferred MTU set by mp_bluetooth_init: 20 + 3
MAX_MTU = 527                # NimBLE BLE_ATT_MTU_MAX: ble_att_set_preferred_mtu refuses more
DEFAULT_GAP_NAME = b"MPY ESP32"  # ports/esp32/boards/sdkconfig.ble
ADV_MAX = 31                 # legacy advertising payload (Core spec Vol 6 Part B 2.3.1)

# Characteristic flags (extmod/modbluetooth.h)
FLAG_READ, FLAG_WRITE_NO_RESPONSE, FLAG_WRITE = 0x0002, 0x0004, 0x0008
FLAG_NOTIFY, FLAG_INDICATE = 0x0010, 0x0020

# Connection parameters the emulated central asks for, unless a test sets others: the
# phone/gateway's choice, not the peripheral's (Core spec Vol 6 Part B 4.5.1).
DEFAULT_CONN = {"interval_ms": 45.0, "latency": 0, "supervision_timeout_ms": 5000}


def _uuid(value):
    """A bluetooth.UUID (our mpy class keeps its text in .value) or an int/str as UUID."""
    value = getattr(value, "value", value)
    if isinstance(value, int):
        return UUID.from_16_bits(value)
    return UUID(str(value))


class _Entry:
    __slots__ = ("data", "alloc", "append")

    def __init__(self):
        self.data = b""
        self.alloc = DEFAULT_ATTR_LEN
        self.append = False


class BleHost(BleAddresses):
    """The device's Bluetooth host and controller, as the firmware sees them."""

    def __init__(self, dev):
        self.dev = dev
        self.world = dev.world
        self.radio = radio_of(dev.world)
        mac = bytearray(hashlib.sha256(b"bt|%s" % str(dev.device_id).encode()).digest()[:6])
        mac[0] &= 0xFE                   # a unicast public address from the "eFuse MAC"
        self.public_address = bytes(mac)
        self.identity_address = ":".join("%02X" % b for b in mac)
        # The IRK in use; the RPAs below resolve with it. Before the first boot: the one the
        # firmware will be handed and keep (what a bonded phone learnt), see _load_irk.
        self._irk_generations = 0
        self._rpa_epoch = 0
        self._rpa_due = False
        self.irk = self._generated_irk()
        self.irk_source = "none"         # "stored" | "generated" | "nimble-default"
        self.stats = {k: 0 for k in ("connects", "disconnects", "writes", "bytes_in",
                                     "notifies", "indications", "indications_failed",
                                     "bytes_out", "irqs", "irqs_lost", "truncated_bytes",
                                     "adverts")}
        self.conn = dict(DEFAULT_CONN)
        self.adv_log = []                # (t_ms, adv_data bytes, address) per gap_advertise
        self._events = collections.deque()
        self._draining = False
        self._reset_state()

    def _reset_state(self):
        self.active = False
        self.irq = None
        self.gap_name = DEFAULT_GAP_NAME
        self.mtu = DEFAULT_MTU
        self.addr_mode = 0
        self.bond = False
        self.db = {}                     # value handle -> _Entry
        self.chars = {}                  # value handle -> bumble Characteristic
        self.connections = {}            # conn handle -> bumble Connection
        self.indicating = set()          # conn handles with an indication in flight
        if hasattr(self, "_events"):
            self._events.clear()         # a reset loses the events not yet handled
            self._draining = False
        self.advertising = None          # (interval_us, adv_data, resp_data, connectable)
        self._rpa_due = False
        self.device = None
        self.controller = None

    # ------------------------------------------------------------------------------------
    # The `_ble` bus (firmware thread)
    # ------------------------------------------------------------------------------------
    def bus_active(self, value):
        if value is None:
            return self.active
        if value and not self.active:
            self._power_on()
        elif not value and self.active:
            self._power_off("deactivated")
        return self.active

    def _need_active(self):
        if not self.active:
            raise OSError(ENODEV)       # ERRNO_BLUETOOTH_NOT_ACTIVE

    def bus_config_get(self, name):
        if name == "gap_name":
            self._need_active()
            return self.gap_name
        if name == "mac":
            self._need_active()
            if self.addr_mode == 2:
                raise OSError(EINVAL)    # mp_bluetooth_get_current_address: no RPA readback
            return (0 if self.addr_mode == 0 else 1, self._current_address_bytes())
        if name == "mtu":
            self._need_active()
            return self.mtu
        # rxbuf exists only on ringbuffer builds; the ESP32 uses sync events.
        raise ValueError("unknown config param")

    def bus_config_set(self, name, value):
        if name == "gap_name":
            self._need_active()
            self.gap_name = bytes(value)
            self._set_gap_name()
        elif name == "mtu":
            self._need_active()
            mtu = int(value)
            if not DEFAULT_MTU <= mtu <= MAX_MTU:
                raise OSError(EINVAL)
            self.mtu = mtu
            if self.device is not None:
                self.device.gatt_server.max_mtu = mtu
        elif name == "addr_mode":
            self._need_active()
            mode = int(value)
            if mode not in (0, 1, 2, 3):
                raise OSError(EINVAL)
            self.addr_mode = mode
            self._apply_address()
        elif name in ("bond", "mitm", "le_secure"):
            if name == "bond":
                self.bond = bool(value)
        elif name == "io":
            pass
        else:
            raise ValueError("unknown config param")

    def _set_gap_name(self):
        # The GAP service's Device Name (0x2A00), readable by any central that connects.
        if self.device is None:
            return
        self.device.name = self.gap_name.decode("utf-8", "replace")
        for attribute in self.device.gatt_server.attributes:
            if getattr(attribute, "type", None) == UUID.from_16_bits(0x2A00):
                attribute.value = self.gap_name

    def bus_irq(self, handler):
        if handler is not None and not callable(handler):
            raise ValueError("invalid handler")
        self.irq = handler

    def bus_gap_advertise(self, interval_us, adv_data, resp_data, connectable):
        self._need_active()
        if interval_us is None:
            self.advertising = None
            self._on_loop(self._stop_advertising())
            self._energy()
            return
        adv = bytes(adv_data) if adv_data is not None else (
            self.advertising[1] if self.advertising else b"")
        resp = bytes(resp_data) if resp_data is not None else b""
        if len(adv) > ADV_MAX or len(resp) > ADV_MAX:
            raise OSError(EINVAL)        # BLE_HS_EINVAL from ble_gap_adv_set_data
        interval_us = int(interval_us)
        # NimBLE takes the interval in 0.625 ms units: 20 ms .. 10.24 s for connectable.
        if interval_us < 20000 or interval_us > 10240000:
            raise OSError(EINVAL)
        self.advertising = (interval_us, adv, resp, bool(connectable))
        if self._rpa_due and not self.connections:
            self._rpa_due = False
            self._apply_address()                # the rotation that came during a connection
        self.adv_log.append((self.world.now_ms, adv, self._current_address_bytes()))
        self.stats["adverts"] += 1
        if not self.connections:
            self._on_loop(self._start_advertising())
        self._energy()

    def bus_register(self, services):
        self._need_active()
        if self.connections:
            raise OSError(EBUSY)         # ble_gatts_reset refuses while connected
        handles = []
        bumble_services = []
        for service in services:
            if not isinstance(service, tuple) or len(service) != 2:
                raise ValueError("invalid service tuple")
            uuid, chars = service
            chars_out = []
            chars_handles = []
            for char in chars:
                if not isinstance(char, tuple) or len(char) < 2:
                    raise ValueError("invalid characteristic tuple")
                c = self._make_char(char[0], char[1])
                chars_out.append(c)
                chars_handles.append(c)
            bumble_services.append(gatt.Service(_uuid(uuid), chars_out))
            handles.append(chars_handles)
        self.chars = {}
        self.db = {}
        for s in bumble_services:
            self.device.add_service(s)
        result = []
        for chars_handles in handles:
            row = []
            for c in chars_handles:
                self.db[c.handle] = _Entry()
                self.chars[c.handle] = c
                row.append(c.handle)
            result.append(tuple(row))
        return tuple(result)

    def _make_char(self, uuid, flags):
        props = 0
        perms = 0
        if flags & FLAG_READ:
            props |= gatt.Characteristic.Properties.READ
            perms |= gatt.Characteristic.READABLE
        if flags & FLAG_WRITE:
            props |= gatt.Characteristic.Properties.WRITE
            perms |= gatt.Characteristic.WRITEABLE
        if flags & FLAG_WRITE_NO_RESPONSE:
            props |= gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE
            perms |= gatt.Characteristic.WRITEABLE
        if flags & FLAG_NOTIFY:
            props |= gatt.Characteristic.Properties.NOTIFY
        if flags & FLAG_INDICATE:
            props |= gatt.Characteristic.Properties.INDICATE
        holder = {}

        def read(connection):
            return self.db[holder["c"].handle].data

        def write(connection, value):
            self._on_central_write(connection, holder["c"].handle, bytes(value))

        c = gatt.Characteristic(_uuid(uuid), props, perms or gatt.Characteristic.READABLE,
                                gatt.CharacteristicValue(read=read, write=write))
        holder["c"] = c
        return c

    def bus_gatts_read(self, handle):
        self._need_active()
        entry = self.db.get(handle)
        if entry is None:
            raise OSError(EINVAL)
        data = entry.data
        if entry.append:
            entry.data = b""             # mp_bluetooth_gatts_db_read empties append buffers
        return data

    def bus_gatts_write(self, handle, data, send_update):
        self._need_active()
        entry = self.db.get(handle)
        if entry is None:
            raise OSError(EINVAL)
        data = bytes(data)
        if len(data) > entry.alloc:
            entry.alloc = len(data)      # a local write grows the buffer (gatts_db_write)
        entry.data = data
        if send_update:
            for conn_handle in list(self.connections):
                self._notify(conn_handle, handle, data, indicate=False)

    def bus_gatts_set_buffer(self, handle, length, append):
        self._need_active()
        entry = self.db.get(handle)
        if entry is None:
            raise OSError(EINVAL)
        entry.alloc = int(length)
        entry.append = bool(append)
        entry.data = b""                 # mp_bluetooth_gatts_db_resize: data_len = 0

    def bus_gatts_notify(self, conn_handle, handle, data, indicate):
        self._need_active()
        if handle not in self.db:
            raise OSError(EINVAL)
        if conn_handle not in self.connections:
            raise OSError(ENOTCONN)      # BLE_HS_ENOTCONN
        if data is None:
            data = self.db[handle].data
        if indicate and conn_handle in self.indicating:
            # One indication at a time per connection (ATT, Core spec Vol 3 Part F 3.4.7.2);
            # modelled as the port's EALREADY, the stricter reading.
            raise OSError(EALREADY)
        self._notify(conn_handle, handle, bytes(data), indicate)

    def bus_gap_disconnect(self, conn_handle):
        self._need_active()
        conn = self.connections.get(conn_handle)
        if conn is None:
            return False
        self._on_loop(self._disconnect(conn, hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR))
        return True

    # ------------------------------------------------------------------------------------
    # bumble side (radio loop)
    # ------------------------------------------------------------------------------------
    def _on_loop(self, coro):
        task = self.radio.loop.create_task(coro)
        task.add_done_callback(_ignore_cancelled)
        self.radio.kick()

    def _power_on(self):
        dev = self.dev
        ble = dev.profile.get("ble", {})
        n = dev.boot_count
        name = "%s-ble%d" % (dev.device_id, n)
        address = ":".join("%02X" % b for b in self.public_address)
        self.controller, self.device = self._new_bumble(name, address)
        self.device.gatt_server.max_mtu = self.mtu
        self._set_gap_name()
        self.device.on("connection", self._on_connection)
        self.active = True
        self._on_loop(self.device.power_on())
        self._load_irk()
        # NimBLE's host sync takes a while; mp_bluetooth_init blocks until it is done.
        dev.bus_sleep_us(int(ble.get("init_ms", 150) * 1000), 0)
        self._energy()

    def _new_bumble(self, name, address):
        from bumble.controller import Controller
        from bumble.device import Device
        from bumble.host import Host
        from bumble.transport.common import AsyncPipeSink

        holder = {}

        async def make():
            controller = Controller(name, link=self.radio.link, public_address=address)
            host = Host(controller, AsyncPipeSink(controller))
            holder["c"] = controller
            holder["d"] = Device(name=name, address=hci.Address(address), host=host)
        # Constructing needs a running loop; the firmware thread holds the baton, so run
        # one loop pass right here (the loop is idle while the firmware runs).
        task = self.radio.loop.create_task(make())
        self.radio.step()
        if not task.done():
            raise RuntimeError("bumble device construction did not finish")
        return holder["c"], holder["d"]

    def _power_off(self, why):
        """Stack down (active(False), reset, deep sleep): every link just vanishes; the
        central learns of it by its supervision timeout."""
        controller = self.controller
        conns = list(self.connections.values())
        device = self.device
        self._reset_state()
        if controller is None:
            return

        async def down():
            for conn in conns:
                try:
                    await conn.disconnect(hci.HCI_CONNECTION_TIMEOUT_ERROR)
                except Exception:  # noqa: BLE001 - the link is going anyway
                    pass
            try:
                await device.stop_advertising()
            except Exception:  # noqa: BLE001
                pass
            self.radio.link.remove_controller(controller)
        self._on_loop(down())
        self._energy()

    def on_reset(self):
        """Any reset or deep sleep: the controller and every connection are gone."""
        if self.active or self.controller is not None:
            self._power_off("reset")

    async def _start_advertising(self):
        if self.device is None or self.advertising is None:
            return
        interval_us, adv, resp, connectable = self.advertising
        from bumble.device import AdvertisingType
        # bumble's LocalLink sends LE data from a controller's random address only, so the
        # public identity goes on air as the controller's random address (same six bytes).
        own = hci.OwnAddressType.RANDOM
        await self.device.start_advertising(
            advertising_type=(AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE if connectable
                              else AdvertisingType.UNDIRECTED_SCANNABLE),
            advertising_data=adv, scan_response_data=resp, own_address_type=own,
            advertising_interval_min=interval_us / 1000, advertising_interval_max=interval_us / 1000,
            auto_restart=False)

    async def _stop_advertising(self):
        if self.device is not None:
            await self.device.stop_advertising()

    async def _disconnect(self, conn, reason):
        try:
            await conn.disconnect(reason)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _on_connection(self, connection):
        if self.device is None:
            return
        handle = connection.handle
        self.connections[handle] = connection
        self.stats["connects"] += 1
        # NimBLE stops advertising when a connection is made; the firmware restarts it.
        self.advertising = None
        connection.on("disconnection", lambda reason: self._on_disconnection(handle, reason))
        connection.on("connection_att_mtu_update",
                      lambda: self._irq(IRQ_MTU_EXCHANGED, (handle, connection.att_mtu)))
        addr = bytes(reversed(bytes(connection.peer_address)))
        self._irq(IRQ_CENTRAL_CONNECT, (handle, connection.peer_address.address_type, addr))
        self._energy()

    def _on_disconnection(self, handle, reason):
        conn = self.connections.pop(handle, None)
        self.indicating.discard(handle)
        if conn is None:
            return
        self.stats["disconnects"] += 1
        addr = bytes(reversed(bytes(conn.peer_address)))
        self._irq(IRQ_CENTRAL_DISCONNECT, (handle, conn.peer_address.address_type, addr))
        self._energy()

    def _on_central_write(self, connection, handle, value):
        if handle not in self.db:
            return
        self.stats["writes"] += 1
        # characteristic_access_cb runs in NimBLE's host task and calls the IRQ handler
        # before it returns (sync events): the next write is not taken until the firmware's
        # handler has run for this one. So a write the handler will see lands in the buffer
        # just before its handler runs, not when it arrives.
        if self.irq is not None and self.dev.awake:
            self._irq(IRQ_GATTS_WRITE, (connection.handle, handle), value)
        else:
            self._land_write(handle, value)

    def _land_write(self, handle, value):
        # characteristic_access_cb: copies at most data_alloc bytes (after what an append
        # buffer holds) and drops the rest silently.
        entry = self.db.get(handle)
        if entry is None:                # the table was registered again meanwhile
            return
        offset = len(entry.data) if entry.append else 0
        room = max(0, entry.alloc - offset)
        kept = value[:room]
        self.stats["truncated_bytes"] += len(value) - len(kept)
        self.stats["bytes_in"] += len(kept)
        entry.data = (entry.data if entry.append else b"") + kept

    def _notify(self, conn_handle, handle, data, indicate):
        conn = self.connections[conn_handle]
        char = self.chars[handle]
        self.stats["bytes_out"] += len(data)
        if indicate:
            self.indicating.add(conn_handle)
            self.stats["indications"] += 1
            self._on_loop(self._indicate(conn, conn_handle, char, handle, data))
        else:
            self.stats["notifies"] += 1
            self._on_loop(self._send_notify(conn, char, data))

    async def _send_notify(self, conn, char, data):
        try:
            await self.device.notify_subscriber(conn, char, data, force=True)
        except Exception:  # noqa: BLE001 - a notification to a vanished link is lost
            pass

    async def _indicate(self, conn, conn_handle, char, handle, data):
        status = 0
        try:
            await self.device.indicate_subscriber(conn, char, data, force=True)
        except Exception:  # noqa: BLE001 - link gone or ATT timeout: the status says so
            status = 14                  # BLE_HS_ETIMEOUT/ENOTCONN: anything but 0
        self.indicating.discard(conn_handle)
        if conn_handle in self.connections or status:
            if status:
                self.stats["indications_failed"] += 1
            self._irq(IRQ_GATTS_INDICATE_DONE, (conn_handle, handle, status))

    def _irq(self, event, data, written=None):
        """Deliver an IRQ to the firmware like the port's sync events: run in the firmware
        thread at its next wait, or wake an idle wait; lost if the CPU is not awake.
        `written`: a central's write, landed in its buffer just before the handler runs."""
        handler = self.irq
        dev = self.dev
        if handler is None:
            return
        if not dev.awake:
            self.stats["irqs_lost"] += 1
            return
        self.stats["irqs"] += 1
        self._events.append((event, data, written))
        dev.post_irq(self._drain)

    def _drain(self):
        # The port runs one event's handler to completion before the next (sync events under
        # the GIL interlock), in order. A handler that reads ticks lets the emulator serve
        # pending IRQs; this keeps BLE events from nesting inside one another.
        if self._draining:
            return
        self._draining = True
        try:
            while self._events:
                event, data, written = self._events.popleft()
                if written is not None:
                    self._land_write(data[1], written)
                # The handler of the moment (o->irq_handler): none after irq(None) or after
                # an exception switched it off.
                self._call_handler(event, data)
        finally:
            self._draining = False

    def _call_handler(self, event, data):
        """invoke_irq_handler_run_protected (extmod/modbluetooth.c): an exception in the
        handler is printed, the handler is switched off, and the result is None."""
        handler = self.irq
        if handler is None:
            return None
        dev = self.dev
        flash = dev.flash.context
        progs = flash.progs
        try:
            return handler(event, data)
        except Exception as exc:  # noqa: BLE001 - the port catches everything here
            self.irq = None
            dev._flush_stdout()
            dev._stdout_write("Unhandled exception in IRQ callback handler\n"
                              + dev._format_traceback(exc))
            return None
        finally:
            if flash.progs != progs:
                # The handler runs on NimBLE's task: 6 KB of stack, 1 KB of it NimBLE's.
                # littlefs under a few Python calls may overflow it: the worse case, a fault.
                dev._fault("ble_irq_flash", "the BLE IRQ handler wrote the flash (event %d), "
                           "on NimBLE's 6 KB task stack" % event)

    # ------------------------------------------------------------------------------------
    # Energy, faults
    # ------------------------------------------------------------------------------------
    def _energy(self):
        """The radio's average current in its present state (docs/HARDWARE.md)."""
        ble = self.dev.profile.get("ble")
        if not ble:
            return
        energy = self.dev.energy
        if not self.active:
            energy.set("ble", 0.0, "off")
        elif self.connections:
            period_ms = self.conn["interval_ms"] * (1 + self.conn["latency"])
            energy.set("ble", ble["conn_event_uc"] / period_ms + ble["idle_ma"], "connected")
        elif self.advertising:
            energy.set("ble", ble["adv_event_uc"] / (self.advertising[0] / 1000)
                       + ble["idle_ma"], "advertising")
        else:
            energy.set("ble", ble["idle_ma"], "on")

    def drop_connections(self, reason=hci.HCI_CONNECTION_TIMEOUT_ERROR):
        """The link drops under the firmware (e.g. mid-notify): both sides see it at once."""
        for conn in list(self.connections.values()):
            self._on_loop(self._disconnect(conn, reason))

    def out_of_range(self, duration_ms):
        """The phone walks away for duration_ms: adverts and data are lost both ways at once;
        the connection ends by supervision timeout (both sides see it), and the radio hears
        again afterwards."""
        controller = self.controller
        if controller is None:
            return
        self.radio.block(controller)
        timeout_ms = self.conn["supervision_timeout_ms"]
        if duration_ms >= timeout_ms:
            self.world.after(timeout_ms, self._supervision_timeout, controller)
        self.world.after(duration_ms, self._back_in_range, controller)

    def _supervision_timeout(self, controller):
        if controller is self.controller:
            self.drop_connections()

    def _back_in_range(self, controller):
        self.radio.unblock(controller)
        self.radio.kick()

    def on_light_sleep(self, asleep, slept_us=0):
        """Light sleep with the stack up (worse case for ESP32_GENERIC, no 32 kHz crystal):
        the controller misses its events; a sleep past the supervision timeout ends every
        connection, and writes that arrive meanwhile are lost."""
        if not self.active or self.controller is None:
            return
        if asleep:
            self.radio.block(self.controller)
            return
        self.radio.unblock(self.controller)
        if slept_us >= self.conn["supervision_timeout_ms"] * 1000:
            self.drop_connections()
        self.radio.kick()


def _ignore_cancelled(task):
    if not task.cancelled():
        task.exception()

