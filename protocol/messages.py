"""The message table of protocol v2 and the payload codec (SPEC.md sections 5 and 6).

Each entry: (type code, name, direction, header struct format, field names, kind). `kind`
names the variable part that follows the fixed fields:
  "" nothing; "fix" one fix record (absent fix = has_fix 0 and a zeroed record);
  "fixes" a count byte then 1..7 fix records; "items" a count byte then (key u8, value i32)
  pairs; "data" the rest of the payload as bytes.
All integers are big-endian.
"""
import binascii
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

UP = "up"
DOWN = "down"
BOTH = "both"

FIX_FORMAT = ">qiihHHHBBB"
FIX_FIELDS = ("fix_time_ms", "lat_e7", "lon_e7", "alt_m", "speed_cmps", "course_cdeg",
              "accuracy_m", "hdop_x10", "sats", "source")
FIX_SIZE = const(27)
MAX_FIXES = const(7)
MAX_CONFIG_ITEMS = const(20)

MESSAGES = (
    (0x01, "HELLO", UP, ">BBBIBIHBI",
     ("fw_major", "fw_minor", "fw_patch", "schema_hash", "reset_cause", "boot_count",
      "config_version", "mode", "interval_s"), ""),
    (0x02, "HEARTBEAT", UP, ">HBBBHIBBI",
     ("battery_mv", "battery_pct", "charging", "link_quality", "queue_depth", "uptime_s",
      "status", "mode", "interval_s"), ""),
    (0x03, "POSITION", UP, ">q", ("send_time_ms",), "fixes"),
    (0x04, "NO_FIX", UP, ">qI", ("send_time_ms", "age_s"), "fix"),
    (0x05, "ALARM", UP, ">HBBq", ("alarm_id", "kind", "state", "raised_time_ms"), "fix"),
    (0x06, "EVENT", UP, ">BqI", ("kind", "time_ms", "value"), ""),
    (0x10, "ACK", BOTH, ">IQ", ("highest", "bitmap"), ""),
    (0x81, "OPERATOR_ACK", DOWN, ">HH", ("alarm_id", "operator_id"), ""),
    (0x82, "CONFIG", DOWN, ">H", ("config_version",), "items"),
    (0x83, "COMMAND", DOWN, ">BH", ("command", "arg"), ""),
    (0x84, "PROXIMITY", DOWN, ">B", ("level",), ""),
    (0x85, "TIME_SYNC", DOWN, ">q", ("utc_ms",), ""),
    (0x86, "TEST_INJECT", DOWN, ">B", ("op",), "data"),
    (0x87, "MODE", DOWN, ">BIqq", ("mode", "offender_id", "valid_from_ms", "valid_until_ms"), ""),
)

# The sizes a frame's sealed part is padded to (SPEC 3.4); part of the schema hash.
SEALED_SIZES = (32, 48, 96, 144, 219)
# The optional fix of NO_FIX and ALARM is named:
FIX_NAME = {"NO_FIX": "last_fix", "ALARM": "fix"}

# CONFIG keys: id -> (name, min, max, default). Units are in the names (SPEC 6.9).
CONFIG_KEYS = {
    1: ("heartbeat_s", 60, 86400, 900),
    2: ("low_battery_heartbeat_s", 300, 86400, 3600),
    3: ("moving_fix_s", 10, 3600, 60),
    4: ("moving_upload_s", 30, 3600, 300),
    5: ("panic_fix_s", 1, 60, 5),
    6: ("panic_upload_s", 1, 300, 10),
    7: ("panic_track_s", 60, 86400, 1800),
    8: ("proximity_fix_s", 5, 300, 15),
    9: ("long_press_ms", 500, 10000, 1500),
    10: ("reachability_s", 5, 3600, 30),
    11: ("no_contact_s", 60, 86400, 1200),
    12: ("gnss_timeout_s", 10, 600, 90),
    13: ("gnss_lost_s", 60, 7200, 600),
    14: ("self_test_s", 3600, 604800, 86400),
    15: ("moving_speed_cmps", 10, 1000, 50),
    16: ("moving_displacement_m", 10, 1000, 50),
    17: ("operator_ack_timeout_s", 10, 3600, 120),
}

