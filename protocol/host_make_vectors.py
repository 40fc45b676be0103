"""Generate protocol/vectors/vectors.json, the golden vectors of protocol v2 (SPEC.md 12).

    python -m protocol.host_make_vectors            # rewrite vectors.json
    python -m protocol.host_make_vectors --check    # exit 1 if vectors.json is stale

The frames are sealed by the portable codec; tests check that every implementation (portable
codec on CPython and on MicroPython, host fast path, construct reference) reproduces them.
`to_jsonable`/`from_jsonable` map message fields to JSON and back (also used by
`vigil decode --json`).
"""
import json
import struct
import sys
from pathlib import Path

from protocol import codec, config_keys, framing, host_tables, messages
from protocol import host_constants as constants
from protocol.crypto import Keys

VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "vectors.json"

# Keys are test keys, published on purpose; never provision them on a real device.
KEYS = [
    {"device_id": 1, "key_id": 1, "key": "000102030405060708090a0b0c0d0e0f"},
    {"device_id": 0x12345678, "key_id": 2, "key": "2b7e151628aed2a6abf7158809cf4f3c"},
    {"device_id": 0xFFFFFFFF, "key_id": 0, "key": "ffffffffffffffffffffffffffffffff"},
    {"device_id": 1, "key_id": codec.TEST_KEY_ID, "key": "74657374746573747465737474657374"},
]


def schema_text():
    """The text whose CRC-32 is the schema hash (SPEC 7); the device carries the hash as the
    constant `messages.SCHEMA_HASH`, which tests/test_vectors.py checks against this text."""
    parts = ["vigil-v2", "sealed:" + ",".join("%d" % n for n in codec.SEALED_SIZES)]
    for code, name, direction, fmt, fields, kind in messages.MESSAGES:
        parts.append("%02x:%s:%s:%s:%s:%s" % (code, name, direction, fmt, ",".join(fields), kind))
    parts.append("fix:%s:%s" % (messages.FIX_FORMAT, ",".join(messages.FIX_FIELDS)))
    for key in sorted(config_keys.CONFIG_KEYS):
        parts.append("cfg:%d:%s:%d:%d" % ((key,) + config_keys.CONFIG_KEYS[key][:3]))
    return ";".join(parts)


def to_jsonable(fields):
    """Message fields -> JSON-friendly values: bytes as hex, item pairs as lists."""
    out = {}
    for name, value in fields.items():
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).hex()
        elif name == "items":
            value = [[key, item] for key, item in value]
        out[name] = value
    return out


def from_jsonable(fields):
    """The inverse of to_jsonable."""
    out = dict(fields)
    if "data" in out:
        out["data"] = bytes.fromhex(out["data"])
    if "items" in out:
        out["items"] = [(key, value) for key, value in out["items"]]
    return out


def _fix(**overrides):
    fix = {"fix_time_ms": 1767225600000, "lat_e7": 523702000, "lon_e7": 48952000, "alt_m": 2,
           "speed_cmps": 140, "course_cdeg": 27000, "accuracy_m": 5, "hdop_x10": 9, "sats": 11,
           "source": constants.FIX_SOURCE_GNSS}
    fix.update(overrides)
    return fix


_FIX_MIN = {"fix_time_ms": -(1 << 63), "lat_e7": -900000000, "lon_e7": -1800000000,
            "alt_m": -32768, "speed_cmps": 0, "course_cdeg": 0, "accuracy_m": 0, "hdop_x10": 0,
            "sats": 0, "source": 0}
_FIX_MAX = {"fix_time_ms": (1 << 63) - 1, "lat_e7": 900000000, "lon_e7": 1800000000,
            "alt_m": 32767, "speed_cmps": 65535, "course_cdeg": 35999, "accuracy_m": 65535,
            "hdop_x10": 255, "sats": 255, "source": 255}

_T = 1767225600123  # 2026-01-01T00:00:00.123Z in UTC ms

