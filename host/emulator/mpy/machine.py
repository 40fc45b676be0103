# MicroPython `machine` for the emulated ESP32. MicroPython-compatible subset: every platform
# detail goes through the board bus `_board`; constants are the ESP32 port's values.
import time as _time

import _board

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# reset_cause()
PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)
# wake_reason()
PIN_WAKE = const(2)
EXT0_WAKE = const(2)
EXT1_WAKE = const(3)
TIMER_WAKE = const(4)
TOUCHPAD_WAKE = const(5)
ULP_WAKE = const(6)
# Pin.irq(wake=...)
SLEEP = const(2)
DEEPSLEEP = const(4)

_RTC_MEMORY_MAX = const(2048)


class Pin:
    IN = const(1)
    OUT = const(3)
    OPEN_DRAIN = const(7)
    PULL_DOWN = const(1)
    PULL_UP = const(2)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)
    WAKE_LOW = const(4)
    WAKE_HIGH = const(5)
    DRIVE_0 = const(0)
    DRIVE_1 = const(1)
    DRIVE_2 = const(2)
    DRIVE_3 = const(3)

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self._id = id
        _board.pin_check(id)
        self.init(mode, pull, value=value, hold=hold)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        _board.pin_init(self._id, mode, pull, value, hold)

    def value(self, x=None):
        if x is None:
            return _board.pin_get(self._id)
        _board.pin_set(self._id, 1 if x else 0)

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        _board.pin_set(self._id, 1)

    def off(self):
        _board.pin_set(self._id, 0)

    def irq(self, handler=None, trigger=3, wake=None):
        pin = self

        def fire():
            handler(pin)

        _board.pin_irq(self._id, trigger, fire if handler is not None else None, wake or 0)
        return None

    def __repr__(self):
        return "Pin(%d)" % self._id


class Signal:
    def __init__(self, pin, invert=False):
        self._pin = pin
        self._invert = invert

    def value(self, x=None):
        if x is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if x else 0) ^ self._invert)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class UART:
    INV_TX = const(1)
    INV_RX = const(2)

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None,
                 rx=None, rts=None, cts=None, txbuf=-1, rxbuf=-1, timeout=0, timeout_char=0,
                 invert=0, flow=0):
        self._id = id
        self._timeout_ms = 0
        self.init(baudrate, bits, parity, stop, tx=tx, rx=rx, txbuf=txbuf, rxbuf=rxbuf,
                  timeout=timeout)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None,
             rts=None, cts=None, txbuf=-1, rxbuf=-1, timeout=0, timeout_char=0, invert=0,
             flow=0):
        # txbuf/rxbuf -1: keep the current size (machine_uart.c), 256 on a fresh UART.
        self._timeout_ms = timeout
        _board.uart_init(self._id, baudrate, rxbuf, txbuf)

    def deinit(self):
        _board.uart_deinit(self._id)

    def any(self):
        return _board.uart_any(self._id)

    def _await(self):
        # With a timeout the driver blocks until data arrives or the timeout passes.
        if self._timeout_ms > 0 and not _board.uart_any(self._id):
            deadline = _time.ticks_add(_time.ticks_ms(), self._timeout_ms)
            while not _board.uart_any(self._id):
                left = _time.ticks_diff(deadline, _time.ticks_ms())
                if left <= 0:
                    break
                _board.sleep_us(left * 1000, 1)

    def read(self, nbytes=None):
        self._await()
        data = _board.uart_read(self._id, -1 if nbytes is None else nbytes)
        return data if data else None

    def readinto(self, buf, nbytes=None):
        self._await()
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        data = _board.uart_read(self._id, n)
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        self._await()
        data = _board.uart_readline(self._id)
        return data if data else None

    def write(self, buf):
        return _board.uart_write(self._id, bytes(buf))

    def flush(self):
        _board.uart_flush(self._id)

    def txdone(self):
        return _board.uart_txdone(self._id)

    def irq(self, handler=None, trigger=0, hard=False):
        _board.uart_irq(self._id)
        raise OSError("emulator: UART IRQs are not modelled")

    def sendbreak(self):
        pass


class ADC:
    ATTN_0DB = const(0)
    ATTN_2_5DB = const(1)
    ATTN_6DB = const(2)
    ATTN_11DB = const(3)
    WIDTH_9BIT = const(9)
    WIDTH_10BIT = const(10)
    WIDTH_11BIT = const(11)
    WIDTH_12BIT = const(12)
    # Upper end of the calibrated range per attenuation, in uV (ESP32 datasheet ADC table).
    _RANGE_UV = (950000, 1250000, 1750000, 2450000)

    def __init__(self, pin, atten=None):
        self._pin = pin._id if isinstance(pin, Pin) else pin
        self._atten = 0 if atten is None else atten
        self._width = 12

    def atten(self, atten):
        self._atten = atten

    def width(self, width):
        self._width = width

    def read_uv(self):
        uv = _board.adc_uv(self._pin)
        top = self._RANGE_UV[self._atten]
        return top if uv > top else (0 if uv < 0 else uv)

    def read_u16(self):
        raw12 = self.read_uv() * 4095 // self._RANGE_UV[self._atten]
        return (raw12 << 4) | (raw12 >> 8)

    def read(self):
        return self.read_u16() >> (16 - self._width)


class RTC:
    def __init__(self, id=0):
        pass

    def init(self, datetime):
        self.datetime(datetime)

    def datetime(self, datetime=None):
        if datetime is None:
            us = _board.rtc_us()
            t = _time.gmtime(us // 1000000)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], us % 1000000)
        secs = _time.mktime((datetime[0], datetime[1], datetime[2], datetime[4], datetime[5],
                             datetime[6], 0, 0))
        sub = datetime[7] if len(datetime) > 7 else 0
        _board.rtc_set_us(secs * 1000000 + sub)

    def memory(self, data=None):
        if data is None:
            return _board.rtc_memory(None)
        if len(data) > _RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        _board.rtc_memory(bytes(data))


class WDT:
    def __init__(self, id=0, timeout=5000):
        _board.wdt_start(timeout)

    def feed(self):
        _board.wdt_feed()


class Timer:
    ONE_SHOT = const(0)
    PERIODIC = const(1)

    def __init__(self, id=-1, mode=1, period=-1, callback=None, freq=-1):
        self._id = id
        if period > 0 or freq > 0:
            self.init(mode=mode, period=period, callback=callback, freq=freq)

    def init(self, mode=1, period=-1, callback=None, freq=-1):
        if freq > 0:
            period_us = 1000000 // freq
        else:
            period_us = period * 1000
        timer = self

        def fire():
            if callback is not None:
                callback(timer)

        _board.timer_start(self._id, max(1, period_us), mode == 1, fire)

    def deinit(self):
        _board.timer_stop(self._id)

    def value(self):
        return 0


def lightsleep(time_ms=None):
    return _board.lightsleep(time_ms)


def deepsleep(time_ms=None):
    _board.deepsleep(time_ms)


def sleep(time_ms=None):
    return lightsleep(time_ms)


def reset():
    _board.reset(HARD_RESET)


def soft_reset():
    _board.reset(SOFT_RESET)


def reset_cause():
    return _board.reset_cause()


def wake_reason():
    return _board.wake_reason()


def unique_id():
    return _board.unique_id()


def freq(hz=None):
    if hz is None:
        return _board.freq(None)
    _board.freq(hz)


def idle():
    _board.sleep_us(0, 2)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def bootloader():
    _board.reset(HARD_RESET)
