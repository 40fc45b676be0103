"""Sans-IO frame codec of protocol v1, shared unchanged by firmware and host (SPEC.md).

    sender = Sender(device_id, key_id, key)          # one per device and direction
    wire = sender.seal("HEARTBEAT", fields)          # COBS bytes ending in 0x00
    receiver = Receiver(keyring)
    for item in receiver.feed(wire):                 # Frame or FrameError, never raises
        ...

Layout of the unstuffed frame body (big-endian):
    version u8 | type u8 | flags u8 | key_id u8 | device_id u32 | counter u32 |
    payload (AES-128-CTR ciphertext for location messages) |
    tag 8 bytes = HMAC-SHA256(mac_key, everything before it)[:8] |
    crc u16 = CRC-16/CCITT-FALSE of everything before it
"""
import struct

from protocol import framing, messages
from protocol.crypto import TAG_LEN, Ctr, Hmac, derive_keys

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

VERSION = const(1)
HEADER_SIZE = const(12)
CRC_SIZE = const(2)
MAX_FRAME = const(240)  # unstuffed; COBS adds at most 1 byte per 254, so one BLE ATT write
MAX_PAYLOAD = const(218)  # MAX_FRAME - HEADER_SIZE - TAG_LEN - CRC_SIZE
MAX_WIRE = const(243)  # stuffed frame plus its 0x00 delimiter
REPLAY_WINDOW = const(64)
TEST_KEY_ID = const(0xFF)

FLAG_ACK_REQ = const(1)
FLAG_HISTORIC = const(2)
FLAG_ENCRYPTED = const(4)
FLAG_DOWNLINK = const(8)
FLAG_TEST = const(16)
_KNOWN_FLAGS = const(31)

_HEADER_FORMAT = ">BBBBII"

REASONS = ("bad_cobs", "bad_crc", "truncated", "oversize", "bad_version", "unknown_type",
           "unknown_key", "bad_tag", "replayed", "bad_payload", "wrong_direction", "test_only")


