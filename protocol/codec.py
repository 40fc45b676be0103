"""Sans-IO frame codec of protocol v2, shared unchanged by firmware and host (SPEC.md).

    sender = Sender(device_id, key_id, key)          # one per device and direction
    wire = sender.seal("HEARTBEAT", fields)          # COBS bytes ending in 0x00
    receiver = Receiver(keyring)
    for item in receiver.feed(wire):                 # Frame or FrameError, never raises
        ...

Layout of the unstuffed frame body (big-endian):
    version u8 = 2 | direction u8 | key_id u8 | device_id u32 | counter u32 |   routing, clear
    sealed: AES-128-CTR of (type u8 | flags u8 | length u8 | payload | zero padding),
            padded to one of SEALED_SIZES so the length tells little about the type |
    tag 8 bytes = HMAC-SHA256(mac_key, everything before it)[:8] |
    crc u16 = CRC-16/CCITT-FALSE of everything before it
Only what a receiver needs to find the key and the nonce stays clear; the message type,
flags and every payload are encrypted and authenticated.
"""
import struct

from protocol import framing, messages
from protocol.crypto import TAG_LEN, Keys

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Private consts cost the device nothing (mpy-cross inlines them); protocol/host_tables.py
# publishes them for the host under their names (VERSION, MAX_FRAME, FLAG_TEST, ...).
_VERSION = const(2)
_HEADER_SIZE = const(11)
_INNER_SIZE = const(3)  # type, flags, length: the first sealed bytes
_CRC_SIZE = const(2)
_MAX_FRAME = const(240)  # unstuffed; COBS adds 1 byte per 254 at most: one BLE ATT write
# Sealed sizes (SPEC 3.4): a sealed part is always the smallest of these that holds
# INNER_SIZE + payload, so an observer learns only the bucket, never the exact length.
SEALED_SIZES = (32, 48, 96, 144, 219)
_MAX_PAYLOAD = const(216)  # the largest sealed size (MAX_FRAME - HEADER_SIZE - TAG_LEN -
# CRC_SIZE) less INNER_SIZE
_MIN_FRAME = const(53)  # HEADER_SIZE + SEALED_SIZES[0] + TAG_LEN + CRC_SIZE
_MAX_WIRE = const(243)  # stuffed frame plus its 0x00 delimiter
_REPLAY_WINDOW = const(64)
TEST_KEY_ID = const(0xFF)

# Sealed flags (inside the ciphertext).
_FLAG_ACK_REQ = const(1)
_FLAG_TEST = const(16)
_KNOWN_FLAGS = const(17)
# Not a sealed bit: Frame.flags carries it for a downlink, from the clear direction byte.
_FLAG_DOWNLINK = const(8)

_HEADER_FORMAT = ">BBBII"
_TEST_INJECT = const(0x86)
_ACK = const(0x10)
_V1_MIN_FRAME = const(22)  # no frame of either version is shorter: below is truncated


def sealed_size(payload_len):
    """The padded size of the sealed part for a payload of `payload_len` bytes, or 0."""
    need = _INNER_SIZE + payload_len
    for size in SEALED_SIZES:
        if need <= size:
            return size
    return 0


class FrameError(Exception):
    """A frame from the peer was refused. `reason` is one of host_tables.REASONS; `frame` is
    set for "replayed" (an authentic duplicate, which must be acked again but not delivered
    twice). str() gives "reason: detail"."""

    def __init__(self, reason, detail="", frame=None):
        super().__init__(reason + ": " + detail if detail else reason)
        self.reason = reason
        self.detail = detail
        self.frame = frame


class Frame:
    """One authenticated, decrypted and decoded frame. `flags` holds the sealed flags, plus
    FLAG_DOWNLINK for a downlink; `ack_requested` and `downlink` tell those two bits.
    `historic` is not on the wire (SPEC 3.3): a receiver that tells a late record from a
    live one (the centre) sets it."""

    def __init__(self, type_code, name, flags, key_id, device_id, counter, fields, raw):
        self.type = type_code
        self.name = name
        self.flags = flags
        self.ack_requested = bool(flags & _FLAG_ACK_REQ)
        self.downlink = bool(flags & _FLAG_DOWNLINK)
        self.key_id = key_id
        self.device_id = device_id
        self.counter = counter
        self.fields = fields
        self.raw = raw
        self.historic = False


class Keyring(dict):
    """Device keys (crypto.Keys) by (device_id, key_id); key_id allows rotation (SPEC 4.1)."""

    def add(self, device_id, key_id, key):
        self[(device_id, key_id)] = Keys(bytes(key))


