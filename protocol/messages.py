"""The message table of protocol v2 and the payload codec (SPEC.md sections 5 and 6).

Each entry: (type code, name, direction, header struct format, field names, kind). `kind`
names the variable part that follows the fixed fields:
  "" nothing; "fix" one fix record (absent fix = has_fix 0 and a zeroed record);
  "fixes" a count byte then 1..7 fix records; "items" a count byte then (key u8, value i32)
  pairs; "data" the rest of the payload as bytes.
All integers are big-endian.

This module is deployed, so it holds only what the device uses: one table, looked up by
`find`. The host's views of it (by name, by type, value ranges) are in protocol/host_tables.py.
"""
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

def _names(*names):
    """`names` as a tuple built at import. mpy-cross folds a literal tuple of constants into
    one constant, and each string in it loads as a heap object (64 B on the 64-bit VM); passed
    as arguments, names of up to 10 characters stay interned qstrs, which the firmware's own
    uses of the same names share."""
    return names


FIX_FORMAT = ">qiihHHHBBB"
FIX_FIELDS = _names("fix_time_ms", "lat_e7", "lon_e7", "alt_m", "speed_cmps", "course_cdeg",
                    "accuracy_m", "hdop_x10", "sats", "source")
_FIX_SIZE = const(27)
_MAX_FIXES = const(7)
_MAX_CONFIG_ITEMS = const(20)
_ITEM_FORMAT = ">Bi"
_ITEM_SIZE = const(5)

MESSAGES = (
    (0x01, "HELLO", "up", ">BBBIBIHBI",
     _names("fw_major", "fw_minor", "fw_patch", "schema_hash", "reset_cause", "boot_count",
      "config_version", "mode", "interval_s"), ""),
    (0x02, "HEARTBEAT", "up", ">HBBBHIBBI",
     _names("battery_mv", "battery_pct", "charging", "link_quality", "queue_depth", "uptime_s",
      "status", "mode", "interval_s"), ""),
    (0x03, "POSITION", "up", ">q", _names("send_time_ms"), "fixes"),
    (0x04, "NO_FIX", "up", ">qI", _names("send_time_ms", "age_s"), "fix"),
    (0x05, "ALARM", "up", ">HBBq", _names("alarm_id", "kind", "state", "raised_time_ms"), "fix"),
    (0x06, "EVENT", "up", ">BqI", _names("kind", "time_ms", "value"), ""),
    (0x10, "ACK", "both", ">IQ", _names("highest", "bitmap"), ""),
    (0x81, "OPERATOR_ACK", "down", ">HH", _names("alarm_id", "operator_id"), ""),
    (0x82, "CONFIG", "down", ">H", _names("config_version"), "items"),
    (0x83, "COMMAND", "down", ">BH", _names("command", "arg"), ""),
    (0x84, "PROXIMITY", "down", ">B", _names("level"), ""),
    (0x85, "TIME_SYNC", "down", ">q", _names("utc_ms"), ""),
    (0x86, "TEST_INJECT", "down", ">B", _names("op"), "data"),
    (0x87, "MODE", "down", ">BIqq", _names("mode", "offender_id", "valid_from_ms", "valid_until_ms"),
     ""),
)
del _names
# The optional fix of NO_FIX and ALARM is named:
FIX_NAME = {"NO_FIX": "last_fix", "ALARM": "fix"}

# Like MAVLink's CRC_EXTRA (SPEC 7): the CRC-32 of the text `host_make_vectors.schema_text()`
# builds from the tables above, config_keys.CONFIG_KEYS and codec.SEALED_SIZES. A constant, not computed here: the
# device would spend heap on the text's parts for good. tests/test_protocol_roundtrip.py fails
# until it is updated after any change to the tables.
SCHEMA_HASH = const(0x99C1776D)


class PayloadError(ValueError):
    """A payload does not match its message's layout or ranges."""


def find(key):
    """The MESSAGES entry whose type code or name is `key`, or None."""
    for entry in MESSAGES:
        if key == entry[0] or key == entry[1]:
            return entry
    return None


