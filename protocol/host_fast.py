"""Host fast path of protocol v2: byte-identical to `protocol.codec`, built on C code.

CPython only (never deployed). Same API shape as the portable codec:

    sender = FastSender(device_id, key_id, key16, downlink=False, counter=1)
    wire = sender.seal("HEARTBEAT", fields)
    keyring = Keyring(); keyring.add(device_id, key_id, key16)
    receiver = FastReceiver(keyring)
    receiver.feed(data) -> [Frame | FrameError, ...];  receiver.open(block) -> Frame

Where the portable codec loops in Python, this uses C: `cobs.cobs` for COBS,
`binascii.crc_hqx(data, 0xFFFF)` for CRC-16/CCITT-FALSE, `hashlib.sha256` states with the HMAC
pads absorbed once (`.copy()` per frame), AES-ECB from `cryptography` for the CTR keystream
(one ECB call over all counter blocks of a frame: creating a CTR cipher per frame costs ~4 us),
and precompiled `struct.Struct`s. Frames, errors and replay windows are the codec's own classes,
so callers can mix both paths. `split_stream` is a batched framing-only pass for bulk streams.
"""
import gc
import hashlib
import hmac
import struct
from binascii import crc_hqx
from itertools import compress, repeat
from operator import not_

from cobs.cobs import DecodeError
from cobs.cobs import decode as _cobs_decode
from cobs.cobs import encode as _cobs_encode
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocol import codec, config_keys, host_tables, messages
from protocol.codec import SEALED_SIZES, Frame, FrameError, ReplayWindow
from protocol.crypto import KEY_LEN, TAG_LEN
from protocol.host_tables import FLAG_DOWNLINK, INNER_SIZE, MAX_FRAME, MIN_FRAME, VERSION
from protocol.messages import FIX_FIELDS, PayloadError

__all__ = ["FastSender", "FastReceiver", "Keyring", "FastKeys", "split_stream", "Frame",
           "FrameError"]

_HEADER = struct.Struct(">BBBII")
_CRC = struct.Struct(">H")
_NONCE = struct.Struct(">IBIB")
_FIX = struct.Struct(messages.FIX_FORMAT)
_ITEM = struct.Struct(">Bi")
# Counter blocks of n AES blocks are `prefix.join(_NONCE_TAILS[n])`: one C call for
# prefix | 0[4] | 0 | prefix | 0[4] | 1 | ... (a 219-byte sealed part takes 14 blocks).
_NONCE_TAILS = tuple((b"",) + tuple(bytes(4) + i.to_bytes(2, "big") for i in range(n))
                     for n in range(16))
_MIN_BODY = 22  # shorter than any frame of either version: truncated before the CRC
_KNOWN_FLAGS = 17
_TEST_INJECT = host_tables.BY_NAME["TEST_INJECT"][0]
# payload length -> (sealed size, zero padding), for every length that fits
_PAD = {}
for _n in range(host_tables.MAX_PAYLOAD + 1):
    _size = codec.sealed_size(_n)
    _PAD[_n] = (_size, bytes(_size - INNER_SIZE - _n))
_SEALED = frozenset(SEALED_SIZES)
_DUMMY_KEYS = None
_IPAD = int.from_bytes(b"\x36" * 64, "big")
_OPAD = int.from_bytes(b"\x5c" * 64, "big")


class FastKeys:
    """Derived keys of one device key (SPEC 4.1), with HMAC pads pre-absorbed."""

    __slots__ = ("_inner", "_outer", "_ecb")

    def __init__(self, key):
        key = bytes(key)
        if len(key) != KEY_LEN:
            raise ValueError("device key must be 16 bytes")
        mac_key = hmac.digest(key, b"vigil-mac-v2", "sha256")
        enc_key = hmac.digest(key, b"vigil-enc-v2", "sha256")[:KEY_LEN]
        padded = int.from_bytes(mac_key + bytes(64 - len(mac_key)), "big")
        self._inner = hashlib.sha256((padded ^ _IPAD).to_bytes(64, "big"))
        self._outer = hashlib.sha256((padded ^ _OPAD).to_bytes(64, "big"))
        self._ecb = Cipher(algorithms.AES(enc_key), modes.ECB()).encryptor().update

    def tag(self, msg):
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_LEN]

    def xor(self, device_id, downlink, counter, key_id, data):
        """AES-128-CTR with the SPEC 4.3 counter block; its own inverse."""
        size = len(data)
        if not size:
            return b""
        prefix = _NONCE.pack(device_id, 1 if downlink else 0, counter, key_id)
        stream = self._ecb(prefix.join(_NONCE_TAILS[(size + 15) >> 4]))
        return (int.from_bytes(data, "big") ^ int.from_bytes(stream[:size], "big")).to_bytes(
            size, "big")