# (vector name, message, device index in KEYS, downlink, counter, extra flags, fields)
GOOD = [
    ("hello", "HELLO", 0, False, 1, 0,
     {"fw_major": 1, "fw_minor": 2, "fw_patch": 3, "schema_hash": messages.SCHEMA_HASH,
      "reset_cause": constants.RESET_POWER_ON, "boot_count": 17, "config_version": 4,
      "mode": constants.MODE_AWARE, "interval_s": 900}),
    ("heartbeat", "HEARTBEAT", 0, False, 2, 0,
     {"battery_mv": 3987, "battery_pct": 81, "charging": 0, "link_quality": 73,
      "queue_depth": 0, "uptime_s": 86400, "status": constants.STATUS_GNSS_ON,
      "mode": constants.MODE_PAIRED, "interval_s": 900}),
    ("heartbeat-min", "HEARTBEAT", 1, False, 1, 0,
     {"battery_mv": 0, "battery_pct": 0, "charging": 0, "link_quality": 0, "queue_depth": 0,
      "uptime_s": 0, "status": 0, "mode": 0, "interval_s": 0}),
    ("heartbeat-max-counter", "HEARTBEAT", 2, False, 0xFFFFFFFF, 0,
     {"battery_mv": 65535, "battery_pct": 100, "charging": 1, "link_quality": 100,
      "queue_depth": 65535, "uptime_s": 0xFFFFFFFF, "status": 63, "mode": 255,
      "interval_s": 0xFFFFFFFF}),
    ("hello-paired", "HELLO", 1, False, 2, 0,
     {"fw_major": 1, "fw_minor": 2, "fw_patch": 3, "schema_hash": messages.SCHEMA_HASH,
      "reset_cause": constants.RESET_DEEPSLEEP, "boot_count": 0xFFFFFFFF, "config_version": 0,
      "mode": constants.MODE_PAIRED, "interval_s": 86400}),
    ("position-1", "POSITION", 0, False, 3, 0, {"send_time_ms": _T, "fixes": [_fix()]}),
    ("position-7", "POSITION", 1, False, 1000, 0,
     {"send_time_ms": _T, "fixes": [_fix(fix_time_ms=_T - 60000 * (7 - i), lat_e7=523702000 + i)
                                    for i in range(7)]}),
    ("position-bounds", "POSITION", 2, False, 7, 0,
     {"send_time_ms": 0, "fixes": [_FIX_MIN, _FIX_MAX]}),
    ("no-fix-never", "NO_FIX", 0, False, 4, 0,
     {"send_time_ms": _T, "age_s": 0xFFFFFFFF, "last_fix": None}),
    ("no-fix-last", "NO_FIX", 0, False, 5, 0,
     {"send_time_ms": _T, "age_s": 300, "last_fix": _fix(source=constants.FIX_SOURCE_LAST_KNOWN)}),
    ("alarm-panic-raised", "ALARM", 0, False, 6, 0,
     {"alarm_id": 1, "kind": constants.ALARM_KIND_PANIC, "state": constants.ALARM_STATE_RAISED,
      "raised_time_ms": _T, "fix": _fix()}),
    ("alarm-gnss-lost-cleared", "ALARM", 1, False, 2, 0,
     {"alarm_id": 65535, "kind": constants.ALARM_KIND_GNSS_LOST,
      "state": constants.ALARM_STATE_CLEARED, "raised_time_ms": _T, "fix": None}),
    ("alarm-panic-repeat", "ALARM", 0, False, 9, 0,
     {"alarm_id": 1, "kind": constants.ALARM_KIND_PANIC, "state": constants.ALARM_STATE_REPEAT,
      "raised_time_ms": _T, "fix": _fix(source=constants.FIX_SOURCE_LAST_KNOWN)}),
    ("event-mode-changed", "EVENT", 1, False, 3, 0,
     {"kind": constants.EVENT_KIND_MODE_CHANGED, "time_ms": _T, "value": constants.MODE_AWARE}),
    ("event-charger-on", "EVENT", 0, False, 7, 0,
     {"kind": constants.EVENT_KIND_CHARGER_ON, "time_ms": _T, "value": 0}),
    ("ack-up", "ACK", 0, False, 8, 0, {"highest": 41, "bitmap": 0x8000000000000001}),
    ("ack-down", "ACK", 0, True, 1, 0, {"highest": 8, "bitmap": 0xFFFFFFFFFFFFFFFF}),
    ("operator-ack", "OPERATOR_ACK", 0, True, 2, 0, {"alarm_id": 1, "operator_id": 4242}),
    ("config-empty", "CONFIG", 1, True, 1, 0, {"config_version": 0, "items": []}),
    ("config-items", "CONFIG", 0, True, 3, 0,
     {"config_version": 5, "items": [(1, 60), (10, 30), (9, 10000), (14, 604800)]}),
    ("command-vibrate", "COMMAND", 0, True, 4, 0,
     {"command": constants.COMMAND_VIBRATE, "arg": 3}),
    ("command-clear-alarm", "COMMAND", 0, True, 5, 0,
     {"command": constants.COMMAND_CLEAR_ALARM, "arg": 1}),
    ("proximity-warning", "PROXIMITY", 0, True, 6, 0, {"level": constants.PROXIMITY_WARNING}),
    ("proximity-clear", "PROXIMITY", 2, True, 0xFFFFFFFF, 0, {"level": constants.PROXIMITY_CLEAR}),
    ("proximity-uncertain", "PROXIMITY", 1, True, 2, 0, {"level": constants.PROXIMITY_UNCERTAIN}),
    ("mode-paired", "MODE", 0, True, 8, 0,
     {"mode": constants.MODE_PAIRED, "offender_id": 0xA1B2C3D4, "valid_from_ms": _T,
      "valid_until_ms": _T + 180 * 86400000}),
    ("mode-aware", "MODE", 1, True, 3, 0,
     {"mode": constants.MODE_AWARE, "offender_id": 0, "valid_from_ms": 0, "valid_until_ms": 0}),
    ("time-sync", "TIME_SYNC", 0, True, 7, 0, {"utc_ms": _T}),
    ("test-inject", "TEST_INJECT", 3, True, 1, host_tables.FLAG_TEST,
     {"op": 1, "data": bytes.fromhex("00ff00017e")}),
]