BY_NAME = {}
BY_TYPE = {}
for _entry in MESSAGES:
    _code, _name, _direction, _fmt, _fields, _kind = _entry
    _spec = (_code, _name, _direction, _fmt, struct.calcsize(_fmt), _fields, _kind)
    BY_NAME[_name] = _spec
    BY_TYPE[_code] = _spec

_ITEM_FORMAT = ">Bi"
_ITEM_SIZE = const(5)
_ZERO_FIX = bytes(FIX_SIZE)

# Ranges of struct format characters, so that MicroPython (whose struct does not check)
# and CPython refuse the same out-of-range values.
_RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "h": (-0x8000, 0x7FFF), "I": (0, 0xFFFFFFFF),
           "i": (-0x80000000, 0x7FFFFFFF), "Q": (0, 0xFFFFFFFFFFFFFFFF),
           "q": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF)}


def _schema_hash():
    """crc32 of the schema text (SPEC 7; `host_make_vectors.schema_text()` builds it whole),
    fed part by part: on a 48 KiB heap the joined text (~1.2 KB) may find no contiguous
    block at import time."""
    crc = binascii.crc32(b"vigil-v2;")
    crc = binascii.crc32(("sealed:" + ",".join("%d" % n for n in SEALED_SIZES) + ";").encode(),
                         crc)
    for code, name, direction, fmt, fields, kind in MESSAGES:
        crc = binascii.crc32(("%02x:%s:%s:%s:" % (code, name, direction, fmt)).encode(), crc)
        crc = binascii.crc32((",".join(fields) + ":" + kind + ";").encode(), crc)
    crc = binascii.crc32(("fix:%s:%s" % (FIX_FORMAT, ",".join(FIX_FIELDS))).encode(), crc)
    for key in sorted(CONFIG_KEYS):
        crc = binascii.crc32((";cfg:%d:%s:%d:%d" % ((key,) + CONFIG_KEYS[key][:3])).encode(),
                             crc)
    return crc & 0xFFFFFFFF


# Like MAVLink's CRC_EXTRA: any change to the table changes the hash (SPEC 7).
SCHEMA_HASH = _schema_hash()
del _schema_hash  # run once: its bytecode would only hold heap
del _entry, _code, _name, _direction, _fmt, _fields, _kind, _spec


class PayloadError(ValueError):
    """A payload does not match its message's layout or ranges."""


def _check(fmt, values, what):
    for char, value in zip(fmt.lstrip(">"), values):
        low, high = _RANGES[char]
        if not isinstance(value, int) or value < low or value > high:
            raise PayloadError("%s out of range: %r" % (what, value))


def _fix_values(fix):
    try:
        values = [fix[name] for name in FIX_FIELDS]
    except (KeyError, TypeError):
        raise PayloadError("fix needs the keys " + ",".join(FIX_FIELDS))
    _check(FIX_FORMAT, values, "fix field")
    return values


