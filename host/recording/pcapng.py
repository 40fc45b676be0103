"""The pcapng blocks vigil writes and reads, declared with construct (pcapng draft, IETF
opsawg-pcapng): Section Header, Interface Description and Enhanced Packet blocks, with their
options. Little-endian only: vigil writes little-endian sections; a big-endian section from
another tool is refused with a one-line reason instead of being misread.

The declarations below are the format. Enhanced Packet Blocks are also packed and unpacked by
`pack_epb`/`unpack_epb_head` with one precompiled struct each, because a million packets go
through them in the decode benchmark and a construct parse costs ~30 us a block;
tests/test_recording.py proves that both paths give the same bytes and the same fields.
"""
import struct

from construct import (
    Bytes,
    Check,
    Const,
    GreedyRange,
    Int16ul,
    Int32ul,
    Int64sl,
    Padding,
    Struct,
    this,
)

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

LINKTYPE_USER0 = 147  # vigil protocol frames, exactly as on the wire (COBS, 0x00 delimiter)
LINKTYPE_USER1 = 148  # vigil stimuli: one UTF-8 JSON object a packet

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
EPB_FLAGS = 2
# epb_flags bits 0-1 (direction): 1 inbound, 2 outbound. Inbound is device -> host.
FLAG_INBOUND = 1
FLAG_OUTBOUND = 2

Option = Struct(
    "code" / Int16ul,
    "length" / Int16ul,
    "value" / Bytes(this.length),
    Padding(lambda ctx: -ctx.length % 4),
)
# Options end with opt_endofopt, or with the block body when there are none.
Options = GreedyRange(Option)

Block = Struct(
    "type" / Int32ul,
    "length" / Int32ul,
    Check(lambda ctx: ctx.length >= 12 and ctx.length % 4 == 0),
    "body" / Bytes(this.length - 12),
    "trailer" / Int32ul,
    Check(this.trailer == this.length),
)

ShbBody = Struct(
    "magic" / Const(BYTE_ORDER_MAGIC, Int32ul),
    "major" / Const(1, Int16ul),
    "minor" / Int16ul,
    "section_length" / Int64sl,
    "options" / Options,
)

IdbBody = Struct(
    "linktype" / Int16ul,
    "reserved" / Int16ul,
    "snaplen" / Int32ul,
    "options" / Options,
)

EpbBody = Struct(
    "interface_id" / Int32ul,
    "ts_high" / Int32ul,
    "ts_low" / Int32ul,
    "captured_length" / Int32ul,
    "original_length" / Int32ul,
    "data" / Bytes(this.captured_length),
    Padding(lambda ctx: -ctx.captured_length % 4),
    "options" / Options,
)


class PcapngError(ValueError):
    """A block that is not pcapng as vigil reads it; the message is one line."""


def options(pairs):
    """[(code, bytes)] -> the option list for a construct build, ending in opt_endofopt."""
    out = [dict(code=code, length=len(value), value=value) for code, value in pairs]
    out.append(dict(code=OPT_ENDOFOPT, length=0, value=b""))
    return out


def option_values(parsed):
    """A parsed option list -> [(code, bytes)] up to opt_endofopt."""
    out = []
    for option in parsed:
        if option.code == OPT_ENDOFOPT:
            break
        out.append((option.code, option.value))
    return out


def block(block_type, body):
    return Block.build(dict(type=block_type, length=len(body) + 12, body=body,
                            trailer=len(body) + 12))


def build_shb(option_pairs):
    return block(SHB_TYPE, ShbBody.build(dict(minor=0, section_length=-1,
                                              options=options(option_pairs))))


def build_idb(linktype, option_pairs, snaplen=0):
    return block(IDB_TYPE, IdbBody.build(dict(linktype=linktype, reserved=0, snaplen=snaplen,
                                              options=options(option_pairs))))


def build_epb(interface_id, time_ns, data, flags):
    """The construct build of one Enhanced Packet Block (the reference for pack_epb)."""
    return block(EPB_TYPE, EpbBody.build(dict(
        interface_id=interface_id, ts_high=time_ns >> 32, ts_low=time_ns & 0xFFFFFFFF,
        captured_length=len(data), original_length=len(data), data=data,
        options=options([(EPB_FLAGS, Int32ul.build(flags))]) if flags else [])))


# The fast path: an EPB with an epb_flags option and opt_endofopt is
#   head (type, length, interface, ts_high, ts_low, captured, original) | data | pad |
#   flags option (code 2, length 4, u32) | endofopt (0, 0) | trailer (length)
_EPB_HEAD = struct.Struct("<7I")
_EPB_TAIL = struct.Struct("<HHIHHI")
_EPB_FIXED = _EPB_HEAD.size + _EPB_TAIL.size
_PADS = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")


def pack_epb(interface_id, time_ns, data, flags, _head=_EPB_HEAD.pack, _tail=_EPB_TAIL.pack):
    """Same bytes as build_epb(...) with flags != 0."""
    size = len(data)
    pad = _PADS[size & 3]
    length = _EPB_FIXED + size + len(pad)
    return b"".join((_head(EPB_TYPE, length, interface_id, time_ns >> 32, time_ns & 0xFFFFFFFF,
                           size, size), data, pad,
                     _tail(EPB_FLAGS, 4, flags, OPT_ENDOFOPT, 0, length)))


EPB_HEAD_SIZE = _EPB_HEAD.size
unpack_epb_head = _EPB_HEAD.unpack_from  # (type, length, interface, ts_high, ts_low, cap, orig)
_U16_PAIR = struct.Struct("<HH")
_U32 = struct.Struct("<I")


def epb_flags(buf, start, end):
    """epb_flags from the options in buf[start:end] (0 when absent), walking the options
    with the layout `Option` declares."""
    while start + 4 <= end:
        code, length = _U16_PAIR.unpack_from(buf, start)
        if code == OPT_ENDOFOPT:
            break
        if code == EPB_FLAGS and length == 4 and start + 8 <= end:
            return _U32.unpack_from(buf, start + 4)[0]
        start += 4 + length + (-length % 4)
    return 0