def seal_body(key16, key_id, device_id, counter, plain, direction=0, version=2):
    """Seal any header and sealed-part plaintext (type, flags, length, payload, padding, as
    given) with a valid tag and CRC, so that bad-frame vectors fail exactly at the check they
    are meant to fail."""
    keys = Keys(key16)
    head = struct.pack(">BBBII", version, direction, key_id, device_id, counter)
    body = head + keys.xor(device_id, direction, counter, key_id, plain)
    body += keys.tag(body)
    return _restuff(body + struct.pack(">H", framing.crc16(body)))


def inner(code, flags, payload, size=None, length=None, padding=0):
    """A sealed-part plaintext: type, flags, length, payload, padding to `size` (the
    smallest bucket by default)."""
    size = codec.sealed_size(len(payload)) if size is None else size
    length = len(payload) if length is None else length
    pad = bytearray(size - host_tables.INNER_SIZE - len(payload))
    if padding and pad:
        pad[-1] = padding
    return bytes((code, flags, length)) + payload + bytes(pad)


def _restuff(body):
    return framing.cobs_encode(body) + b"\x00"


# A protocol v1 HEARTBEAT (device 1, key 1, counter 9), as a v1 sender built it: v2 refuses
# it as bad_version with a clear detail.
V1_HEARTBEAT = bytes.fromhex(
    "050102010101010201010105090f9351024901010f0151800843c9db97ca5049e2868a00")


def _bad_vectors(good):
    """(name, wire, reason, receiver options, prior wires) for each documented reason."""
    key0 = bytes.fromhex(KEYS[0]["key"])
    hb = good["heartbeat"]
    hb_body = framing.cobs_decode(hb[:-1])
    flipped = bytearray(hb_body)
    flipped[14] ^= 0x01  # sealed byte; CRC left stale
    bad_tag = bytearray(hb_body[:-2])
    bad_tag[-1] ^= 0x80  # last tag byte; CRC recomputed so only the tag is wrong
    bad_tag = bytes(bad_tag) + struct.pack(">H", framing.crc16(bad_tag))
    hb_plain = struct.pack(host_tables.BY_NAME["HEARTBEAT"][3], 3987, 81, 0, 73, 0, 86400, 8, 1, 900)
    short = bytes(hb_body[:40])
    short_v2 = _restuff(short + struct.pack(">H", framing.crc16(short)))
    up = {"downlink": False, "test_mode": False}
    down = {"downlink": True, "test_mode": False}
    hb_code, prox_code, cfg_code = 0x02, 0x84, 0x82
    return [
        ("bad-crc", _restuff(bytes(flipped)), "bad_crc", up, []),
        ("bad-cobs", bytes.fromhex("0501020300"), "bad_cobs", up, []),
        ("truncated", _restuff(hb_body[:21]), "truncated", up, []),
        ("truncated-v2", short_v2, "truncated", up, []),
        ("empty-body", b"\x01\x00", "truncated", up, []),
        ("oversize-stuffed", b"\x01" * 243 + b"\x00", "oversize", up, []),
        ("oversize-body", _restuff(bytes(range(1, 242))), "oversize", up, []),
        ("bad-version-v1", V1_HEARTBEAT, "bad_version", up, []),
        ("bad-version-3", seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain), version=3),
         "bad_version", up, []),
        ("unknown-type", seal_body(key0, 1, 1, 9, inner(0x55, 1, hb_plain)), "unknown_type", up,
         []),
        ("unknown-key", seal_body(key0, 9, 1, 9, inner(hb_code, 1, hb_plain)), "unknown_key", up,
         []),
        ("bad-tag", _restuff(bad_tag), "bad_tag", up, []),
        ("wrong-key", seal_body(bytes(16), 1, 1, 9, inner(hb_code, 1, hb_plain)), "bad_tag", up,
         []),
        ("replayed", hb, "replayed", up, [hb]),
        ("replayed-too-old", hb, "replayed", up, [good["heartbeat-later"]]),
        ("bad-payload-length", seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain + b"\x00")),
         "bad_payload", up, []),
        ("bad-payload-length-past-bucket",
         seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain, length=40)), "bad_payload", up, []),
        ("bad-payload-padding", seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain, padding=1)),
         "bad_payload", up, []),
        ("bad-payload-bucket", seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain, size=33)),
         "bad_payload", up, []),
        ("bad-payload-bucket-not-smallest",
         seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain, size=48)), "bad_payload", up, []),
        ("bad-payload-reserved-flag", seal_body(key0, 1, 1, 9, inner(hb_code, 0x21, hb_plain)),
         "bad_payload", up, []),
        ("bad-payload-historic-flag", seal_body(key0, 1, 1, 9, inner(hb_code, 0x03, hb_plain)),
         "bad_payload", up, []),
        ("bad-payload-counter-0", seal_body(key0, 1, 1, 0, inner(hb_code, 1, hb_plain)),
         "bad_payload", up, []),
        ("bad-payload-direction-byte",
         seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain), direction=2), "bad_payload", up,
         []),
        ("bad-payload-config-range",
         seal_body(key0, 1, 1, 9, inner(cfg_code, 1, bytes.fromhex("0001010100000000")),
                   direction=1), "bad_payload", down, []),
        ("wrong-direction", good["proximity-warning"], "wrong_direction", up, []),
        ("wrong-direction-type", seal_body(key0, 1, 1, 9, inner(hb_code, 1, hb_plain),
                                           direction=1), "wrong_direction", down, []),
        ("wrong-direction-type-up", seal_body(key0, 1, 1, 9, inner(prox_code, 1, b"\x02")),
         "wrong_direction", up, []),
        ("test-only", good["test-inject"], "test_only", down, []),
    ]


