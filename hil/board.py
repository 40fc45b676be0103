"""Board descriptions: data, not code (labgrid's resources). One TOML file per bench board.

    [board]
    name = "bench-1"
    kind = "serial"              # emu | pty | serial | rfc2217 | labgrid
    chip = "esp32"
    device_id = 1004
    capabilities = ["button", "gps", "battery", "power", "test_inject"]

    [console]                    # the board's USB: REPL, deploy, provisioning, log text
    url = "serial:///dev/ttyUSB0"
    reset = "dtr_rts"            # dtr_rts (esptool's classic reset) | power | none

    [link]                       # a USB-serial adapter on the link UART
    url = "serial:///dev/ttyUSB1"
    wake = "rts"                 # rts (RTS drives LINK_WAKE, CTS reads LINK_READY) | side-channel | none
    ready_timeout_ms = 2000

    [power]
    method = "none"              # none | gpio (a relay on a host GPIO) | emu

    [firmware]
    micropython = ""             # the MicroPython .bin `vigil flash` writes ("" = keep)
    test_build = true            # TEST_INJECT compiled in (never on a wearer's device)

A bad file is one line naming the file, the field and the problem (BoardError).
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
KINDS = ("emu", "pty", "serial", "rfc2217", "labgrid", "ble")
CAPABILITIES = ("button", "gps", "battery", "power", "test_inject", "ble", "deep_sleep",
                "outputs", "button_line")
WAKES = ("rts", "side-channel", "none")
RESETS = ("dtr_rts", "power", "none")
POWERS = ("none", "gpio", "emu")


class BoardError(ValueError):
    """A board description that cannot be used; the message is one line."""


@dataclass
class Board:
    name: str
    kind: str
    chip: str = "esp32"
    device_id: int = 1004
    capabilities: tuple = ()
    console_url: str = ""
    reset: str = "none"
    link_url: str = ""
    wake: str = "none"
    ready_timeout_ms: int = 2000
    power: str = "none"
    micropython: str = ""
    test_build: bool = True
    place: str = ""  # labgrid place
    extra: dict = field(default_factory=dict)

    def has(self, capability):
        return capability in self.capabilities


_FIELDS = {
    "board": {"name": str, "kind": str, "chip": str, "device_id": int, "capabilities": list,
              "place": str},
    "console": {"url": str, "reset": str},
    "link": {"url": str, "wake": str, "ready_timeout_ms": int},
    "power": {"method": str},
    "firmware": {"micropython": str, "test_build": bool},
}


def parse(text, source="<board>"):
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BoardError("%s: not TOML: %s" % (source, e)) from None
    for table, value in data.items():
        if table not in _FIELDS:
            raise BoardError("%s: unknown table [%s] (known: %s)"
                             % (source, table, ", ".join(_FIELDS)))
        for key, item in value.items():
            kind = _FIELDS[table].get(key)
            if kind is None:
                raise BoardError("%s: unknown field %s.%s" % (source, table, key))
            if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
                raise BoardError("%s: %s.%s must be a %s" % (source, table, key, kind.__name__))
    b, c, k = data.get("board", {}), data.get("console", {}), data.get("link", {})
    if "name" not in b or "kind" not in b:
        raise BoardError("%s: [board] needs name and kind" % source)
    board = Board(
        name=b["name"], kind=b["kind"], chip=b.get("chip", "esp32"),
        device_id=b.get("device_id", 1004), capabilities=tuple(b.get("capabilities", ())),
        place=b.get("place", ""), console_url=c.get("url", ""), reset=c.get("reset", "none"),
        link_url=k.get("url", ""), wake=k.get("wake", "none"),
        ready_timeout_ms=k.get("ready_timeout_ms", 2000),
        power=data.get("power", {}).get("method", "none"),
        micropython=data.get("firmware", {}).get("micropython", ""),
        test_build=data.get("firmware", {}).get("test_build", True))
    for name, value, allowed in (("board.kind", board.kind, KINDS),
                                 ("link.wake", board.wake, WAKES),
                                 ("console.reset", board.reset, RESETS),
                                 ("power.method", board.power, POWERS)):
        if value not in allowed:
            raise BoardError("%s: %s %r is not one of %s" % (source, name, value, ", ".join(allowed)))
    for cap in board.capabilities:
        if cap not in CAPABILITIES:
            raise BoardError("%s: board.capabilities: unknown %r (known: %s)"
                             % (source, cap, ", ".join(CAPABILITIES)))
    if not 1 <= board.device_id <= 0xFFFFFFFF:
        raise BoardError("%s: board.device_id must be 1..4294967295" % source)
    return board


def load(name_or_path):
    """A board by built-in name (hil/boards/NAME.toml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BOARDS_DIR / (str(name_or_path) + ".toml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BoardError("%s: %s" % (path, e.strerror or e)) from None
    return parse(text, str(path))
