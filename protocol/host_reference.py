"""Reference decoder of protocol v2, written declaratively with `construct` from SPEC.md alone.

CPython only, never deployed, and slow (construct): it shares no code or tables with
the codecs (`protocol.codec`, `protocol.messages`, `protocol.host_fast`). Its COBS, CRC (bitwise,
not table-driven), HMAC (`hmac` module) and AES-CTR (`cryptography`'s native CTR mode, whose
initial counter block is the SPEC 4.3 nonce block) are independent too, so agreement between
the three is evidence that the spec, not one implementation, is being followed.

    decode_frame(block, keys, downlink=False, test_mode=False) -> dict
        block: one COBS block without its 0x00 delimiter; keys: {(device_id, key_id): key16}.
        Returns {"name", "type", "flags", "key_id", "device_id", "counter", "fields"}.
        Raises Refused(reason) with the SPEC 10 reason. Stateless: no replay window.
"""
import hashlib
import hmac

from construct import (
    Array,
    Bytes,
    Check,
    ConstructError,
    GreedyBytes,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64sb,
    Int64ub,
    Struct,
    Terminated,
    this,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# --- SPEC 3: routing header (clear) and sealed part -------------------------------------------
Header = Struct(
    "version" / Int8ub,
    "direction" / Int8ub,
    "key_id" / Int8ub,
    "device_id" / Int32ub,
    "counter" / Int32ub,
)
HEADER_SIZE = 11
TAG_SIZE = 8
CRC_SIZE = 2
MAX_BODY = 240
MIN_BODY_ANY_VERSION = 22
MAX_STUFFED = 242
BUCKETS = (32, 48, 96, 144, 219)  # SPEC 3.4

# The plaintext of the sealed part: type, flags, length, payload, zero padding to its bucket.
Inner = Struct(
    "type" / Int8ub,
    "flags" / Int8ub,
    "length" / Int8ub,
    "payload" / Bytes(this.length),
    "padding" / GreedyBytes,
)

ACK_REQ, TEST = 1, 16
DOWNLINK_VIEW = 8  # the Frame.flags bit for a downlink; not a sealed flag
TEST_KEY_ID = 0xFF

# --- SPEC 6: payloads ------------------------------------------------------------------------
Fix = Struct(
    "fix_time_ms" / Int64sb,
    "lat_e7" / Int32sb,
    "lon_e7" / Int32sb,
    "alt_m" / Int16sb,
    "speed_cmps" / Int16ub,
    "course_cdeg" / Int16ub,
    "accuracy_m" / Int16ub,
    "hdop_x10" / Int8ub,
    "sats" / Int8ub,
    "source" / Int8ub,
)

# SPEC 6.9: key id -> (name, min, max)
CONFIG_RANGES = {
    1: ("heartbeat_s", 60, 86400), 2: ("low_battery_heartbeat_s", 300, 86400),
    3: ("moving_fix_s", 10, 3600), 4: ("moving_upload_s", 30, 3600), 5: ("panic_fix_s", 1, 60),
    6: ("panic_upload_s", 1, 300), 7: ("panic_track_s", 60, 86400),
    8: ("proximity_fix_s", 5, 300), 9: ("long_press_ms", 500, 10000),
    10: ("reachability_s", 5, 3600), 11: ("no_contact_s", 60, 86400),
    12: ("gnss_timeout_s", 10, 600), 13: ("gnss_lost_s", 60, 7200),
    14: ("self_test_s", 3600, 604800), 15: ("moving_speed_cmps", 10, 1000),
    16: ("moving_displacement_m", 10, 1000), 17: ("operator_ack_timeout_s", 10, 3600),
}


def _config_ok(item):
    limits = CONFIG_RANGES.get(item.key)
    return limits is not None and limits[1] <= item.value <= limits[2]


ConfigItem = Struct("key" / Int8ub, "value" / Int32sb, Check(_config_ok))

# type -> (name, direction, payload struct, encrypted)
UP, DOWN, BOTH = "up", "down", "both"
PAYLOADS = {
    0x01: ("HELLO", UP, Struct(
        "fw_major" / Int8ub, "fw_minor" / Int8ub, "fw_patch" / Int8ub, "schema_hash" / Int32ub,
        "reset_cause" / Int8ub, "boot_count" / Int32ub, "config_version" / Int16ub,
        "mode" / Int8ub, "interval_s" / Int32ub, Terminated)),
    0x02: ("HEARTBEAT", UP, Struct(
        "battery_mv" / Int16ub, "battery_pct" / Int8ub, "charging" / Int8ub,
        "link_quality" / Int8ub, "queue_depth" / Int16ub, "uptime_s" / Int32ub,
        "status" / Int8ub, "mode" / Int8ub, "interval_s" / Int32ub, Terminated)),
    0x03: ("POSITION", UP, Struct(
        "send_time_ms" / Int64sb, "count" / Int8ub, Check(1 <= this.count),
        Check(this.count <= 7), "fixes" / Array(this.count, Fix), Terminated)),
    0x04: ("NO_FIX", UP, Struct(
        "send_time_ms" / Int64sb, "age_s" / Int32ub, "has_fix" / Int8ub,
        Check(this.has_fix <= 1), "last_fix" / Fix, Terminated)),
    0x05: ("ALARM", UP, Struct(
        "alarm_id" / Int16ub, "kind" / Int8ub, "state" / Int8ub, "raised_time_ms" / Int64sb,
        "has_fix" / Int8ub, Check(this.has_fix <= 1), "fix" / Fix, Terminated)),
    0x06: ("EVENT", UP, Struct(
        "kind" / Int8ub, "time_ms" / Int64sb, "value" / Int32ub, Terminated)),
    0x10: ("ACK", BOTH, Struct("highest" / Int32ub, "bitmap" / Int64ub, Terminated)),
    0x81: ("OPERATOR_ACK", DOWN, Struct(
        "alarm_id" / Int16ub, "operator_id" / Int16ub, Terminated)),
    0x82: ("CONFIG", DOWN, Struct(
        "config_version" / Int16ub, "count" / Int8ub, Check(this.count <= 20),
        "items" / Array(this.count, ConfigItem), Terminated)),
    0x83: ("COMMAND", DOWN, Struct("command" / Int8ub, "arg" / Int16ub, Terminated)),
    0x84: ("PROXIMITY", DOWN, Struct("level" / Int8ub, Terminated)),
    0x85: ("TIME_SYNC", DOWN, Struct("utc_ms" / Int64sb, Terminated)),
    0x86: ("TEST_INJECT", DOWN, Struct("op" / Int8ub, "data" / GreedyBytes)),
    0x87: ("MODE", DOWN, Struct(
        "mode" / Int8ub, "offender_id" / Int32ub, "valid_from_ms" / Int64sb,
        "valid_until_ms" / Int64sb, Terminated)),
}
FIX_FIELD_NAMES = ("fix_time_ms", "lat_e7", "lon_e7", "alt_m", "speed_cmps", "course_cdeg",
                   "accuracy_m", "hdop_x10", "sats", "source")

Body = Struct(
    "header" / Header,
    "sealed" / Bytes(this._.size - HEADER_SIZE - TAG_SIZE - CRC_SIZE),
    "tag" / Bytes(TAG_SIZE),
    "crc" / Int16ub,
    Terminated,
)


class Refused(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# --- SPEC 2: framing, written from the text ---------------------------------------------------
def cobs_unstuff(block):
    out = bytearray()
    i = 0
    while i < len(block):
        code = block[i]
        if code == 0 or i + code > len(block):
            raise Refused("bad_cobs")
        out += block[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(block):
            out.append(0)
    return bytes(out)


def crc16_ccitt_false(data):
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


# --- SPEC 4: security -------------------------------------------------------------------------
def derive(key16):
    mac_key = hmac.new(key16, b"vigil-mac-v2", hashlib.sha256).digest()
    enc_key = hmac.new(key16, b"vigil-enc-v2", hashlib.sha256).digest()[:16]
    return mac_key, enc_key


def ctr_xor(enc_key, device_id, downlink, counter, key_id, data):
    nonce = (device_id.to_bytes(4, "big") + bytes([1 if downlink else 0]) +
             counter.to_bytes(4, "big") + bytes([key_id]) + bytes(6))
    return Cipher(algorithms.AES(enc_key), modes.CTR(nonce)).decryptor().update(data)


def _plain(value):
    """construct Containers -> plain dicts and lists, without helper fields."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _fields(code, parsed):
    fields = _plain(parsed)
    if code in (0x04, 0x05):
        fix_name = "last_fix" if code == 0x04 else "fix"
        if not fields.pop("has_fix"):
            fields[fix_name] = None
    elif code == 0x03:
        del fields["count"]
    elif code == 0x82:
        del fields["count"]
        fields["items"] = [(item["key"], item["value"]) for item in fields["items"]]
    return fields


def decode_frame(block, keys, downlink=False, test_mode=False):
    """Decode one COBS block (SPEC 9 gives the order of the checks)."""
    if len(block) > MAX_STUFFED:
        raise Refused("oversize")
    body = cobs_unstuff(block)
    if len(body) > MAX_BODY:
        raise Refused("oversize")
    if len(body) < MIN_BODY_ANY_VERSION:
        raise Refused("truncated")
    if crc16_ccitt_false(body[:-CRC_SIZE]) != int.from_bytes(body[-CRC_SIZE:], "big"):
        raise Refused("bad_crc")
    if body[0] != 2:
        raise Refused("bad_version")
    if len(body) < HEADER_SIZE + BUCKETS[0] + TAG_SIZE + CRC_SIZE:
        raise Refused("truncated")
    frame = Body.parse(body, size=len(body))
    head = frame.header
    key = keys.get((head.device_id, head.key_id))
    if key is None:
        raise Refused("unknown_key")
    mac_key, enc_key = derive(key)
    expected = hmac.new(mac_key, body[:-CRC_SIZE - TAG_SIZE], hashlib.sha256).digest()
    if not hmac.compare_digest(expected[:TAG_SIZE], frame.tag):
        raise Refused("bad_tag")
    if head.direction > 1:
        raise Refused("bad_payload")
    if head.direction != int(downlink):
        raise Refused("wrong_direction")
    if head.counter == 0 or len(frame.sealed) not in BUCKETS:
        raise Refused("bad_payload")
    plain = ctr_xor(enc_key, head.device_id, downlink, head.counter, head.key_id, frame.sealed)
    if plain[0] not in PAYLOADS:
        raise Refused("unknown_type")
    name, direction, payload_struct = PAYLOADS[plain[0]]
    if direction != BOTH and (direction == DOWN) != downlink:
        raise Refused("wrong_direction")
    if plain[1] & ~(ACK_REQ | TEST):
        raise Refused("bad_payload")
    try:
        inner = Inner.parse(plain)
    except ConstructError:
        raise Refused("bad_payload") from None
    smallest = min(b for b in BUCKETS + (1 << 16,) if b >= 3 + inner.length)
    if smallest != len(plain) or any(inner.padding):
        raise Refused("bad_payload")
    if name == "TEST_INJECT" and not (test_mode and head.key_id == TEST_KEY_ID and
                                      inner.flags & TEST):
        raise Refused("test_only")
    try:
        parsed = payload_struct.parse(inner.payload)
    except ConstructError:
        raise Refused("bad_payload") from None
    return {"name": name, "type": inner.type,
            "flags": inner.flags | (DOWNLINK_VIEW if downlink else 0), "key_id": head.key_id,
            "device_id": head.device_id, "counter": head.counter,
            "fields": _fields(inner.type, parsed)}


# --- encoding, for the benchmark and for cross-checks: construct builds the payload ---------
NAMES = {name: code for code, (name, _direction, _struct) in PAYLOADS.items()}


def cobs_stuff(body):
    """SPEC 2.1: a code n < 255 is n - 1 bytes then a 0x00 (implied at the very end);
    255 is 254 bytes and no 0x00."""
    out = bytearray()
    runs = body.split(b"\x00")
    for index, run in enumerate(runs):
        last = index == len(runs) - 1
        while len(run) >= 254 and not (last and len(run) == 254):
            out += b"\xff" + run[:254]
            run = run[254:]
        if last and len(run) == 254:
            out += b"\xff" + run  # ends the input: no 0x00 follows, so no extra 01 code
        else:
            out += bytes([len(run) + 1]) + run
    return bytes(out)


def encode_frame(name, fields, device_id, key_id, key16, counter, downlink=False, flags=0):
    """The wire bytes of one frame (SPEC 3 and 4), payload built by construct."""
    code = NAMES[name]
    payload_fields = dict(fields)
    if code == 0x03:
        payload_fields["count"] = len(fields["fixes"])
    elif code == 0x82:
        payload_fields["count"] = len(fields["items"])
        payload_fields["items"] = [{"key": k, "value": v} for k, v in fields["items"]]
    elif code in (0x04, 0x05):
        fix_name = "last_fix" if code == 0x04 else "fix"
        fix = fields[fix_name]
        payload_fields["has_fix"] = 0 if fix is None else 1
        payload_fields[fix_name] = dict.fromkeys(FIX_FIELD_NAMES, 0) if fix is None else fix
    payload = PAYLOADS[code][2].build(payload_fields)
    flags |= 0 if name == "ACK" else ACK_REQ
    mac_key, enc_key = derive(key16)
    bucket = min(b for b in BUCKETS if b >= 3 + len(payload))
    plain = Inner.build({"type": code, "flags": flags, "length": len(payload),
                         "payload": payload, "padding": bytes(bucket - 3 - len(payload))})
    sealed = ctr_xor(enc_key, device_id, downlink, counter, key_id, plain)
    body = Header.build({"version": 2, "direction": int(downlink), "key_id": key_id,
                         "device_id": device_id, "counter": counter}) + sealed
    body += hmac.new(mac_key, body, hashlib.sha256).digest()[:TAG_SIZE]
    body += crc16_ccitt_false(body).to_bytes(2, "big")
    return cobs_stuff(body) + b"\x00"