def build():
    keys = {}
    for entry in KEYS:
        keys[(entry["device_id"], entry["key_id"])] = bytes.fromhex(entry["key"])
    frames = []
    wires = {}
    for name, message, key_index, downlink, counter, flags, fields in GOOD:
        entry = KEYS[key_index]
        sender = codec.Sender(entry["device_id"], entry["key_id"], bytes.fromhex(entry["key"]),
                              downlink=downlink)
        wire = sender.seal(message, fields, flags=flags, counter=counter)
        wires[name] = wire
        body = framing.cobs_decode(wire[:-1])
        frames.append({
            "name": name, "message": message, "device_id": entry["device_id"],
            "key_id": entry["key_id"], "key": entry["key"], "downlink": downlink,
            "counter": counter, "extra_flags": flags,
            "flags": flags | host_tables.default_flags(message) | (host_tables.FLAG_DOWNLINK if downlink
                                                              else 0),
            "fields": to_jsonable(fields), "body": body.hex(), "wire": wire.hex(),
        })
    later = codec.Sender(1, 1, keys[(1, 1)]).seal("HEARTBEAT", GOOD[1][6], counter=2 + 65)
    wires["heartbeat-later"] = later
    bad = []
    for name, wire, reason, options, prior in _bad_vectors(wires):
        bad.append({"name": name, "wire": wire.hex(), "reason": reason,
                    "downlink": options["downlink"], "test_mode": options["test_mode"],
                    "prior": [p.hex() for p in prior]})
    log = b"I (1234) vigil: boot ok\r\n"
    stream = (b"\x00" + wires["hello"] + b"\x00" + log + b"\x00" + wires["heartbeat"] +
              b"\xa5\x5a\x13" + b"\x00" + wires["position-1"] + wires["hello"])
    return {
        "about": "Golden vectors of vigil protocol v2; see protocol/SPEC.md section 12. "
                 "Test keys only.",
        "protocol_version": host_tables.VERSION,
        "schema_hash": messages.SCHEMA_HASH,
        "keys": KEYS,
        "frames": frames,
        "bad_frames": bad,
        "streams": [{
            "name": "noise-and-log-text", "downlink": False, "data": stream.hex(),
            "expect": ["HELLO", "bad_cobs", "HEARTBEAT", "bad_cobs", "POSITION", "replayed"],
        }],
    }


def render():
    return json.dumps(build(), indent=1) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not VECTORS_PATH.exists() or VECTORS_PATH.read_text() != text:
            print("%s is stale: run python -m protocol.host_make_vectors" % VECTORS_PATH)
            return 1
        return 0
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_PATH.write_text(text)
    print("wrote %s" % VECTORS_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