class FrameError(Exception):
    """A frame from the peer was refused. `reason` is one of REASONS; `frame` is set for
    "replayed" (an authentic duplicate, which must be acked again but not delivered twice)."""

    def __init__(self, reason, detail="", frame=None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.frame = frame

    def __str__(self):
        return self.reason + (": " + self.detail if self.detail else "")


class Frame:
    """One authenticated, decrypted and decoded frame."""

    def __init__(self, type_code, name, flags, key_id, device_id, counter, fields, raw):
        self.type = type_code
        self.name = name
        self.flags = flags
        self.key_id = key_id
        self.device_id = device_id
        self.counter = counter
        self.fields = fields
        self.raw = raw

    @property
    def historic(self):
        return bool(self.flags & FLAG_HISTORIC)

    @property
    def ack_requested(self):
        return bool(self.flags & FLAG_ACK_REQ)

    @property
    def downlink(self):
        return bool(self.flags & FLAG_DOWNLINK)

    def __repr__(self):
        return "Frame(%s dev=%d ctr=%d flags=%d %r)" % (
            self.name, self.device_id, self.counter, self.flags, self.fields)


class _Keys:
    def __init__(self, key):
        mac_key, enc_key = derive_keys(key)
        self.mac = Hmac(mac_key)
        self.ctr = Ctr(enc_key)


class Keyring:
    """Device keys by (device_id, key_id); key_id allows rotation (SPEC 4.1)."""

    def __init__(self):
        self._keys = {}

    def add(self, device_id, key_id, key):
        self._keys[(device_id, key_id)] = _Keys(bytes(key))

    def get(self, device_id, key_id):
        return self._keys.get((device_id, key_id))

    def remove(self, device_id, key_id):
        self._keys.pop((device_id, key_id), None)


def default_flags(name):
    """The flags SPEC 8 asks for: every frame but ACK asks for a transport ACK, and location
    messages are always encrypted."""
    flags = 0 if name == "ACK" else FLAG_ACK_REQ
    if name in messages.ENCRYPTED:
        flags |= FLAG_ENCRYPTED
    return flags


class Sender:
    """Seals frames of one device in one direction. `counter` is the next counter to use;
    the caller persists it (reserve-ahead, SPEC 3.3)."""

    def __init__(self, device_id, key_id, key, downlink=False, counter=1):
        self.device_id = device_id
        self.key_id = key_id
        self.downlink = downlink
        self.counter = counter
        self._keys = _Keys(bytes(key))
        self._buf = bytearray(MAX_FRAME)

    def seal(self, name, fields, flags=0, counter=None):
        """Return the wire bytes of one frame (COBS, 0x00-terminated). A given `counter`
        re-seals a retransmission; otherwise the next counter is used and advanced."""
        spec = messages.BY_NAME.get(name)
        if spec is None:
            raise messages.PayloadError("unknown message " + str(name))
        direction = spec[2]
        if direction != messages.BOTH and (direction == messages.DOWN) != self.downlink:
            raise messages.PayloadError("%s cannot be sent in this direction" % name)
        if counter is None:
            counter = self.counter
            self.counter = counter + 1
        if not 0 < counter <= 0xFFFFFFFF:
            raise messages.PayloadError("counter out of range")
        flags |= default_flags(name)
        if self.downlink:
            flags |= FLAG_DOWNLINK
        buf = self._buf
        try:
            end = messages.encode_into(buf, HEADER_SIZE, name, fields)
        except IndexError:
            raise messages.PayloadError("%s payload exceeds %d bytes" % (name, MAX_PAYLOAD))
        if end > MAX_FRAME - TAG_LEN - CRC_SIZE:
            raise messages.PayloadError("%s payload exceeds %d bytes" % (name, MAX_PAYLOAD))
        struct.pack_into(_HEADER_FORMAT, buf, 0, VERSION, spec[0], flags, self.key_id,
                         self.device_id, counter)
        if flags & FLAG_ENCRYPTED:
            buf[HEADER_SIZE:end] = self._keys.ctr.xor(
                self.device_id, self.downlink, counter, bytes(buf[HEADER_SIZE:end]))
        body = memoryview(buf)
        buf[end:end + TAG_LEN] = self._keys.mac.digest(body[:end])[:TAG_LEN]
        end += TAG_LEN
        struct.pack_into(">H", buf, end, framing.crc16(body[:end]))
        end += CRC_SIZE
        return framing.cobs_encode(bytes(buf[:end])) + b"\x00"


class ReplayWindow:
    """Sliding anti-replay window (SPEC 4.4): `highest` seen plus a bitmap of the 64
    counters below it. Reordered frames inside the window are accepted once."""

    def __init__(self, highest=0, bitmap=0):
        self.highest = highest
        self.bitmap = bitmap

    def seen(self, counter):
        if counter > self.highest:
            return False
        offset = self.highest - counter
        if offset == 0:
            return self.highest != 0
        if offset > REPLAY_WINDOW:
            return True  # too old to tell: refused as a replay
        return bool(self.bitmap >> (offset - 1) & 1)

    def accept(self, counter):
        if counter > self.highest:
            shift = counter - self.highest
            if shift > REPLAY_WINDOW:
                self.bitmap = 0
            else:
                self.bitmap = ((self.bitmap << shift) | (1 << (shift - 1))) & 0xFFFFFFFFFFFFFFFF
            if self.highest == 0:
                self.bitmap = 0
            self.highest = counter
        elif counter < self.highest:
            self.bitmap |= 1 << (self.highest - counter - 1)


class Receiver:
    """Opens frames addressed to one side: `downlink=False` for the centre (receives uplinks),
    True for a device. `test_mode` accepts TEST_INJECT under the test key id."""

    def __init__(self, keyring, downlink=False, check_replay=True, test_mode=False):
        self.keyring = keyring
        self.downlink = downlink
        self.check_replay = check_replay
        self.test_mode = test_mode
        self.windows = {}
        self.deframer = Deframer()

    def window(self, device_id):
        window = self.windows.get(device_id)
        if window is None:
            window = self.windows[device_id] = ReplayWindow()
        return window

    def feed(self, data):
        """Feed raw bytes; return a list of Frame and FrameError items in arrival order."""
        items = []
        for block in self.deframer.feed(data):
            if isinstance(block, FrameError):
                items.append(block)
                continue
            try:
                items.append(self.open(block))
            except FrameError as e:
                items.append(e)
        return items

    def open(self, block):
        """Open one COBS block (without its delimiter). Returns a Frame or raises FrameError."""
        if len(block) > MAX_WIRE - 1:
            raise FrameError("oversize", "%d stuffed bytes" % len(block))
        try:
            body = framing.cobs_decode(block)
        except ValueError as e:
            raise FrameError("bad_cobs", str(e))
        size = len(body)
        if size < HEADER_SIZE + TAG_LEN + CRC_SIZE:
            raise FrameError("truncated", "%d bytes" % size)
        if size > MAX_FRAME:
            raise FrameError("oversize", "%d bytes" % size)
        end = size - CRC_SIZE
        mv = memoryview(body)
        if framing.crc16(mv[:end]) != (body[end] << 8 | body[end + 1]):
            raise FrameError("bad_crc")
        version, code, flags, key_id, device_id, counter = struct.unpack_from(
            _HEADER_FORMAT, body, 0)
        if version != VERSION:
            raise FrameError("bad_version", "version %d" % version)
        spec = messages.BY_TYPE.get(code)
        if spec is None:
            raise FrameError("unknown_type", "type 0x%02x" % code)
        keys = self.keyring.get(device_id, key_id)
        if keys is None:
            raise FrameError("unknown_key", "device %d key %d" % (device_id, key_id))
        tag_at = end - TAG_LEN
        if keys.mac.digest(mv[:tag_at])[:TAG_LEN] != body[tag_at:end]:
            raise FrameError("bad_tag")
        return self._accept(spec, body, flags, key_id, device_id, counter, keys, tag_at)

    def _accept(self, spec, body, flags, key_id, device_id, counter, keys, tag_at):
        code, name, direction = spec[0], spec[1], spec[2]
        downlink = bool(flags & FLAG_DOWNLINK)
        if downlink != self.downlink or (direction != messages.BOTH and
                                         (direction == messages.DOWN) != downlink):
            raise FrameError("wrong_direction", name)
        if flags & ~_KNOWN_FLAGS or counter == 0:
            raise FrameError("bad_payload", "reserved flag bits or counter 0")
        if name == "TEST_INJECT" and not (self.test_mode and key_id == TEST_KEY_ID and
                                          flags & FLAG_TEST):
            raise FrameError("test_only", "TEST_INJECT is refused outside test builds")
        encrypted = name in messages.ENCRYPTED
        if encrypted != bool(flags & FLAG_ENCRYPTED):
            raise FrameError("bad_payload", "encryption flag does not match " + name)
        payload = body[HEADER_SIZE:tag_at]
        if encrypted:
            payload = keys.ctr.xor(device_id, downlink, counter, payload)
        try:
            name, fields = messages.decode(code, payload)
        except messages.PayloadError as e:
            raise FrameError("bad_payload", str(e))
        frame = Frame(code, name, flags, key_id, device_id, counter, fields, body)
        if self.check_replay:
            window = self.window(device_id)
            if window.seen(counter):
                raise FrameError("replayed", "counter %d" % counter, frame)
            window.accept(counter)
        return frame


class Deframer:
    """Splits a byte stream at 0x00 delimiters into COBS blocks (SPEC 2.3). Bytes that run
    past the largest frame without a delimiter are dropped as one "oversize" item, and the
    deframer resyncs at the next 0x00. Never raises on peer data."""

    def __init__(self):
        self._pending = bytearray()
        self._discarding = False
        self.dropped_bytes = 0

    def feed(self, data):
        items = []
        pending = self._pending
        start = 0
        length = len(data)
        while start < length:
            zero = data.find(b"\x00", start)
            chunk_end = length if zero < 0 else zero
            if self._discarding:
                self.dropped_bytes += chunk_end - start
            else:
                pending += data[start:chunk_end]
                if len(pending) > MAX_WIRE - 1:
                    self.dropped_bytes += len(pending)
                    items.append(FrameError("oversize", "no delimiter within %d bytes" % MAX_WIRE))
                    pending[:] = b""
                    self._discarding = True
            if zero < 0:
                break
            if pending:
                items.append(bytes(pending))
                pending[:] = b""
            self._discarding = False
            start = zero + 1
        return items
