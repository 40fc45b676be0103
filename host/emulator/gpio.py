"""The emulated ESP32's GPIO pads: levels, pulls, IRQ edges, wake levels, pad hold, the RTC
mux that ext0/ext1 leave behind, floating outputs in deep sleep, and strapping at reset.

Every rule here is in docs/HARDWARE.md ("Pins" and "Sleep and wake"), with its source.
`GpioBus` is a mixin of `EmulatedDevice`: it uses the device's `world`, `_state`, `_pending`,
`_kick`, `_wake` and `_guard`.
"""
import collections

from .states import EXT0_WAKE, EXT1_WAKE

# Pin modes and constants: the ESP32 port's values (as in mpy/machine.py).
PIN_IN = 1
PIN_OUT_MODES = (3, 7)
PULL_UP, PULL_DOWN = 2, 1
IRQ_RISING, IRQ_FALLING, WAKE_LOW, WAKE_HIGH = 1, 2, 4, 5
SLEEP_BIT, DEEPSLEEP_BIT = 2, 4

# GPIOs of an ESP32-WROOM-32 (6-11 drive the flash); 34-39 are inputs only.
VALID_PINS = frozenset([0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26,
                        27, 32, 33, 34, 35, 36, 37, 38, 39])
INPUT_ONLY_PINS = frozenset(range(34, 40))
# RTC GPIOs (ESP32 datasheet, "RTC and Low-Power Management", RTC_GPIO0-17): the only pads
# that ext0/ext1 can watch and that keep a held level through deep sleep on their own.
RTC_PINS = frozenset([0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39])
# Strapping pins latched at a chip reset (ESP32 datasheet, "Strapping Pins"): GPIO0 low =
# ROM download mode; GPIO12 (MTDI) high = 1.8 V flash supply, so a 3.3 V flash cannot boot.
STRAP_BOOT_PIN = 0
STRAP_FLASH_VOLTAGE_PIN = 12
# The chip's own weak pulls on those pins at reset (same table): GPIO0 up, GPIO12 down.
_STRAP_DEFAULT = {STRAP_BOOT_PIN: 1, STRAP_FLASH_VOLTAGE_PIN: 0}


class PadState:
    __slots__ = ("mode", "pull", "out", "ext", "irq_trigger", "irq_fn", "irq_wake", "hold",
                 "held_level", "rtc_mux", "driving")

    def __init__(self):
        self.mode = PIN_IN
        self.pull = None
        self.out = 0
        self.ext = None          # level driven by the outside circuit, None = not driven
        self.irq_trigger = 0
        self.irq_fn = None
        self.irq_wake = 0
        self.hold = False        # gpio_hold_en: the pad keeps held_level whatever is written
        self.held_level = None
        self.rtc_mux = False     # left on the RTC IO mux by an ext0/ext1 sleep
        self.driving = None      # what the pad drives outward now (0, 1, None = floating)

    def is_output(self):
        return self.mode in PIN_OUT_MODES

    def level(self):
        """The level at the pad, as an input would read it."""
        if self.driving is not None:
            return self.driving
        if self.ext is not None:
            return self.ext
        return 1 if self.pull == PULL_UP else 0