class Keyring(dict):
    """Device keys (FastKeys) by (device_id, key_id), like `codec.Keyring`."""

    def add(self, device_id, key_id, key):
        self[(device_id, key_id)] = FastKeys(key)


# ---------------------------------------------------------------------------------------------
# Payload codec: one encoder and one decoder per message type, built from messages.MESSAGES.

def _fix_values(fix):
    try:
        return [fix[name] for name in FIX_FIELDS]
    except (KeyError, TypeError):
        raise PayloadError("fix needs the keys " + ",".join(FIX_FIELDS)) from None


def _check_ints(values, what):
    # struct accepts bool and __index__ objects; the portable codec wants plain ints.
    for value in values:
        if not isinstance(value, int):
            raise PayloadError("%s out of range: %r" % (what, value))


def _check_config(key, value):
    limits = config_keys.CONFIG_KEYS.get(key)
    if limits is None:
        raise PayloadError("unknown config key %r" % (key,))
    if not isinstance(value, int) or value < limits[1] or value > limits[2]:
        raise PayloadError("config %s=%r outside %d..%d" % (limits[0], value, limits[1],
                                                            limits[2]))


def _make_encoder(name, head, names, kind):
    head_struct = struct.Struct(head)
    fix_name = messages.FIX_NAME.get(name)

    def encode(fields):
        try:
            values = [fields[n] for n in names]
        except KeyError as e:
            raise PayloadError("%s needs field %s" % (name, e.args[0])) from None
        _check_ints(values, name)
        try:
            out = head_struct.pack(*values)
            if kind == "":
                return out
            if kind == "fix":
                fix = fields.get(fix_name)
                if fix is None:
                    return out + bytes(1 + _FIX.size)
                values = _fix_values(fix)
                _check_ints(values, "fix field")
                return out + b"\x01" + _FIX.pack(*values)
            if kind == "fixes":
                fixes = fields["fixes"]
                if not 1 <= len(fixes) <= host_tables.MAX_FIXES:
                    raise PayloadError("POSITION carries 1 to %d fixes, not %d" % (
                        host_tables.MAX_FIXES, len(fixes)))
                parts = [out, bytes((len(fixes),))]
                for fix in fixes:
                    values = _fix_values(fix)
                    _check_ints(values, "fix field")
                    parts.append(_FIX.pack(*values))
                return b"".join(parts)
            if kind == "items":
                items = fields["items"]
                if len(items) > host_tables.MAX_CONFIG_ITEMS:
                    raise PayloadError("CONFIG carries at most %d items" %
                                       host_tables.MAX_CONFIG_ITEMS)
                parts = [out, bytes((len(items),))]
                for key, value in items:
                    _check_config(key, value)
                    parts.append(_ITEM.pack(key, value))
                return b"".join(parts)
            return out + bytes(fields["data"])  # "data"
        except struct.error as e:
            raise PayloadError("%s out of range: %s" % (name, e)) from None

    return encode


def _dict_maker(names):
    """A function tuple -> dict with `names` as keys: a dict display is twice as fast as
    dict(zip(...)), so it is generated once from the table (as namedtuple does)."""
    return eval("lambda t: {%s}" % ", ".join("%r: t[%d]" % (n, i) for i, n in enumerate(names)))


_fix_dict = _dict_maker(FIX_FIELDS)


