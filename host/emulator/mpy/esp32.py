# MicroPython `esp32` for the emulated ESP32 (the parts the firmware may use).
import _board

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# modesp32.c: the wake levels are booleans
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = const(4)
HEAP_EXEC = const(1)


# GPIOs that can be RTC wake sources (ports/esp32/modesp32.h RTC_VALID_EXT_PINS, ESP32)
_RTC_EXT_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def _pin_id(pin):
    pin_id = getattr(pin, "_id", None)
    if pin_id is None:
        raise ValueError("expecting a pin")
    return pin_id


def wake_on_ext0(pin, level):
    """modesp32.c: ext0 is one pin for light and deep sleep; it replaces a Pin.irq(wake=)."""
    if pin is None:
        _board.wake_ext0(None, 0)
        return
    pin_id = _pin_id(pin)
    if pin_id not in _RTC_EXT_PINS:
        raise ValueError("invalid pin")
    _board.wake_ext0(pin_id, 1 if level else 0)


def wake_on_ext1(pins, level):
    ids = []
    for p in pins or ():
        pin_id = _pin_id(p)
        if pin_id not in _RTC_EXT_PINS:
            raise ValueError("invalid pin")
        ids.append(pin_id)
    _board.wake_ext1(ids, 1 if level else 0)


def wake_on_touch(wake):
    pass


def wake_on_ulp(wake):
    pass


def gpio_deep_sleep_hold(enable):
    _board.gpio_deep_sleep_hold(enable)


# modesp32.c: the ESP32 has raw_temperature() (degrees F, uncalibrated); mcu_temperature()
# exists only on the other chips.
def raw_temperature():
    return 120
