"""ESP32-DevKitC default pin table (docs/CONTRACTS.md). Another board = another table."""
PANIC_BUTTON_PIN = 0      # BOOT button: active low, internal pull-up, ext0 wake at level 0
GNSS_UART_ID = 2
GNSS_TX_PIN = 17
GNSS_RX_PIN = 16
GNSS_BAUD = 9600
GNSS_EN_PIN = 4           # high = GNSS powered
BATTERY_ADC_PIN = 34      # through a 2:1 divider: read_uv() * 2 = battery µV
BATTERY_DIVIDER = 2
CHARGER_SENSE_PIN = 35    # high = charger connected
LED_PIN = 2               # high = on
HAPTIC_PIN = 25           # high = motor on
LINK_UART_ID = 0          # shares the REPL's USB bridge: log text may sit between frames
LINK_TX_PIN = 1
LINK_RX_PIN = 3
LINK_BAUD = 115200
LINK_RXBUF = 1024         # holds the downlinks a gateway delivers in one listen window
GNSS_RXBUF = 1024
# The least time from a deep-sleep wake to main.py (MicroPython takes ~0.3-1 s): a press
# that woke the board had been held at least this long when the firmware first sees it.
DEEP_WAKE_BOOT_MS = 300
WDT_TIMEOUT_MS = 60000    # longer than the longest light sleep (reachability bound)