class Sender:
    """Seals frames of one device in one direction. `counter` is the next counter to use;
    the caller persists it (reserve-ahead, SPEC 3.3). Sealing is deterministic: the same
    counter, message and flags give the same bytes, so a retransmission never reuses a CTR
    keystream over a different plaintext. `key` is the 16-byte device key, or the
    crypto.Keys a Keyring already derived from it (the device shares its one: ~0.9 KB of
    pads and AES context less on its heap)."""

    def __init__(self, device_id, key_id, key, downlink=False, counter=1):
        self.device_id = device_id
        self.key_id = key_id
        self.downlink = downlink
        self.counter = counter
        self._keys = key if isinstance(key, Keys) else Keys(bytes(key))
        self._buf = bytearray(_MAX_FRAME)

    def seal(self, name, fields, flags=0, counter=None):
        """Return the wire bytes of one frame (COBS, 0x00-terminated). A given `counter`
        re-seals a retransmission; otherwise the next counter is used and advanced."""
        entry = messages.find(name)
        if entry is None:
            raise messages.PayloadError("unknown message %r" % (name,))
        direction = entry[2]
        if direction != "both" and (direction == "down") != self.downlink:
            raise messages.PayloadError("%s cannot be sent in this direction" % name)
        if flags & ~_KNOWN_FLAGS:  # only ACK_REQ and TEST
            raise messages.PayloadError("flags %d" % flags)
        advance = counter is None
        if advance:
            counter = self.counter
        if not 0 < counter <= 0xFFFFFFFF:
            raise messages.PayloadError("counter %d" % counter)
        if name != "ACK":  # SPEC 8: every frame but ACK asks for a transport ACK
            flags |= _FLAG_ACK_REQ
        buf = self._buf
        start = _HEADER_SIZE + _INNER_SIZE
        end = messages.encode_into(buf, start, entry, fields)
        size = sealed_size(end - start)
        if not size:
            raise messages.PayloadError("%s payload exceeds %d bytes" % (name, _MAX_PAYLOAD))
        if advance:
            self.counter = counter + 1
        sealed_end = _HEADER_SIZE + size
        for i in range(end, sealed_end):
            buf[i] = 0
        struct.pack_into(_HEADER_FORMAT, buf, 0, _VERSION, 1 if self.downlink else 0,
                         self.key_id, self.device_id, counter)
        buf[_HEADER_SIZE] = entry[0]
        buf[_HEADER_SIZE + 1] = flags
        buf[_HEADER_SIZE + 2] = end - start
        buf[_HEADER_SIZE:sealed_end] = self._keys.xor(
            self.device_id, self.downlink, counter, self.key_id,
            bytes(buf[_HEADER_SIZE:sealed_end]))
        body = memoryview(buf)
        buf[sealed_end:sealed_end + TAG_LEN] = self._keys.tag(body[:sealed_end])
        end = sealed_end + TAG_LEN
        struct.pack_into(">H", buf, end, framing.crc16(body[:end]))
        end += _CRC_SIZE
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
        if offset > _REPLAY_WINDOW:
            return True  # too old to tell: refused as a replay
        return bool(self.bitmap >> (offset - 1) & 1)

    def accept(self, counter):
        if counter > self.highest:
            shift = counter - self.highest
            if shift > _REPLAY_WINDOW:
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
    True for a device. `test_mode` accepts TEST_INJECT under the test key id. Replay windows
    are per (device_id, key_id): the direction is the receiver's own side (SPEC 4.4). A
    counter at or below `floors[(device_id, key_id)]` is refused "replayed" without its
    frame, so that it is not acked (SPEC 4.4: a device's floor after a reset).
    `on_accept(device_id, key_id, window)` is called whenever a window moves, before the
    frame is returned, so a device can persist it (reserve-ahead, firmware/persist.py)."""

    def __init__(self, keyring, downlink=False, check_replay=True, test_mode=False):
        self.keyring = keyring
        self.downlink = downlink
        self.check_replay = check_replay
        self.test_mode = test_mode
        self.windows = {}
        # (device_id, key_id) -> floor: counters at or below it are refused "replayed" and
        # not acked (a device's window floor after a reset, firmware/persist.DownlinkFloor).
        self.floors = {}
        self.deframer = Deframer()
        self.on_accept = None

    def window(self, device_id, key_id):
        window = self.windows.get((device_id, key_id))
        if window is None:
            window = self.windows[(device_id, key_id)] = ReplayWindow()
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
        """Open one COBS block (without its delimiter). Returns a Frame or raises FrameError.
        The checks run in SPEC 9's order, the same in every implementation."""
        if len(block) > _MAX_WIRE - 1:
            raise FrameError("oversize", "%d stuffed bytes" % len(block))
        try:
            body = framing.cobs_decode(block)
        except ValueError as e:
            raise FrameError("bad_cobs", str(e))
        size = len(body)
        if size > _MAX_FRAME:
            raise FrameError("oversize", "%d bytes" % size)
        if size < _V1_MIN_FRAME:
            raise FrameError("truncated", "%d bytes" % size)
        end = size - _CRC_SIZE
        mv = memoryview(body)
        if framing.crc16(mv[:end]) != (body[end] << 8 | body[end + 1]):
            raise FrameError("bad_crc")
        if body[0] != _VERSION:
            raise FrameError("bad_version", "v%d frame, v2 expected" % body[0])
        if size < _MIN_FRAME:
            raise FrameError("truncated", "%d bytes" % size)
        version, direction, key_id, device_id, counter = struct.unpack_from(
            _HEADER_FORMAT, body, 0)
        keys = self.keyring.get((device_id, key_id))
        if keys is None:
            # Only the local log sees this reason. A host receiver facing strangers (the
            # centre, host_fast) also spends an HMAC here, so timing does not tell it apart
            # from bad_tag (SPEC 4.2); a device has one key and nothing to hide by it.
            raise FrameError("unknown_key", "device %d key %d" % (device_id, key_id))
        tag_at = end - TAG_LEN
        if keys.tag(mv[:tag_at]) != body[tag_at:end]:
            raise FrameError("bad_tag", "device %d key %d" % (device_id, key_id))
        # The clear header's rules, checked once the tag matched (SPEC 9, steps 7-8).
        sealed_len = tag_at - _HEADER_SIZE
        if direction > 1:
            raise FrameError("bad_payload", "direction %d" % direction)
        if direction != self.downlink:
            raise FrameError("wrong_direction")
        if counter == 0:
            raise FrameError("bad_payload", "counter 0")
        if sealed_len not in SEALED_SIZES:
            raise FrameError("bad_payload", "size %d" % sealed_len)
        # The decrypted type, flags, length and padding (SPEC 9, steps 9-13).
        sealed = keys.xor(device_id, direction, counter, key_id, body[_HEADER_SIZE:tag_at])
        code, flags, length = sealed[0], sealed[1], sealed[2]
        entry = messages.find(code)
        if entry is None:
            raise FrameError("unknown_type", "type 0x%02x" % code)
        if entry[2] != "both" and (entry[2] == "down") != self.downlink:
            raise FrameError("wrong_direction", entry[1])
        if flags & ~_KNOWN_FLAGS:
            raise FrameError("bad_payload", "flags %d" % flags)
        end = _INNER_SIZE + length
        if sealed_size(length) != sealed_len:
            raise FrameError("bad_payload", "length %d" % length)
        for i in range(end, sealed_len):
            if sealed[i]:
                raise FrameError("bad_payload", "padding")
        if code == _TEST_INJECT and not (self.test_mode and key_id == TEST_KEY_ID and
                                         flags & _FLAG_TEST):
            raise FrameError("test_only")  # TEST_INJECT: a test build, test key and flag
        try:
            fields = messages.decode(entry, sealed[_INNER_SIZE:end])
        except messages.PayloadError as e:
            raise FrameError("bad_payload", str(e))
        frame = Frame(code, entry[1], flags | (_FLAG_DOWNLINK if direction else 0), key_id,
                      device_id, counter, fields, body)
        if self.check_replay:
            # ACK is exempt: an old ACK only repeats what was true (those counters did
            # arrive), and it is what tells a reset device that the link is back.
            if code != _ACK and counter <= self.floors.get((device_id, key_id), 0):
                raise FrameError("replayed", "at or below the floor")  # no frame: no ack
            window = self.window(device_id, key_id)
            if window.seen(counter):
                raise FrameError("replayed", "counter %d" % counter, frame)
            window.accept(counter)
            if self.on_accept is not None:
                self.on_accept(device_id, key_id, window)
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
                if len(pending) > _MAX_WIRE - 1:
                    self.dropped_bytes += len(pending)
                    items.append(FrameError("oversize", "%d stuffed bytes" % len(pending)))
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