def _pack(buf, offset, fmt, names, fields, what):
    """Pack `fields[name]` for each of `names` into `buf` at `offset`; return the end offset.
    Each value must read back as given: MicroPython's struct wraps out-of-range integers
    silently, so this refuses them as CPython's struct does."""
    try:
        values = []
        for name in names:
            values.append(fields[name])
        values = tuple(values)
        struct.pack_into(fmt, buf, offset, *values)
        if struct.unpack_from(fmt, buf, offset) == values:
            return offset + struct.calcsize(fmt)
    except KeyError as e:
        raise PayloadError("%s needs field %s" % (what, e.args[0]))
    except Exception:  # not an integer: struct.error on CPython, TypeError on MicroPython
        pass
    raise PayloadError("%s out of range: %r" % (what, fields))


def _check_config(key, value):
    # Imported only here: a device loads the key table (~2.7 KB of heap) with its first
    # CONFIG frame, not for good at boot.
    from protocol.config_keys import CONFIG_KEYS
    limits = CONFIG_KEYS.get(key)
    if limits is None or not isinstance(value, int) or not limits[1] <= value <= limits[2]:
        raise PayloadError("config %r=%r out of range" % (key, value))


def encode_into(buf, offset, entry, fields):
    """Pack the payload of message `entry` (from `find`) into `buf` at `offset`; return the
    end offset."""
    name, kind = entry[1], entry[5]
    offset = _pack(buf, offset, entry[3], entry[4], fields, name)
    if kind == "fix":
        fix = fields.get(FIX_NAME[name])
        if fix is None:
            buf[offset] = 0
            buf[offset + 1:offset + 1 + _FIX_SIZE] = bytes(_FIX_SIZE)
        else:
            buf[offset] = 1
            _pack(buf, offset + 1, FIX_FORMAT, FIX_FIELDS, fix, "fix")
        offset += 1 + _FIX_SIZE
    elif kind == "fixes" or kind == "items":
        parts = fields[kind]
        low, high = (1, _MAX_FIXES) if kind == "fixes" else (0, _MAX_CONFIG_ITEMS)
        if not low <= len(parts) <= high:
            raise PayloadError("%s carries %d %s" % (name, len(parts), kind))
        buf[offset] = len(parts)
        offset += 1
        for part in parts:
            if kind == "fixes":
                offset = _pack(buf, offset, FIX_FORMAT, FIX_FIELDS, part, "fix")
            else:
                key, value = part
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


def _fill(names, values):
    # dict.fromkeys sizes the table once; dict(zip()) grows it key by key, reallocating it
    # several times, and on a small MicroPython heap allocations are what cost.
    fields = dict.fromkeys(names)
    for i in range(len(names)):
        fields[names[i]] = values[i]
    return fields


def decode(entry, payload):
    """Decode a payload of message `entry` (from `find`): returns its fields.
    Raises PayloadError on any mismatch; never another exception for bytes input."""
    name, head, kind = entry[1], entry[3], entry[5]
    size = len(payload)
    head_size = struct.calcsize(head)
    # The byte after the fixed fields: has_fix, or the count of fixes or items.
    count = payload[head_size] if size > head_size else -1
    start = head_size + 1  # of the fix record, the fixes or the items
    if kind == "fix":
        end = start + _FIX_SIZE
    elif kind == "fixes":
        end = start + count * _FIX_SIZE if 1 <= count <= _MAX_FIXES else -1
    elif kind == "items":
        end = start + count * _ITEM_SIZE if 0 <= count <= _MAX_CONFIG_ITEMS else -1
    else:
        end = size if kind == "data" and size >= head_size else head_size
    if size != end:
        raise PayloadError("%s payload of %d bytes" % (name, size))
    fields = _fill(entry[4], struct.unpack_from(head, payload, 0))
    if kind == "fix":
        if count > 1:
            raise PayloadError("%s has_fix %d" % (name, count))
        fields[FIX_NAME[name]] = _fill(
            FIX_FIELDS, struct.unpack_from(FIX_FORMAT, payload, start)) if count else None
    elif kind == "fixes":
        fixes = []
        for at in range(start, size, _FIX_SIZE):
            fixes.append(_fill(FIX_FIELDS, struct.unpack_from(FIX_FORMAT, payload, at)))
        fields["fixes"] = fixes
    elif kind == "items":
        items = []
        for at in range(start, size, _ITEM_SIZE):
            key, value = struct.unpack_from(_ITEM_FORMAT, payload, at)
            _check_config(key, value)
            items.append((key, value))
        fields["items"] = items
    elif kind == "data":
        fields["data"] = bytes(payload[head_size:])
    return fields
