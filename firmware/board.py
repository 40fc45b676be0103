"""The ESP32 board layer: builds the hardware from a pin table, on request only.

    hw = board.build()            # imports machine/esp32/time now, not at import time
    hw.button_pin, hw.gnss_uart, hw.gnss_en, hw.battery_adc, hw.charger_pin, hw.led_pin,
    hw.haptic_pin, hw.link_uart, hw.rtc, hw.machine, hw.esp32, hw.time

Everything the firmware touches on the hardware goes through this object, so the emulator
(which provides the same modules) and tests can hand in their own.
"""


class Board:
    def __init__(self, machine, esp32, time, pins):
        Pin = machine.Pin
        self.machine = machine
        self.esp32 = esp32
        self.time = time
        self.pins = pins
        self.button_pin = Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP)
        self.gnss_en = Pin(pins.GNSS_EN_PIN, Pin.OUT, value=0)
        self.gnss_uart = machine.UART(pins.GNSS_UART_ID, baudrate=pins.GNSS_BAUD,
                                      tx=pins.GNSS_TX_PIN, rx=pins.GNSS_RX_PIN,
                                      rxbuf=pins.GNSS_RXBUF)
        self.battery_adc = machine.ADC(Pin(pins.BATTERY_ADC_PIN))
        # The divided cell voltage (up to 2.1 V) needs the 11 dB range (150..2450 mV);
        # at the 0 dB default the ADC saturates at 950 mV and reads an empty battery.
        self.battery_adc.atten(machine.ADC.ATTN_11DB)
        self.charger_pin = Pin(pins.CHARGER_SENSE_PIN, Pin.IN)
        self.led_pin = Pin(pins.LED_PIN, Pin.OUT, value=0)
        self.haptic_pin = Pin(pins.HAPTIC_PIN, Pin.OUT, value=0)
        self.link_uart = machine.UART(pins.LINK_UART_ID, baudrate=pins.LINK_BAUD,
                                      tx=pins.LINK_TX_PIN, rx=pins.LINK_RX_PIN,
                                      rxbuf=pins.LINK_RXBUF)
        self.rtc = machine.RTC()

    def ticks_ms(self):
        return self.time.ticks_ms()

    def watchdog(self):
        return self.machine.WDT(timeout=self.pins.WDT_TIMEOUT_MS)

    def arm_button_wake(self):
        # Wake from light and deep sleep when the panic button goes low (pressed).
        # The stub declares wake_on_ext0 positional-only; the port takes pin=, level= too.
        self.esp32.wake_on_ext0(self.button_pin, self.esp32.WAKEUP_ALL_LOW)

    def reset_cause(self):
        """The HELLO reset cause (protocol.messages RESET_*)."""
        m = self.machine
        cause = m.reset_cause()
        table = ((m.PWRON_RESET, 1), (m.HARD_RESET, 2), (m.WDT_RESET, 3),
                 (m.DEEPSLEEP_RESET, 4), (m.SOFT_RESET, 5))
        for value, code in table:
            if cause == value:
                return code
        return 6

    def woke_by_button(self):
        return self.machine.wake_reason() == self.machine.EXT0_WAKE

    def device_id(self):
        """A 32-bit id from the chip's unique id (used only until provisioning says)."""
        uid = self.machine.unique_id()
        value = 0
        for byte in uid[-4:]:
            value = (value << 8) | byte
        return value


def build(pins=None):
    import time

    import esp32
    import machine
    if pins is None:
        from firmware import pins as default_pins
        pins = default_pins
    return Board(machine, esp32, time, pins)