def _exact_decoder(head_struct, names):
    """payload -> fields dict in one generated function: unpack (raises struct.error unless the
    length is exact) then a dict display."""
    args = ", ".join("v%d" % i for i in range(len(names)))
    source = "def decode(payload, _unpack=_unpack):\n    %s, = _unpack(payload)\n    return {%s}" % (
        args, ", ".join("%r: v%d" % (n, i) for i, n in enumerate(names)))
    namespace = {"_unpack": head_struct.unpack}
    exec(source, namespace)
    return namespace["decode"]


def _make_decoder(name, head, names, kind):
    head_struct = struct.Struct(head)
    head_size = head_struct.size
    unpack = head_struct.unpack_from
    make = _dict_maker(names)
    fix_name = messages.FIX_NAME.get(name)
    fix_unpack = _FIX.unpack_from
    fix_size = _FIX.size

    if kind == "":
        exact = _exact_decoder(head_struct, names)

        def decode(payload):
            try:
                return exact(payload)  # Struct.unpack insists on the exact length
            except struct.error:
                pass
            if len(payload) < head_size:
                raise PayloadError("%s payload too short" % name)
            raise PayloadError("%s payload has %d extra bytes" % (name, len(payload) - head_size))
    elif kind == "fix":
        def decode(payload):
            if len(payload) != head_size + 1 + fix_size:
                if len(payload) < head_size:
                    raise PayloadError("%s payload too short" % name)
                raise PayloadError("%s payload has the wrong length" % name)
            fields = make(unpack(payload))
            has_fix = payload[head_size]
            if has_fix > 1:
                raise PayloadError("%s has_fix must be 0 or 1" % name)
            fields[fix_name] = (_fix_dict(fix_unpack(payload, head_size + 1))
                                if has_fix else None)
            return fields
    elif kind == "fixes":
        def decode(payload):
            size = len(payload)
            if size < head_size + 1:
                raise PayloadError("POSITION payload too short")
            count = payload[head_size]
            if not 1 <= count <= host_tables.MAX_FIXES or size != head_size + 1 + count * fix_size:
                raise PayloadError("POSITION fix count does not match its length")
            fields = make(unpack(payload))
            fields["fixes"] = [_fix_dict(fix_unpack(payload, offset))
                               for offset in range(head_size + 1, size, fix_size)]
            return fields
    elif kind == "items":
        def decode(payload):
            size = len(payload)
            if size < head_size + 1:
                raise PayloadError("CONFIG payload too short")
            count = payload[head_size]
            if count > host_tables.MAX_CONFIG_ITEMS or size != head_size + 1 + count * 5:
                raise PayloadError("CONFIG item count does not match its length")
            fields = make(unpack(payload))
            items = list(_ITEM.iter_unpack(payload[head_size + 1:]))
            for key, value in items:
                _check_config(key, value)
            fields["items"] = items
            return fields
    else:  # "data"
        def decode(payload):
            if len(payload) < head_size:
                raise PayloadError("%s payload too short" % name)
            fields = make(unpack(payload))
            fields["data"] = bytes(payload[head_size:])
            return fields
    return decode


# name -> (code, direction, encode); code -> (name, direction, decode)
_ENCODERS = {}
_DECODERS = {}
for _code, _name, _direction, _head, _names, _kind in messages.MESSAGES:
    _ENCODERS[_name] = (_code, _direction, _make_encoder(_name, _head, _names, _kind))
    _DECODERS[_code] = (_name, _direction, _make_decoder(_name, _head, _names, _kind))


def encode_payload(name, fields):
    """The plaintext payload of one message (what `messages.encode_into` writes)."""
    entry = _ENCODERS.get(name)
    if entry is None:
        raise PayloadError("unknown message " + str(name))
    return entry[2](fields)


def decode_payload(code, payload):
    """Like `messages.decode`: returns (name, fields) or raises PayloadError."""
    entry = _DECODERS.get(code)
    if entry is None:
        raise PayloadError("unknown type")
    return entry[0], entry[2](payload)


# ---------------------------------------------------------------------------------------------

