# vigil frozen into your own MicroPython build (docs/HARDWARE.md, "RAM and boot time").
#
# Frozen modules run from flash in place: their bytecode takes no heap. Imported as .mpy from
# littlefs, the same firmware costs about 72 KB of heap before it runs (32-bit measurement,
# ../shared/NOTES.md); frozen, about 16 KB. Build:
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/vigil/manifest.py
#
# then flash it with `vigil flash` (or esptool) and put only /main.py, /boot.py, the key and
# the config on the filesystem (`vigil deploy --frozen`). main.py and boot.py stay files: the
# board runs them from the filesystem.
include("$(PORT_DIR)/boards/manifest.py")

FIRMWARE = ["__init__.py", "alarm.py", "app.py", "battery.py", "ble.py", "blestart.py",
            "board.py", "bootguard.py", "button.py", "clock.py", "config.py", "core.py",
            "gnss.py", "link.py", "orders.py", "outputs.py", "pairing.py", "persist.py",
            "pins.py", "positioning.py", "power.py", "safemode.py", "startup.py", "store.py"]
PROTOCOL = ["__init__.py", "codec.py", "config_keys.py", "crypto.py", "framing.py", "messages.py"]

package("firmware", files=FIRMWARE, base_path=".", opt=3)
package("protocol", files=PROTOCOL, base_path=".", opt=3)
