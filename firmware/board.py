"""The ESP32 board layer: builds the hardware from a pin table, on request only.

    hw = board.Board(machine, esp32, time, pins, select)   # main.py hands in the modules;
                                  # select=None: wait() sleeps instead of polling the UARTs
    hw.button_pin, hw.gnss_uart, hw.gnss_en, hw.battery_adc, hw.charger_pin, hw.led_pin,
    hw.haptic_pin, hw.link_uart, hw.link_wake, hw.link_ready, hw.rtc, hw.machine, hw.esp32,
    hw.time, hw.pins, hw.ticks_ms()
    (link_uart, link_wake and link_ready are None on a board linked over BLE: LINK_KIND)
    hw.reset_cause, hw.woke_by_button, hw.device_id      # this boot's, read at the build

Everything the firmware touches on the hardware goes through this object, so the emulator
(which provides the same modules) and tests can hand in their own. The rules it follows are
in docs/HARDWARE.md and docs/LINK.md.
"""


class Board:
    def __init__(self, machine, esp32, time, pins, select=None):
        Pin = machine.Pin
        self.machine = machine
        self.esp32 = esp32
        self.time = time
        self.ticks_ms = time.ticks_ms
        self.pins = pins
        # Outputs first, releasing the hold that kept them low through deep sleep (a held pad
        # ignores writes until gpio_hold_dis).
        self.gnss_en = Pin(pins.GNSS_EN_PIN, Pin.OUT, value=0, hold=False)
        self.led_pin = Pin(pins.LED_PIN, Pin.OUT, value=0, hold=False)
        self.haptic_pin = Pin(pins.HAPTIC_PIN, Pin.OUT, value=0, hold=False)
        # A board linked over BLE has no link UART, wake line or LINK_READY wired.
        wired = getattr(pins, "LINK_KIND", "uart") != "ble"
        self.link_ready = self.link_wake = self.link_uart = None
        if wired:
            self.link_ready = Pin(pins.LINK_READY_PIN, Pin.OUT, value=0, hold=False)
        self.button_pin = Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP)
        if wired:
            self.link_wake = Pin(pins.LINK_WAKE_PIN, Pin.IN, Pin.PULL_UP)
        self.gnss_uart = machine.UART(pins.GNSS_UART_ID, baudrate=pins.GNSS_BAUD,
                                      tx=pins.GNSS_TX_PIN, rx=pins.GNSS_RX_PIN,
                                      rxbuf=pins.GNSS_RXBUF)
        self.battery_adc = machine.ADC(Pin(pins.BATTERY_ADC_PIN))
        # The divided cell voltage (up to 2.1 V) needs the 11 dB range (150..2450 mV). It is
        # the port's default, but a board file must not depend on a default.
        self.battery_adc.atten(machine.ADC.ATTN_11DB)
        self.charger_pin = Pin(pins.CHARGER_SENSE_PIN, Pin.IN)
        if wired:
            self.link_uart = machine.UART(pins.LINK_UART_ID, baudrate=pins.LINK_BAUD,
                                          tx=pins.LINK_TX_PIN, rx=pins.LINK_RX_PIN,
                                          rxbuf=pins.LINK_RXBUF)
        self.rtc = machine.RTC()
        # Facts of this boot, for the app's start. The HELLO reset cause (protocol.messages
        # RESET_*):
        cause = machine.reset_cause()
        causes = (machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET,
                  machine.DEEPSLEEP_RESET, machine.SOFT_RESET)
        self.reset_cause = causes.index(cause) + 1 if cause in causes else 6
        self.woke_by_button = machine.wake_reason() == machine.EXT0_WAKE
        # A 32-bit id from the chip's unique id (used only until provisioning says).
        self.device_id = int.from_bytes(machine.unique_id()[-4:], "big")
        self._poller = None
        if select is not None:
            self._poller = select.poll()
            if wired:
                self._poller.register(self.link_uart, select.POLLIN)
            self._poller.register(self.gnss_uart, select.POLLIN)

    def wait(self, ms):
        """Stay awake up to ms; back early when the link or GNSS UART has bytes (a pin IRQ
        also ends the wait). The CPU hears its UARTs only while awake (docs/LINK.md)."""
        if self._poller is None:
            self.time.sleep_ms(ms)
        else:
            self._poller.poll(ms)

    def watchdog(self):
        return self.machine.WDT(timeout=self.pins.WDT_TIMEOUT_MS)

    def cpu_slow(self, slow):
        """80 MHz while the CPU mostly waits awake for the GNSS (it cannot light-sleep then):
        25.5 instead of 35.5 mA (ESP32 datasheet, Modem-sleep); 160 MHz, MicroPython's
        default, otherwise."""
        self.machine.freq(80000000 if slow else 160000000)

    def arm_wakes(self):
        """Wake from light and deep sleep on a press (ext0, level 0) or when the link's peer
        pulls the wake line low (ext1, ALL_LOW on its one pin). Nothing else can wake the
        chip: a UART hears nothing in sleep (docs/LINK.md)."""
        esp32 = self.esp32
        # The stub declares wake_on_ext0 positional-only; the port takes pin=, level= too.
        esp32.wake_on_ext0(self.button_pin, esp32.WAKEUP_ALL_LOW)
        if self.link_wake is not None:
            esp32.wake_on_ext1((self.link_wake,), esp32.WAKEUP_ALL_LOW)

    def ready(self, listening):
        """LINK_READY: 1 while the link UART is heard, 0 before any sleep."""
        if self.link_ready is not None:
            self.link_ready.value(1 if listening else 0)

    def link_wake_asserted(self):
        return self.link_wake is not None and self.link_wake.value() == 0

    def after_light_sleep(self):
        """ext0/ext1 leave their pads on the RTC mux; only a mode-setting init gives them back
        to the GPIO matrix (machine_pin.c rtc_gpio_deinit). Until then the button can read
        pressed and fire no edges."""
        Pin = self.machine.Pin
        self.button_pin.init(Pin.IN, Pin.PULL_UP)
        if self.link_wake is not None:
            self.link_wake.init(Pin.IN, Pin.PULL_UP)

    def hold_outputs(self):
        """Before deep sleep: the digital outputs stop, so each output pad would float.
        Hold their levels (all four are RTC GPIOs, which keep a hold through deep sleep)."""
        for pin in (self.gnss_en, self.led_pin, self.haptic_pin, self.link_ready):
            if pin is not None:
                pin.init(hold=True)