class FastSender:
    """Same contract as `codec.Sender`; byte-identical frames."""

    def __init__(self, device_id, key_id, key, downlink=False, counter=1):
        self.device_id = device_id
        self.key_id = key_id
        self.downlink = downlink
        self.counter = counter
        self._keys = FastKeys(key)

    def seal(self, name, fields, flags=0, counter=None):
        entry = _ENCODERS.get(name)
        if entry is None:
            raise PayloadError("unknown message " + str(name))
        code, direction, encode = entry
        if direction != host_tables.BOTH and (direction == host_tables.DOWN) != self.downlink:
            raise PayloadError("%s cannot be sent in this direction" % name)
        if not isinstance(flags, int) or flags & ~_KNOWN_FLAGS or flags < 0:
            raise PayloadError("flags 0x%x: only ACK_REQ and TEST exist" % flags)
        advance = counter is None
        if advance:
            counter = self.counter
        if not 0 < counter <= 0xFFFFFFFF:
            raise PayloadError("counter out of range")
        flags |= host_tables.default_flags(name)
        payload = encode(fields)
        pad = _PAD.get(len(payload))
        if pad is None:
            raise PayloadError("%s payload exceeds %d bytes" % (name, host_tables.MAX_PAYLOAD))
        try:
            head = _HEADER.pack(VERSION, 1 if self.downlink else 0, self.key_id,
                                self.device_id, counter)
        except struct.error as e:
            raise PayloadError("header out of range: %s" % e) from None
        if advance:
            self.counter = counter + 1
        sealed = self._keys.xor(self.device_id, self.downlink, counter, self.key_id,
                                bytes((code, flags, len(payload))) + payload + pad[1])
        body = head + sealed
        body += self._keys.tag(body)
        return _cobs_encode(body + _CRC.pack(crc_hqx(body, 0xFFFF))) + b"\x00"


def _dummy_keys():
    global _DUMMY_KEYS
    if _DUMMY_KEYS is None:
        _DUMMY_KEYS = FastKeys(b"vigil-no-such-k!")
    return _DUMMY_KEYS


