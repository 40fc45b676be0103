"""`vigil flash --port P --firmware MICROPYTHON.bin [--chip esp32]`: esptool detects the
chip, erases the flash and writes MicroPython (at 0x1000 on an ESP32).

Before touching the board: the image must be an ESP image for the chip asked for (its
header names the chip), the port must exist and be free. esptool's own failures (no
answer, wrong chip) become one line.
"""
import argparse
import struct
import sys
from pathlib import Path

from host.board_port import PortError, check_port

# The chip id in an ESP image's extended header (esptool's CHIP_ID of each ROM class).
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12,
            "esp32c6": 13, "esp32h2": 16}
OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000}  # others start at 0


def image_chip(data):
    """The chip an ESP image was built for, from its header (magic 0xE9, chip id at 12)."""
    if len(data) < 24 or data[0] != 0xE9:
        raise PortError("not an ESP firmware image (no 0xE9 header)")
    chip_id = struct.unpack_from("<H", data, 12)[0]
    for name, value in CHIP_IDS.items():
        if value == chip_id:
            return name
    raise PortError("firmware image for an unknown chip id %d" % chip_id)


def flash(port, firmware, chip="esp32", baud=460800):
    path = Path(firmware)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PortError("%s: %s" % (firmware, e.strerror or e)) from None
    built_for = image_chip(data)
    if built_for != chip:
        raise PortError("%s is built for %s, not %s (wrong chip)" % (firmware, built_for, chip))
    check_port(port)
    import esptool

    try:
        esptool.main(["--chip", chip, "--port", port, "erase-flash"])
        esptool.main(["--chip", chip, "--port", port, "--baud", str(baud), "write-flash", "-z",
                      hex(OFFSETS.get(chip, 0)), str(path)])
    except esptool.FatalError as e:
        text = " ".join(str(e).split())
        if "is not" in text or "Wrong" in text or "chip" in text.lower() and "detect" in text.lower():
            raise PortError("%s: wrong chip: %s" % (port, text)) from None
        raise PortError("%s: %s" % (port, text)) from None
    except (OSError, SystemExit) as e:
        raise PortError("%s: esptool: %s" % (port, " ".join(str(e).split()) or "failed")) from None


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil flash", description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True)
    parser.add_argument("--firmware", required=True, help="a MicroPython .bin for the chip")
    parser.add_argument("--chip", default="esp32", choices=sorted(CHIP_IDS))
    parser.add_argument("--baud", type=int, default=460800)
    args = parser.parse_args(argv)
    try:
        flash(args.port, args.firmware, args.chip, args.baud)
    except PortError as e:
        print("vigil flash: %s" % e, file=sys.stderr)
        return 2
    print("flashed %s onto %s" % (args.firmware, args.port))
    return 0