def encode_into(buf, offset, name, fields):
    """Pack the payload of message `name` into `buf` at `offset`; return the end offset."""
    spec = BY_NAME.get(name)
    if spec is None:
        raise PayloadError("unknown message " + str(name))
    code, name, direction, head, head_size, names, kind = spec
    try:
        values = [fields[n] for n in names]
    except KeyError as e:
        raise PayloadError("%s needs field %s" % (name, e.args[0]))
    _check(head, values, name)
    struct.pack_into(head, buf, offset, *values)
    offset += head_size
    if kind == "fix":
        fix = fields.get(FIX_NAME[name])
        if fix is None:
            buf[offset] = 0
            buf[offset + 1:offset + 1 + FIX_SIZE] = _ZERO_FIX
        else:
            buf[offset] = 1
            struct.pack_into(FIX_FORMAT, buf, offset + 1, *_fix_values(fix))
        offset += 1 + FIX_SIZE
    elif kind == "fixes":
        fixes = fields["fixes"]
        if not 1 <= len(fixes) <= MAX_FIXES:
            raise PayloadError("POSITION carries 1 to %d fixes, not %d" % (MAX_FIXES, len(fixes)))
        buf[offset] = len(fixes)
        offset += 1
        for fix in fixes:
            struct.pack_into(FIX_FORMAT, buf, offset, *_fix_values(fix))
            offset += FIX_SIZE
    elif kind == "items":
        items = fields["items"]
        if len(items) > MAX_CONFIG_ITEMS:
            raise PayloadError("CONFIG carries at most %d items" % MAX_CONFIG_ITEMS)
        buf[offset] = len(items)
        offset += 1
        for key, value in items:
            _check_config(key, value)
            struct.pack_into(_ITEM_FORMAT, buf, offset, key, value)
            offset += _ITEM_SIZE
    elif kind == "data":
        data = fields["data"]
        if offset + len(data) > len(buf):
            # A slice assignment past the end would grow the preallocated buffer for good.
            raise PayloadError("%s payload exceeds the buffer" % name)
        buf[offset:offset + len(data)] = data
        offset += len(data)
    return offset


def _check_config(key, value):
    limits = CONFIG_KEYS.get(key)
    if limits is None:
        raise PayloadError("unknown config key %r" % (key,))
    if not isinstance(value, int) or value < limits[1] or value > limits[2]:
        raise PayloadError("config %s=%r outside %d..%d" % (limits[0], value, limits[1], limits[2]))


def _fill(names, values):
    # dict.fromkeys sizes the table once; dict(zip()) grows it key by key, reallocating it
    # several times, and on a small MicroPython heap allocations are what cost.
    fields = dict.fromkeys(names)
    for i in range(len(names)):
        fields[names[i]] = values[i]
    return fields


def _fix_dict(values):
    return _fill(FIX_FIELDS, values)


def decode(code, payload):
    """Decode a payload of message type `code`: returns (name, fields).
    Raises PayloadError on any mismatch; never another exception for bytes input."""
    spec = BY_TYPE.get(code)
    if spec is None:
        raise PayloadError("unknown type")
    code, name, direction, head, head_size, names, kind = spec
    size = len(payload)
    if size < head_size:
        raise PayloadError("%s payload too short" % name)
    fields = _fill(names, struct.unpack_from(head, payload, 0))
    offset = head_size
    if kind == "":
        if size != offset:
            raise PayloadError("%s payload has %d extra bytes" % (name, size - offset))
    elif kind == "fix":
        if size != offset + 1 + FIX_SIZE:
            raise PayloadError("%s payload has the wrong length" % name)
        has_fix = payload[offset]
        if has_fix > 1:
            raise PayloadError("%s has_fix must be 0 or 1" % name)
        fields[FIX_NAME[name]] = _fix_dict(struct.unpack_from(FIX_FORMAT, payload, offset + 1)) if has_fix else None
    elif kind == "fixes":
        if size < offset + 1:
            raise PayloadError("POSITION payload too short")
        count = payload[offset]
        if not 1 <= count <= MAX_FIXES or size != offset + 1 + count * FIX_SIZE:
            raise PayloadError("POSITION fix count does not match its length")
        offset += 1
        fixes = []
        for _ in range(count):
            fixes.append(_fix_dict(struct.unpack_from(FIX_FORMAT, payload, offset)))
            offset += FIX_SIZE
        fields["fixes"] = fixes
    elif kind == "items":
        if size < offset + 1:
            raise PayloadError("CONFIG payload too short")
        count = payload[offset]
        if count > MAX_CONFIG_ITEMS or size != offset + 1 + count * _ITEM_SIZE:
            raise PayloadError("CONFIG item count does not match its length")
        offset += 1
        items = []
        for _ in range(count):
            key, value = struct.unpack_from(_ITEM_FORMAT, payload, offset)
            _check_config(key, value)
            items.append((key, value))
            offset += _ITEM_SIZE
        fields["items"] = items
    else:  # data
        fields["data"] = bytes(payload[offset:])
    return name, fields
