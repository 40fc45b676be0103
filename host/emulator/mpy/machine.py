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


# GPIOs that can be RTC wake sources (ports/esp32/modesp32.h RTC_VALID_EXT_PINS, ESP32)
_RTC_EXT_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def _protected(fn, arg):
    """A callable for the scheduler that runs fn(arg) as mp_sched_run_pending does, through
    mp_call_function_1_protected: an exception is printed and the program goes on."""
    def run():
        try:
            fn(arg)
        except Exception as e:  # noqa: BLE001 - the port catches everything and prints it
            import sys
            sys.print_exception(e)
    return run


def _no_kwargs(kw):
    if kw:  # py/argcheck.c mp_arg_parse_all, with MICROPY_ERROR_REPORTING_NORMAL
        raise TypeError("extra keyword arguments given")


class _PinIRQ:
    """What Pin.irq() returns (machine_pin_irq_type): call it to run the handler."""

    def __init__(self, pin):
        self._pin = pin

    def __call__(self):
        handler = self._pin._handler
        if handler is not None:
            handler(self._pin)

    def trigger(self, trigger=None):
        return self._pin._trigger


class Pin:
    # ports/esp32/machine_pin.c locals: no PULL_HOLD on the ESP32 (pad hold is `hold=`)
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

    def __init__(self, id, *args, **kw):
        self._id = id
        self._handler = None
        self._trigger = 0
        _board.pin_check(id)
        if args or kw:  # machine_pin_make_new: only a Pin(id, ...) with arguments is an init
            self.init(*args, **kw)

    def init(self, mode=None, pull=-1, *, value=None, drive=None, hold=None):
        # mode None leaves the direction alone; pull -1 leaves the pulls alone (None clears)
        _board.pin_init(self._id, -1 if mode is None else mode,
                        -1 if pull == -1 else (0 if pull is None else pull), value, hold)

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

    def toggle(self):
        _board.pin_set(self._id, 0 if _board.pin_get(self._id) else 1)

    def irq(self, handler=None, trigger=3, wake=None, **kw):
        """machine_pin_irq: only handler, trigger and wake (hard= and priority= are TypeErrors,
        all pin IRQs are soft). A level trigger with `wake` makes the pin the ext0 wake source
        and installs no handler; `wake` with an edge trigger is ignored."""
        _no_kwargs(kw)
        pin_id = self._id
        if trigger in (Pin.WAKE_LOW, Pin.WAKE_HIGH) and wake is not None:
            if not isinstance(wake, int) or wake < 2 or wake > 7:
                raise ValueError("bad wake value")
            if pin_id not in _RTC_EXT_PINS:
                raise ValueError("invalid pin for wake")
            ext0 = _board.ext0()
            if ext0 is not None and ext0[0] != pin_id:
                raise ValueError("no resources")
            _board.wake_ext0(pin_id, 1 if trigger == Pin.WAKE_HIGH else 0, wake)
        else:
            ext0 = _board.ext0()
            if ext0 is not None and ext0[0] == pin_id:
                _board.wake_ext0(None, 0)
            if handler is None:
                trigger = 0
            self._handler = handler
            self._trigger = trigger
            fire = _protected(handler, self) if handler is not None else None
            _board.pin_irq(pin_id, trigger, fire, 0)
        return _PinIRQ(self)

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

    # machine_uart.c: baudrate, bits, parity and stop may be positional, the rest keyword-only
    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None,
                 rts=None, cts=None, txbuf=-1, rxbuf=-1, timeout=0, timeout_char=0,
                 invert=0, flow=0):
        self._id = id
        self._timeout_ms = 0
        self.init(baudrate, bits, parity, stop, tx=tx, rx=rx, rts=rts, cts=cts, txbuf=txbuf,
                  rxbuf=rxbuf, timeout=timeout, timeout_char=timeout_char, invert=invert,
                  flow=flow)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None, rts=None,
             cts=None, txbuf=-1, rxbuf=-1, timeout=0, timeout_char=0, invert=0, flow=0):
        # txbuf/rxbuf -1: keep the current size (256 on a fresh UART). machine_uart.c argument
        # checks, then ESP-IDF uart_driver_install (not on the REPL UART 0, which has no
        # driver): both buffers must exceed the 128-byte hardware FIFO (a TX buffer may be 0),
        # else ESP_FAIL, which check_esp_err raises as OSError 1.
        if bits not in (5, 6, 7, 8):
            raise ValueError("invalid data bits")
        if stop not in (1, 2):
            raise ValueError("invalid stop bits")
        if flow & ~3:
            raise ValueError("invalid flow control mask")
        if self._id != 0 and (0 <= rxbuf <= 128 or 0 < txbuf <= 128):
            raise OSError(1, "ESP_FAIL")
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
        # The port writes from the caller's buffer (uart_write_bytes): no copy on the heap.
        return _board.uart_write(self._id, buf.encode() if isinstance(buf, str) else buf)

    def flush(self):
        _board.uart_flush(self._id)

    def txdone(self):
        return _board.uart_txdone(self._id)

    def irq(self, handler=None, trigger=0, hard=False):
        _board.uart_irq(self._id)
        raise OSError("emulator: UART IRQs are not modelled")

    def sendbreak(self):
        pass