class GpioBus:
    """Pin behaviour of the emulated board (mixin of EmulatedDevice)."""

    def _init_gpio(self, external_pull_down=()):
        self._pins = {n: PadState() for n in VALID_PINS}
        self._out_listeners = collections.defaultdict(list)
        self._external_pull_down = frozenset(external_pull_down)
        self._deep_sleep_hold = False          # esp32.gpio_deep_sleep_hold()
        self._ext0 = None
        self._ext1 = None

    # --- the outside circuit -----------------------------------------------------------
    def drive_pin(self, pin, level):
        """The outside circuit drives `pin` to `level` (0/1), or releases it (None)."""
        p = self._pins[pin]
        old = p.level()
        p.ext = level
        new = p.level()
        if old != new:
            self._edge(pin, p, new)
        if self._state in ("light", "deep"):
            reason = self._wake_level_reason()
            if reason:
                self._wake(reason)

    def pin_level(self, pin):
        return self._pins[pin].level()

    def pin_driven(self, pin):
        """What the board drives on `pin`: 0, 1, or None (not driving: floating or input)."""
        return self._pins[pin].driving

    def on_output(self, pin, fn):
        """Call fn(level) whenever what the board drives on `pin` changes: 0, 1, or None when
        the pad floats (the outside circuit then decides; peripherals assume the worse)."""
        self._out_listeners[pin].append(fn)

    def _update_pad(self, pin, p):
        if p.hold:
            new = p.held_level
        elif p.is_output():
            new = p.out
        else:
            new = None
        if new is None and pin in self._external_pull_down:
            new_out = 0
        else:
            new_out = new
        if new_out != p.driving:
            old_level = p.level()
            p.driving = new_out
            for fn in self._out_listeners.get(pin, ()):
                fn(new_out)
            if p.level() != old_level:
                self._edge(pin, p, p.level())

    # --- the bus (firmware thread) -----------------------------------------------------
    def bus_pin_check(self, pin):
        if pin not in VALID_PINS:
            raise ValueError("invalid pin")

    def bus_pin_init(self, pin, mode, pull, value, hold=None):
        self._guard()
        p = self._pins[pin]
        if value is not None:
            p.out = 1 if value else 0
        if mode != -1 and mode is not None:
            if mode in PIN_OUT_MODES and pin in INPUT_ONLY_PINS:
                raise ValueError("pin can only be input")
            p.mode = mode
            p.rtc_mux = False          # rtc_gpio_deinit: the pad is digital again
        if pull != -1:
            p.pull = pull
        if hold is not None:
            # machine_pin.c: gpio_hold_dis() applies the new config, then gpio_hold_en().
            p.hold = bool(hold)
            p.held_level = (p.out if p.is_output() else None) if p.hold else None
        self._update_pad(pin, p)

    def bus_pin_get(self, pin):
        self._guard()
        p = self._pins[pin]
        if p.rtc_mux:
            # Worse case, not measured: the digital input path of a pad left on the RTC mux
            # reads 0 until Pin.init(mode) gives the pad back (docs/HARDWARE.md).
            return 0
        return p.level()

    def bus_pin_set(self, pin, level):
        self._guard()
        p = self._pins[pin]
        p.out = 1 if level else 0
        self._update_pad(pin, p)

    def bus_pin_irq(self, pin, trigger, fn, wake):
        # mpy/machine.py does machine_pin.c's argument work (a level trigger with wake=
        # claims ext0 and installs no handler); this is the handler and its trigger.
        p = self._pins[pin]
        p.irq_fn = fn
        p.irq_trigger = trigger if fn is not None else 0
        p.irq_wake = wake if fn is not None else 0

    def bus_wake_ext0(self, pin, level, wake_types=SLEEP_BIT | DEEPSLEEP_BIT):
        """esp32.wake_on_ext0 arms both sleeps (modesp32.c); Pin.irq(wake=) the ones named."""
        if pin is not None and pin not in RTC_PINS:
            raise ValueError("invalid pin")
        self._ext0 = None if pin is None else (pin, level, wake_types)

    def bus_ext0(self):
        return self._ext0

    def bus_wake_ext1(self, pins, level):
        for pin in pins:
            if pin not in RTC_PINS:
                raise ValueError("invalid pin")
        self._ext1 = (list(pins), level) if pins else None

    def bus_gpio_deep_sleep_hold(self, enable):
        self._deep_sleep_hold = bool(enable)

    # --- edges and wakes ---------------------------------------------------------------
    def _edge(self, pin, p, level):
        trig = p.irq_trigger
        if p.irq_fn is None:
            return
        if trig == WAKE_LOW:
            match = level == 0
        elif trig == WAKE_HIGH:
            match = level == 1
        else:
            match = trig & (IRQ_RISING if level else IRQ_FALLING)
        if not match:
            return
        state = self._state
        if p.rtc_mux and state not in ("light", "deep"):
            # The pad is on the RTC mux: the GPIO matrix sees no edge (docs/HARDWARE.md).
            self.world.record(self.device_id, "irq_lost", "%d rtc mux" % pin)
            return
        if state in ("run", "wait", "idle", "repl"):
            self._pending.append(p.irq_fn)
            if state != "run":
                self._kick()
        elif state == "light":
            # GPIO interrupts are not serviced in light sleep; the level wakes (ext0/ext1)
            # are separate (machine_sleep_helper arms only timer, ext0, ext1, touch, ULP).
            self.world.record(self.device_id, "irq_lost", pin)

    def _wake_bit(self):
        return SLEEP_BIT if self._state == "light" else DEEPSLEEP_BIT

    def _wake_level_reason(self):
        """A level-triggered wake source (ext0, ext1) that is active now."""
        bit = self._wake_bit()
        if self._ext0 is not None:
            pin, level, types = self._ext0
            if types & bit and self._pins[pin].level() == level:
                return EXT0_WAKE
        if self._ext1 is not None:
            pins, level = self._ext1
            levels = [self._pins[n].level() for n in pins]
            if pins and (any(levels) if level else not any(levels)):
                return EXT1_WAKE
        return 0

    def _after_light_sleep_pads(self):
        """ext0/ext1 put their pads on the RTC mux for the sleep (ESP-IDF sleep_modes.c,
        ext0_wakeup_prepare / ext1 wakeup prepare); nothing gives them back but a mode-setting
        Pin.init (machine_pin.c rtc_gpio_deinit)."""
        bit = SLEEP_BIT
        if self._ext0 is not None and self._ext0[2] & bit:
            self._pins[self._ext0[0]].rtc_mux = True
        if self._ext1 is not None:
            for pin in self._ext1[0]:
                self._pins[pin].rtc_mux = True

    def _enter_deep_sleep_pads(self):
        """In deep sleep the digital outputs stop: a pad keeps its level only if held, and a
        digital (non-RTC) pad only with gpio_deep_sleep_hold as well (ESP-IDF gpio.h)."""
        for pin, p in self._pins.items():
            if p.hold and (pin in RTC_PINS or self._deep_sleep_hold):
                continue
            was = p.driving
            p.mode = PIN_IN
            p.hold = False
            p.held_level = None
            self._update_pad(pin, p)
            if was is not None and p.driving is None:
                self.world.record(self.device_id, "pin_floating", pin)

    def _reset_pads(self, power_cut):
        """A reset returns every pad to an input; a hold survives anything but a power cut
        (the RTC domain keeps it), as does a pull (the RTC pad's in deep sleep)."""
        for pin, p in self._pins.items():
            p.mode = PIN_IN
            p.out = 0
            p.rtc_mux = False
            p.irq_fn, p.irq_trigger, p.irq_wake = None, 0, 0
            if power_cut:
                p.hold, p.held_level, p.pull = False, None, None
            self._update_pad(pin, p)
        self._ext0 = self._ext1 = None
        if power_cut:
            self._deep_sleep_hold = False

    def _strapping_fault(self):
        """What the ROM does with the strapping pins at a chip reset, or None for a boot."""
        def at_reset(pin):
            ext = self._pins[pin].ext
            return _STRAP_DEFAULT[pin] if ext is None else ext
        if at_reset(STRAP_BOOT_PIN) == 0:
            return "GPIO0 low at reset: ROM download mode (waiting for download)"
        if at_reset(STRAP_FLASH_VOLTAGE_PIN) == 1:
            return "GPIO12 high at reset: flash supply set to 1.8 V, flash read error"
        return None
