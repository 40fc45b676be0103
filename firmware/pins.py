"""The board's pin table (docs/LINK.md): an ESP32-WROOM-32 on a DevKitC or the product board.
Another board = another table. Strapping pins (0, 2, 5, 12, 15) and flash pins (6-11) stay
free: a button on GPIO0 held through a reset would start the ROM downloader instead."""
PANIC_BUTTON_PIN = 33     # RTC GPIO, active low, internal pull-up, ext0 wake at level 0
SAFE_MODE_PIN = 13        # RTC GPIO, pull-up; a jumper to GND at boot = safe mode
GNSS_UART_ID = 2
GNSS_TX_PIN = 17
GNSS_RX_PIN = 16
GNSS_BAUD = 9600
GNSS_EN_PIN = 4           # RTC GPIO, high = GNSS powered; held low through deep sleep
BATTERY_ADC_PIN = 34      # ADC1, through a 2:1 divider: read_uv() * 2 = battery uV
BATTERY_DIVIDER = 2
CHARGER_SENSE_PIN = 35    # high = charger connected
LED_PIN = 26              # RTC GPIO, high = on
HAPTIC_PIN = 25           # RTC GPIO, high = motor on
LINK_UART_ID = 1          # the link's own UART; UART0 stays the REPL
LINK_TX_PIN = 18
LINK_RX_PIN = 19
LINK_BAUD = 115200
LINK_RXBUF = 1024         # holds a burst of downlinks sent while the device is ready
LINK_WAKE_PIN = 32        # RTC GPIO, pull-up; the peer pulls it low to ask for attention (ext1)
LINK_READY_PIN = 27       # RTC GPIO, 1 = awake and listening on the link UART
GNSS_RXBUF = 1024
# The least time from a deep-sleep wake to main.py seeing the button: the emulator's modelled
# boot (board profile boot_ms, docs/HARDWARE.md); a real board is slower, so a press that woke
# the board had been held at least this long when the firmware first sees it.
DEEP_WAKE_BOOT_MS = 600
WDT_TIMEOUT_MS = 60000    # longer than the longest light sleep between watchdog feeds
