"""Views of the protocol v2 tables for the host tools (SPEC.md sections 5, 6, 8 and 9).

Host only (never deployed): `protocol.messages` and `protocol.codec` keep one table and what
the device uses; every byte of heap they hold is the device's. The lookups by name and type,
the value ranges of the struct formats, the refusal reasons and the flag rules that host
tools, tests and the dissector read are derived here.
"""
import struct

from protocol import codec, messages

# The device's private constants (free there: mpy-cross inlines them), by their public names.
VERSION = codec._VERSION
HEADER_SIZE = codec._HEADER_SIZE
INNER_SIZE = codec._INNER_SIZE
CRC_SIZE = codec._CRC_SIZE
MAX_FRAME = codec._MAX_FRAME
MAX_PAYLOAD = codec._MAX_PAYLOAD
MIN_FRAME = codec._MIN_FRAME
MAX_WIRE = codec._MAX_WIRE
REPLAY_WINDOW = codec._REPLAY_WINDOW
FLAG_ACK_REQ = codec._FLAG_ACK_REQ
FLAG_TEST = codec._FLAG_TEST
KNOWN_FLAGS = codec._KNOWN_FLAGS
FLAG_DOWNLINK = codec._FLAG_DOWNLINK
FIX_SIZE = messages._FIX_SIZE
MAX_FIXES = messages._MAX_FIXES
MAX_CONFIG_ITEMS = messages._MAX_CONFIG_ITEMS

UP = "up"
DOWN = "down"
BOTH = "both"

# name or type code -> (code, name, direction, header format, header size, field names, kind)
BY_NAME = {}
BY_TYPE = {}
for _code, _name, _direction, _fmt, _fields, _kind in messages.MESSAGES:
    BY_NAME[_name] = BY_TYPE[_code] = (_code, _name, _direction, _fmt, struct.calcsize(_fmt),
                                       _fields, _kind)
del _code, _name, _direction, _fmt, _fields, _kind

# struct format character -> (lowest, highest) value the codec accepts.
RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "h": (-0x8000, 0x7FFF), "I": (0, 0xFFFFFFFF),
          "i": (-0x80000000, 0x7FFFFFFF), "Q": (0, 0xFFFFFFFFFFFFFFFF),
          "q": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF)}

# Every FrameError.reason a receiver gives (SPEC 9).
REASONS = ("bad_cobs", "bad_crc", "truncated", "oversize", "bad_version", "unknown_type",
           "unknown_key", "bad_tag", "replayed", "bad_payload", "wrong_direction", "test_only")


def default_flags(name):
    """The flags SPEC 8 asks for, as codec.Sender sets them: every frame but ACK asks for a
    transport ACK."""
    return 0 if name == "ACK" else FLAG_ACK_REQ


def version_detail(version):
    """The detail of a bad_version refusal, as codec.Receiver words it."""
    return "v%d frame, v2 expected" % version
