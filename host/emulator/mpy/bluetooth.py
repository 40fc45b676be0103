# MicroPython `bluetooth` for the emulated ESP32 (NimBLE build). MicroPython-compatible: all
# state lives on the board behind `_ble` (host/emulator/ble.py), so a reset clears it like the
# real stack. Names, defaults and errors follow extmod/modbluetooth.c; see docs/HARDWARE.md.
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
        return _ble.active(None if active is None else bool(active))

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
        return _ble.register(services)

    def gatts_read(self, value_handle):
        return _ble.gatts_read(value_handle)

    def gatts_write(self, value_handle, data, send_update=False):
        _ble.gatts_write(value_handle, data, send_update)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        _ble.gatts_notify(conn_handle, value_handle, data, False)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        _ble.gatts_notify(conn_handle, value_handle, data, True)

    def gatts_set_buffer(self, value_handle, len, append=False):
        _ble.gatts_set_buffer(value_handle, len, append)
