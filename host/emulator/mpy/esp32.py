# MicroPython `esp32` for the emulated ESP32 (the parts the firmware may use).
import _board

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

WAKEUP_ALL_LOW = const(0)
WAKEUP_ANY_HIGH = const(1)
HEAP_DATA = const(4)
HEAP_EXEC = const(1)


def wake_on_ext0(pin, level):
    _board.wake_ext0(None if pin is None else pin._id, 1 if level else 0)


def wake_on_ext1(pins, level):
    _board.wake_ext1([p._id for p in (pins or ())], 1 if level else 0)


def wake_on_touch(wake):
    pass


def wake_on_ulp(wake):
    pass


def gpio_deep_sleep_hold(enable):
    _board.gpio_deep_sleep_hold(enable)


def raw_temperature():
    return 120


def mcu_temperature():
    return 49