# GPIOs with an ADC channel (ports/esp32/machine_adc.c madc_obj, ESP32): ADC1 then ADC2
_ADC_PINS = (36, 37, 38, 39, 32, 33, 34, 35, 4, 0, 2, 15, 13, 12, 14, 27, 25, 26)


class ADC:
    """machine_adc.c (v1.26+, esp_adc oneshot API): the default attenuation is the maximum
    (ATTN_11DB, ~150-2450 mV), width 12 bits; read_uv() goes through the eFuse calibration."""
    ATTN_0DB = const(0)
    ATTN_2_5DB = const(1)
    ATTN_6DB = const(2)
    ATTN_11DB = const(3)
    WIDTH_9BIT = const(9)
    WIDTH_10BIT = const(10)
    WIDTH_11BIT = const(11)
    WIDTH_12BIT = const(12)
    # Upper end of the calibrated range per attenuation, in uV (ESP-IDF ADC oneshot guide,
    # ESP32: 0 dB 100-950 mV, 2.5 dB 100-1250 mV, 6 dB 150-1750 mV, 11 dB 150-2450 mV).
    _RANGE_UV = (950000, 1250000, 1750000, 2450000)

    def __init__(self, pin, *, atten=-1):
        pin_id = pin._id if isinstance(pin, Pin) else pin
        if pin_id not in _ADC_PINS:
            raise ValueError("invalid pin")
        self._pin = pin_id
        self._width = 12  # madc_init_helper resets the block's width to ADC_WIDTH_MAX
        self.atten(self.ATTN_11DB if atten == -1 else atten)

    def init(self, *, atten=-1):
        self.atten(self.ATTN_11DB if atten == -1 else atten)

    def atten(self, atten):
        if atten < self.ATTN_0DB or atten > self.ATTN_11DB:
            raise ValueError("invalid attenuation")
        self._atten = atten

    def width(self, width):
        if width < 9 or width > 12:
            raise ValueError("invalid bit-width")
        self._width = width

    def _raw(self):
        uv = _board.adc_uv(self._pin)
        top = self._RANGE_UV[self._atten]
        uv = top if uv > top else (0 if uv < 0 else uv)
        return uv * ((1 << self._width) - 1) // top

    def read_uv(self):
        # adc.c madcblock_read_uv_helper: the raw reading scaled to 12 bits, then calibrated
        raw12 = self._raw() << (12 - self._width)
        return raw12 * self._RANGE_UV[self._atten] // 4095

    def read_u16(self):
        raw, bits = self._raw(), self._width
        return (raw << (16 - bits)) | (raw >> (2 * bits - 16))

    def read(self):
        return self._raw()


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
        _board.rtc_memory(data)  # the port memcpy()s into RTC RAM: no copy on the heap


class WDT:
    """machine_wdt.c: only id 0; the task watchdog cannot be stopped (no deinit)."""

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError()
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _board.wdt_start(timeout)

    def feed(self):
        _board.wdt_feed()


class Timer:
    """machine_timer.c: hardware timers 0-3 only (virtual timers, Timer(-1), exist only on
    master after v1.28); callbacks go through the scheduler, soft only."""
    ONE_SHOT = const(0)
    PERIODIC = const(1)

    def __init__(self, id, *args, **kw):
        if not 0 <= id < 4:
            raise ValueError("invalid Timer number")
        self._id = id
        if args or kw:
            self.init(*args, **kw)

    def init(self, *, mode=1, callback=None, period=0xffffffff, tick_hz=1000, freq=None,
             hard=False):
        if hard:
            raise ValueError("hard Timers are not implemented")
        if freq is not None:
            period_us = int(1000000 / freq)
        else:
            period_us = period * 1000000 // tick_hz
        fire = _protected(callback, self) if callback is not None else (lambda: None)
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
    # modmachine.c mp_machine_idle is taskYIELD(): it returns at once and the CPU stays
    # active, so a loop around idle() saves no power.
    _board.idle()


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def bootloader():
    _board.reset(HARD_RESET)