class FastReceiver(codec.Receiver):
    """Same contract as `codec.Receiver` (same checks in the same order, same reasons); only
    `open` is its own, and `feed` and `window` are the codec's."""

    def __init__(self, keyring, downlink=False, check_replay=True, test_mode=False):
        super().__init__(keyring, downlink, check_replay, test_mode)
        if not isinstance(keyring, Keyring):
            raise TypeError("FastReceiver needs a host_fast.Keyring (it keeps raw-key states)")
        self._lookup = keyring.get  # one C call per frame
        self._side = 1 if downlink else 0

    def open(self, block, _cobs_decode=_cobs_decode, _crc=crc_hqx,
             _unpack_header=_HEADER.unpack_from):
        # Literals instead of the named constants: this is the hot path (SPEC 9 order).
        if len(block) > 242:  # MAX_WIRE - 1
            raise FrameError("oversize", "%d stuffed bytes" % len(block))
        try:
            body = _cobs_decode(block)
        except DecodeError as e:
            raise FrameError("bad_cobs", str(e)) from None
        size = len(body)
        if not 22 <= size <= 240:  # no frame of either version is shorter .. MAX_FRAME
            if size < _MIN_BODY:
                raise FrameError("truncated", "%d bytes" % size)
            raise FrameError("oversize", "%d bytes" % size)
        if _crc(body, 0xFFFF):  # a CRC over data + its CRC leaves 0 (no xorout)
            raise FrameError("bad_crc")
        if body[0] != 2:
            raise FrameError("bad_version", host_tables.version_detail(body[0]))
        if size < 53:  # MIN_FRAME
            raise FrameError("truncated", "%d bytes" % size)
        version, direction, key_id, device_id, counter = _unpack_header(body)
        keys = self._lookup((device_id, key_id))
        inner = (keys or _dummy_keys())._inner.copy()  # FastKeys.tag, inlined
        inner.update(body[:-10])
        outer = (keys or _dummy_keys())._outer.copy()
        outer.update(inner.digest())
        if keys is None:
            raise FrameError("unknown_key", "device %d key %d" % (device_id, key_id))
        if not hmac.compare_digest(outer.digest()[:8], body[-10:-2]):
            raise FrameError("bad_tag", "device %d key %d" % (device_id, key_id))
        if direction != self._side or not counter or size - 21 not in _SEALED:
            return codec.Receiver.open(self, block)  # refused there, in the same words
        sealed = keys.xor(device_id, direction, counter, key_id, body[11:-10])
        code, flags, length = sealed[0], sealed[1], sealed[2]
        entry = _DECODERS.get(code)
        if (entry is None or flags & ~_KNOWN_FLAGS or code == _TEST_INJECT or
                _PAD.get(length, (0,))[0] != len(sealed) or
                sealed[3 + length:] != _PAD[length][1]):
            # A refusal, or a TEST_INJECT: the portable codec has the words and the rules.
            return codec.Receiver.open(self, block)
        name, way, decode = entry
        if way != host_tables.BOTH and (way == host_tables.DOWN) != self.downlink:
            raise FrameError("wrong_direction", name)
        try:
            fields = decode(sealed[3:3 + length])
        except PayloadError as e:
            raise FrameError("bad_payload", str(e)) from None
        frame = Frame(code, name, flags | (FLAG_DOWNLINK if direction else 0), key_id,
                      device_id, counter, fields, body)
        if self.check_replay:
            if self.floors and code != 0x10 and counter <= self.floors.get((device_id, key_id),
                                                                            0):
                raise FrameError("replayed", "at or below the floor")
            window = self.windows.get((device_id, key_id))
            if window is None:
                window = self.windows[(device_id, key_id)] = ReplayWindow()
            highest = window.highest
            if 0 < counter - highest <= 64 and highest:  # in order: ReplayWindow.accept inlined
                window.bitmap = (((window.bitmap << (counter - highest)) |
                                  (1 << (counter - highest - 1))) & 0xFFFFFFFFFFFFFFFF)
                window.highest = counter
            else:
                if window.seen(counter):
                    raise FrameError("replayed", "device %d key %d counter %d" % (
                        device_id, key_id, counter), frame)
                window.accept(counter)
            if self.on_accept is not None:
                self.on_accept(device_id, key_id, window)
        return frame


def _unstuff_each(blocks):
    """COBS-decode every block; a block that is not COBS becomes b"" (refused as too short)."""
    out = []
    for start in range(0, len(blocks), _STREAM_CHUNK):
        chunk = blocks[start:start + _STREAM_CHUNK]
        try:
            decoded = list(map(_cobs_decode, chunk))  # all in C while no block is malformed
        except DecodeError:
            for block in chunk:
                try:
                    out.append(_cobs_decode(block))
                except DecodeError:
                    out.append(b"")
        else:
            out += decoded
    return out


_STREAM_CHUNK = 256


def split_stream(buf):
    """Batched framing pass over a whole captured stream (no keys needed).

    Splits at 0x00, unstuffs, checks sizes and CRCs and parses headers, each step mapped over
    the whole batch in C. Returns (headers, bodies, refused): `headers[i]` is the tuple
    (version, direction, key_id, device_id, counter) of `bodies[i]`, for every frame whose
    framing is sound, in stream order; `refused` counts the non-empty blocks refused (bad
    COBS, size or CRC). Tags are not verified here: a FastReceiver does that per frame.
    """
    # A million header tuples would set off the cyclic GC dozens of times, for nothing: none
    # of these objects can form a cycle.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        blocks = list(filter(None, bytes(buf).split(b"\x00")))  # 0x00 runs are idle line
        bodies = _unstuff_each(blocks)
        # Oversize blocks unstuff to over 240 bytes, so one size test covers them too.
        good = [b for b in bodies if MIN_FRAME <= len(b) <= MAX_FRAME]
        good = list(compress(good, map(not_, map(crc_hqx, good, repeat(0xFFFF)))))
        return list(map(_HEADER.unpack_from, good)), good, len(blocks) - len(good)
    finally:
        if gc_was_enabled:
            gc.enable()
