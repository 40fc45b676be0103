# MicroPython `bluetooth` for the emulated ESP32 (NimBLE build). MicroPython-compatible: all
# state lives on the board behind `_ble` (host/emulator/ble.py), so a reset clears it like the
# real stack. Names, defaults and errors follow extmod/modbluetooth.c; see docs/HARDWARE.md.
import sys

import _ble

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

FLAG_BROADCAST = const(0x0001)
FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)
FLAG_AUTHENTICATED_SIGNED_WRITE = const(0x0040)
FLAG_AUX_WRITE = const(0x0100)
FLAG_READ_ENCRYPTED = const(0x0200)
FLAG_READ_AUTHENTICATED = const(0x0400)
FLAG_READ_AUTHORIZED = const(0x0800)
FLAG_WRITE_ENCRYPTED = const(0x1000)
FLAG_WRITE_AUTHENTICATED = const(0x2000)
FLAG_WRITE_AUTHORIZED = const(0x4000)

_HEX = "0123456789abcdefABCDEF"

# What the port itself keeps on MicroPython's heap while the stack is up: C structures the
# NimBLE bindings allocate with m_new (docs/HARDWARE.md, bluetooth, "The stack's own heap").
# Here they are bytearrays and a dict that take as many GC blocks, so that the firmware's
# heap pays for them as on the board; active(False) drops them all, as mp_bluetooth_deinit
# drops MP_STATE_PORT(bluetooth_nimble_root_pointers). Sizes are the structs' on the ESP32
# (4-byte words) and on a 64-bit build.
_WORD = 8 if sys.maxsize > 0x7FFFFFFF else 4
_BLOCK = 4 * _WORD                       # MICROPY_BYTES_PER_GC_BLOCK
# mp_bluetooth_nimble_root_pointers_t: gatts_db, n_services, services[8] and the GATT
# client's pending characteristic (a UUID object in it).
_ROOT_BYTES = 84 if _WORD == 4 else 144
_CHR_DEF = 7 * _WORD                     # struct ble_gatt_chr_def (with cpfd: the larger)
_SVC_DEF = 4 * _WORD                     # struct ble_gatt_svc_def
_DSC_DEF = 4 * _WORD                     # struct ble_gatt_dsc_def
_DB_ENTRY = 4 * _WORD                    # mp_bluetooth_gatts_db_entry_t
_DEFAULT_ATTR_LEN = 20                   # MP_BLUETOOTH_DEFAULT_ATTR_LEN
_root = None            # the root pointers
_services = None        # every definition, UUID and db entry the services took, in one
# The gatts db (an mp_map_t, as a dict): value handle -> its entry and buffer, in one.
_db = None


def _blocks(n):
    return (max(n, 1) + _BLOCK - 1) // _BLOCK


def _c_alloc(n_blocks):
    """As many GC blocks as `n_blocks` (2 or more) blocks of C allocations: a bytearray's
    header is one block (mp_obj_array_t is four words), its data the rest."""
    return bytearray((n_blocks - 1) * _BLOCK)


def _uuid_blocks(value):
    # ble_uuid16_t (4 bytes) for a 16-bit UUID, ble_uuid128_t (17 bytes) otherwise
    return _blocks(4 if isinstance(getattr(value, "value", value), int) else 17)


def _entry(buffer_bytes):
    # mp_bluetooth_gatts_db_create_entry: the entry, then its buffer
    return _c_alloc(_blocks(_DB_ENTRY) + _blocks(buffer_bytes))


def _hold_services(services, handles):
    """What mp_bluetooth_gatts_register_service keeps per service: the characteristic and
    descriptor definitions, each UUID, the handles array, the service definition; then a db
    entry and a 20-byte buffer per value handle. The previous registration's go first
    (gatts_register_service_begin resets the db and the services)."""
    global _services
    _services = None
    _db.clear()
    n = 0
    for service, service_handles in zip(services, handles):  # noqa: B905 (no strict= in MicroPython)
        chars = service[1]
        n += _blocks((len(chars) + 1) * _CHR_DEF) + _blocks(2 * _SVC_DEF)
        n += _uuid_blocks(service[0]) + _blocks(2 * len(service_handles))
        for char in chars:
            n += _uuid_blocks(char[0])
            descriptors = char[2] if len(char) > 2 else ()
            if descriptors:
                n += _blocks((len(descriptors) + 1) * _DSC_DEF)
                for descriptor in descriptors:
                    n += _uuid_blocks(descriptor[0])
        for handle in service_handles:
            _db[handle] = _entry(_DEFAULT_ATTR_LEN)
    _services = _c_alloc(n)


class UUID:
    def __init__(self, value):
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            self.value = value
        elif isinstance(value, str):
            digits = value.replace("-", "")
            for ch in digits:
                if ch not in _HEX:
                    raise ValueError("invalid char in UUID")
            if len(digits) > 32:
                raise ValueError("UUID too long")
            if len(digits) < 32:
                raise ValueError("UUID too short")
            self.value = "%s-%s-%s-%s-%s" % (digits[0:8], digits[8:12], digits[12:16],
                                              digits[16:20], digits[20:32])
        elif isinstance(value, UUID):
            self.value = value.value
        else:
            raise ValueError("invalid UUID")

    def __eq__(self, other):
        return isinstance(other, UUID) and str(self.value).lower() == str(other.value).lower()

    def __hash__(self):
        return hash(str(self.value).lower())

    def __repr__(self):
        if isinstance(self.value, int):
            return "UUID(0x%04x)" % self.value
        return "UUID('%s')" % self.value


class BLE:
    # One Bluetooth stack per board: every BLE() is the same stack (MP_STATE_VM(bluetooth)).
    def active(self, active=None):
        global _root, _services, _db
        on = _ble.active(None if active is None else bool(active))
        if not on:
            _root = _services = _db = None
        elif _root is None:                                        # mp_bluetooth_init
            _root = _c_alloc(_blocks(_ROOT_BYTES))
            _db = {}
        return on

    def config(self, *args, **kwargs):
        if not kwargs:
            if len(args) != 1:
                raise TypeError("must query one param")
            return _ble.config_get(args[0])
        if args:
            raise TypeError("can't specify pos and kw args")
        for name in kwargs:
            _ble.config_set(name, kwargs[name])
        return None

    def irq(self, handler):
        _ble.irq(handler)

    def gap_advertise(self, interval_us=500000, adv_data=None, *, resp_data=None,
                      connectable=True):
        _ble.gap_advertise(interval_us, adv_data, resp_data, connectable)

    def gap_disconnect(self, conn_handle):
        return _ble.gap_disconnect(conn_handle)

    def gatts_register_services(self, services):
        handles = _ble.register(services)
        _hold_services(services, handles)
        return handles

    def gatts_read(self, value_handle):
        return _ble.gatts_read(value_handle)

    def gatts_write(self, value_handle, data, send_update=False):
        _ble.gatts_write(value_handle, data, send_update)
        if _blocks(len(data)) + _blocks(_DB_ENTRY) > len(_db[value_handle]) // _BLOCK + 1:
            _db[value_handle] = _entry(len(data))               # m_new_maybe: a larger buffer

    def gatts_notify(self, conn_handle, value_handle, data=None):
        _ble.gatts_notify(conn_handle, value_handle, data, False)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        _ble.gatts_notify(conn_handle, value_handle, data, True)

    def gatts_set_buffer(self, value_handle, len, append=False):
        _ble.gatts_set_buffer(value_handle, len, append)
        _db[value_handle] = _entry(len)                         # m_renew of the buffer
