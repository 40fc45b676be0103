"""Byte framing: COBS stuffing and CRC-16/CCITT-FALSE, portable to MicroPython.

A frame on the wire is COBS(body) followed by one 0x00 delimiter, so a receiver resyncs at
the next 0x00 after any noise or stray log text. See SPEC.md section 2.
"""

# CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final xor.
# Same as CPython's binascii.crc_hqx(data, 0xFFFF); MicroPython lacks crc_hqx.
# The table is an array of 16-bit values (512 bytes), not a tuple of 256 ints (2 KB of
# pointers on a 64-bit VM, 1 KB on the ESP32): indexing it gives the same ints.
from array import array


def _make_crc_table():
    table = array("H", bytes(512))
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table[byte] = crc & 0xFFFF
    return table


_CRC_TABLE = _make_crc_table()
del _make_crc_table  # run once: its bytecode would only hold heap


def crc16(data, crc=0xFFFF):
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


def cobs_encode(data):
    """Stuff `data` so it holds no 0x00; the caller appends the delimiter."""
    out = bytearray()
    start = 0
    length = len(data)
    while True:
        zero = data.find(b"\x00", start, min(start + 254, length))
        if zero < 0:
            end = min(start + 254, length)
            out.append(end - start + 1)
            out += data[start:end]
            if end >= length:
                return bytes(out)
            start = end
            continue
        out.append(zero - start + 1)
        out += data[start:zero]
        start = zero + 1
        if start == length:
            out.append(1)
            return bytes(out)


def cobs_decode(data):
    """Unstuff one COBS block (without its delimiter). Raises ValueError if malformed.

    Without 0xFF codes (always, in blocks under 255 bytes, so in every frame) the body is the
    block minus its first code, with every later code byte replaced by 0x00: one copy, zeroed
    in place, instead of a bytearray grown group by group (allocations are what cost on a
    small MicroPython heap, where each one may start a collection)."""
    length = len(data)
    out = bytearray(data)
    i = 0
    while i < length:
        code = out[i]
        if code == 0 or code == 0xFF:
            return _cobs_decode_groups(data)  # 0: refused there; 0xFF: no zero follows
        out[i] = 0
        i += code
    if i > length:
        raise ValueError("COBS block truncated")
    return bytes(out[1:])


def _cobs_decode_groups(data):
    out = bytearray()
    i = 0
    length = len(data)
    while i < length:
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside COBS block")
        end = i + code
        if end > length:
            raise ValueError("COBS block truncated")
        out += data[i + 1:end]
        i = end
        if code != 0xFF and i < length:
            out.append(0)
    return bytes(out)
