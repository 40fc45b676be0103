"""Durable small state: flash files written atomically, and RTC memory for deep sleep.

API (MicroPython and CPython; uses only `os`, `struct`, `binascii` and file I/O):

    encode(obj) -> bytes; decode(data) -> obj
        A compact codec for None, bool, int (signed 64-bit), bytes, str, list/tuple (decoded
        as list) and dict. Bad data raises ValueError.
    write_file(path, obj)          atomic: write path + ".tmp", then rename over `path`, so a
                                   cut mid-write leaves the old value. File = b"VS" <H len <I
                                   crc32, then encode(obj).
    read_file(path, default=None)  the object, or `default` if missing, torn or corrupt.

    MessageCounter(path, block=256, first=1)   the protocol's 32-bit frame counter
        .resume(exact=None) -> next   call once at boot. `exact` is the counter kept in RTC
                                      memory across deep sleep (only pass it on a deep-sleep
                                      wake; RtcState.take() clears the blob so a stale copy is
                                      never reused). Without it, resume at the reserved value.
        .take() -> counter            the next counter; persists a new reservation first when
                                      the current one is used up (one flash write per `block`).
        .ensure(counter)              make sure `counter` is covered by the reservation, for a
                                      caller that lets protocol.codec.Sender count.
        .next, .reserved              next counter to use; every counter ever used is below
                                      `reserved`, which is what the file holds.
        Raises ValueError when the 32-bit space is used up (rotate the key).

    DownlinkFloor(path, block=256)   the downlink replay window's durable floor (SPEC 4.4)
        .attach(receiver, device_id, key_id, exact=None)   at boot: refuse every downlink
                                      counter up to the floor (receiver.floors), or resume
                                      `exact`, the window kept in RTC memory over deep
                                      sleep; then persist the floor ahead of every
                                      accepted counter
        .snapshot() -> bytes          the exact window, for RTC memory before deep sleep
        .reserved                     every downlink counter ever accepted is at or below it

    FlashState(state_dir="/state")  missing or corrupt files give the defaults shown
        .boot_count() -> int (0)      .bump_boot_count() -> the new count
        .load_config() -> (version, {key_id: value})   default (0, {})
        .save_config(version, items)  items: dict or (key_id, value) pairs
        .load_alarm() -> dict or None                  the active alarm, kept across reboots
        .save_alarm(alarm)            a dict, or None to clear it

    load_keys(keys_dir="/keys") -> (device_id, {key_id: key16}) or None if missing/corrupt
    save_keys(keys_dir, device_id, keys)   keys: {key_id: 16 bytes}; file keys_dir/device.key
    key_file_bytes(device_id, keys) -> bytes   the same file's content, for host provisioning

    RtcState(rtc)   rtc: any object with memory() / memory(bytes), like machine.RTC()
        .save(obj)      store `obj` (usually a dict) with a checksum; at most 2048 bytes
        .take() -> obj or None   read and clear: a blob is used once, never after a later
                                 reset that did not save it again
"""

import binascii
import os
import struct

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)


_FILE_MAGIC = b"VS"
_RTC_MAGIC = b"VR"
_FRAME = "<2sHI"
_FRAME_SIZE = const(8)
_RTC_MAX = const(2048)  # ESP32 RTC user memory
_RTC_PREFIX = const(8)  # bootguard.PREFIX_BYTES: the crash count comes first
_U32_MAX = const(0xFFFFFFFF)


# ---- codec --------------------------------------------------------------------------------


def _enc(obj, out):
    # One bytearray for the whole blob: a list of small bytes pieces (and its growing array
    # of pointers) fragments a small heap, which is what runs out first on the board.
    if obj is None:
        out.append(0x4E)  # N
    elif obj is True:
        out.append(0x54)  # T
    elif obj is False:
        out.append(0x46)  # F
    elif isinstance(obj, int):
        if not -(1 << 63) <= obj < (1 << 63):
            raise ValueError("persist: int %d does not fit 64 bits" % obj)
        out.append(0x69)  # i
        out.extend(struct.pack("<q", obj))
    elif isinstance(obj, (bytes, bytearray)):
        out.append(0x62)  # b
        out.extend(struct.pack("<H", len(obj)))
        out.extend(obj)
    elif isinstance(obj, str):
        data = obj.encode()
        out.append(0x73)  # s
        out.extend(struct.pack("<H", len(data)))
        out.extend(data)
    elif isinstance(obj, (list, tuple)):
        out.append(0x6C)  # l
        out.extend(struct.pack("<H", len(obj)))
        for item in obj:
            _enc(item, out)
    elif isinstance(obj, dict):
        out.append(0x64)  # d
        out.extend(struct.pack("<H", len(obj)))
        for key in obj:
            _enc(key, out)
            _enc(obj[key], out)
    else:
        raise ValueError("persist: cannot store a %s" % type(obj).__name__)


def encode(obj):
    out = bytearray()
    _enc(obj, out)
    return bytes(out)


def _dec(data, pos):
    if pos >= len(data):
        raise ValueError("persist: truncated data")
    tag = data[pos]
    pos += 1
    if tag == 0x4E:  # N
        return None, pos
    if tag == 0x54:  # T
        return True, pos
    if tag == 0x46:  # F
        return False, pos
    if tag == 0x69:  # i
        if pos + 8 > len(data):
            raise ValueError("persist: truncated int")
        return struct.unpack("<q", data[pos : pos + 8])[0], pos + 8
    if pos + 2 > len(data):
        raise ValueError("persist: truncated length")
    n = struct.unpack("<H", data[pos : pos + 2])[0]
    pos += 2
    if tag == 0x62 or tag == 0x73:  # b, s
        if pos + n > len(data):
            raise ValueError("persist: truncated bytes")
        raw = bytes(data[pos : pos + n])
        return (raw if tag == 0x62 else raw.decode()), pos + n
    if tag == 0x6C:  # l
        items = []
        for _ in range(n):
            item, pos = _dec(data, pos)
            items.append(item)
        return items, pos
    if tag == 0x64:  # d
        result = {}
        for _ in range(n):
            key, pos = _dec(data, pos)
            value, pos = _dec(data, pos)
            if isinstance(key, list):
                raise ValueError("persist: list as dict key")
            result[key] = value
        return result, pos
    raise ValueError("persist: unknown tag 0x%02x" % tag)


def decode(data):
    try:
        obj, pos = _dec(data, 0)
    except (UnicodeError, IndexError, TypeError):
        raise ValueError("persist: malformed data") from None
    if pos != len(data):
        raise ValueError("persist: %d trailing bytes" % (len(data) - pos))
    return obj


def _seal(magic, obj):
    # The header is packed in front of the body in place: one buffer, no copies.
    out = bytearray(_FRAME_SIZE)
    _enc(obj, out)
    struct.pack_into(_FRAME, out, 0, magic, len(out) - _FRAME_SIZE,
                     binascii.crc32(memoryview(out)[_FRAME_SIZE:]))
    return out


def _unseal(magic, data):
    if len(data) < _FRAME_SIZE:
        raise ValueError("persist: short blob")
    got_magic, length, crc = struct.unpack(_FRAME, data[:_FRAME_SIZE])
    body = data[_FRAME_SIZE : _FRAME_SIZE + length]
    if got_magic != magic or len(body) != length or binascii.crc32(body) != crc:
        raise ValueError("persist: bad magic, length or checksum")
    return decode(body)


# ---- files --------------------------------------------------------------------------------


def _makedirs(path):
    built = ""
    for part in path.split("/"):
        if not part:
            continue
        built = built + "/" + part if built or path[0] == "/" else part
        try:
            os.stat(built)
        except OSError:
            os.mkdir(built)


def write_file(path, obj):
    data = _seal(_FILE_MAGIC, obj)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)  # atomic replace on littlefs and POSIX
    except OSError:
        # FAT will not rename over a file: not atomic, but the checksum catches a torn file
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


def read_file(path, default=None):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return _unseal(_FILE_MAGIC, data)
    except (OSError, ValueError):
        return default


# ---- message counter ----------------------------------------------------------------------


class MessageCounter:
    def __init__(self, path, block=256, first=1):
        if block < 1:
            raise ValueError("counter: block must be >= 1")
        self.path = path
        self.block = block
        self.first = first
        reserved = read_file(path)
        if not isinstance(reserved, int) or not first <= reserved <= _U32_MAX + 1:
            reserved = first
        self.reserved = reserved
        self.next = reserved

    def resume(self, exact=None):
        if isinstance(exact, int) and self.first <= exact <= _U32_MAX + 1:
            # RTC memory kept the exact value over deep sleep: no block is skipped. A value
            # above the file's means the file was lost; never go backwards.
            if exact > self.reserved:
                self.reserved = exact
            self.next = exact
        else:
            self.next = self.reserved
        return self.next

    def ensure(self, counter):
        if counter > _U32_MAX:
            raise ValueError("counter: 32-bit counter space used up, rotate the key")
        if counter >= self.reserved:
            reserved = counter + self.block
            if reserved > _U32_MAX + 1:
                reserved = _U32_MAX + 1
            slash = self.path.rfind("/")
            if slash > 0:
                _makedirs(self.path[:slash])
            write_file(self.path, reserved)  # before the counter is used, never after
            self.reserved = reserved

    def take(self):
        counter = self.next
        self.ensure(counter)
        self.next = counter + 1
        return counter


# ---- downlink replay floor -----------------------------------------------------------------


class DownlinkFloor:
    """Reserve-ahead persistence of the downlink replay window, the mirror of MessageCounter.

    A window in RAM only would accept every old downlink again after a reset (a captured
    COMMAND reboot would loop the device). Writing the window at every downlink would cost a
    flash write per frame. So the file holds `reserved`, with every accepted counter at or
    below it: before the window's highest passes it, `highest + block` is written (one write
    per `block` downlinks), and the frame is acted on only after. At boot every counter up to
    `reserved` is refused (a floor beside the window, so that the ACKs the device sends claim
    only what it really received, and refused frames are not acked). The centre skips
    `block` counters after each HELLO (a reset) and re-seals what it had pending, so nothing
    new stays under the floor; over deep sleep (no HELLO) RTC memory keeps the exact window.
    """

    def __init__(self, path, block=256):
        self.path = path
        self.block = block
        self.reserved = 0
        self.key = None
        self.window = None
        stored = read_file(path)
        self._stored = stored if isinstance(stored, dict) else {}

    def attach(self, receiver, device_id, key_id, exact=None):
        reserved = self._stored.get(key_id)
        self.reserved = reserved if isinstance(reserved, int) and reserved >= 0 else 0
        self.key = (device_id, key_id)
        window = self.window = receiver.window(device_id, key_id)
        if isinstance(exact, bytes) and len(exact) == 12:
            highest, bitmap = struct.unpack("<IQ", exact)
            window.highest, window.bitmap = highest, bitmap
            if highest > self.reserved:  # the file was lost: never go backwards
                self._write(highest + self.block)
        elif self.reserved:
            receiver.floors[self.key] = self.reserved
        receiver.on_accept = self._accepted

    def _accepted(self, device_id, key_id, window):
        if (device_id, key_id) == self.key and window.highest > self.reserved:
            self._write(window.highest + self.block)

    def _write(self, reserved):
        if reserved > _U32_MAX:
            reserved = _U32_MAX
        key = self.key
        if key is None:
            return
        self._stored[key[1]] = reserved
        slash = self.path.rfind("/")
        if slash > 0:
            _makedirs(self.path[:slash])
        write_file(self.path, self._stored)  # before the frame is acted on, never after
        self.reserved = reserved

    def snapshot(self):
        window = self.window
        return struct.pack("<IQ", window.highest, window.bitmap) if window else None


# ---- flash state --------------------------------------------------------------------------


class FlashState:
    def __init__(self, state_dir="/state"):
        self.dir = state_dir.rstrip("/")
        _makedirs(self.dir)

    def _path(self, name):
        return self.dir + "/" + name

    def boot_count(self):
        count = read_file(self._path("boot.bin"), 0)
        return count if isinstance(count, int) and count >= 0 else 0

    def bump_boot_count(self):
        count = self.boot_count() + 1
        write_file(self._path("boot.bin"), count)
        return count

    def load_config(self):
        data = read_file(self._path("config.bin"))
        if (
            isinstance(data, list)
            and len(data) == 2
            and isinstance(data[0], int)
            and isinstance(data[1], dict)
        ):
            return data[0], data[1]
        return 0, {}

    def save_config(self, version, items):
        if not isinstance(items, dict):
            items = dict(items)
        write_file(self._path("config.bin"), [version, items])

    def load_alarm(self):
        alarm = read_file(self._path("alarm.bin"))
        return alarm if isinstance(alarm, dict) else None

    def save_alarm(self, alarm):
        if alarm is None:
            try:
                os.remove(self._path("alarm.bin"))
            except OSError:
                pass
        else:
            write_file(self._path("alarm.bin"), alarm)


# ---- keys ---------------------------------------------------------------------------------


def key_file_bytes(device_id, keys):
    for key_id in keys:
        if not isinstance(key_id, int) or len(keys[key_id]) != 16:
            raise ValueError("keys: key %r must be an int id with 16 bytes" % (key_id,))
    return _seal(_FILE_MAGIC, [device_id, keys])


def save_keys(keys_dir, device_id, keys):
    data = key_file_bytes(device_id, keys)
    _makedirs(keys_dir)
    path = keys_dir.rstrip("/") + "/device.key"
    write_file(path, [device_id, keys])
    return len(data)


def load_keys(keys_dir="/keys"):
    data = read_file(keys_dir.rstrip("/") + "/device.key")
    if not isinstance(data, list) or len(data) != 2 or not isinstance(data[1], dict):
        return None
    keys = {}
    for key_id in data[1]:
        key = data[1][key_id]
        if isinstance(key_id, int) and isinstance(key, bytes) and len(key) == 16:
            keys[key_id] = key
    if not keys:
        return None
    return data[0], keys


# ---- RTC memory ---------------------------------------------------------------------------


class RtcState:
    """The deep-sleep snapshot in RTC memory, after the boot guard's bytes (bootguard.py owns
    the first PREFIX_BYTES: the crash count must survive this snapshot's save and take)."""

    def __init__(self, rtc):
        self.rtc = rtc

    def _prefix(self):
        memory = bytes(self.rtc.memory())
        prefix = memory[:_RTC_PREFIX]
        return prefix + bytes(_RTC_PREFIX - len(prefix))

    def save(self, obj):
        blob = _seal(_RTC_MAGIC, obj)
        if len(blob) > _RTC_MAX - _RTC_PREFIX:
            raise ValueError("rtc: state is %d bytes, RTC memory holds %d"
                             % (len(blob), _RTC_MAX - _RTC_PREFIX))
        self.rtc.memory(self._prefix() + blob)

    def take(self):
        prefix = self._prefix()
        try:
            obj = _unseal(_RTC_MAGIC, bytes(self.rtc.memory())[_RTC_PREFIX:])
        except ValueError:
            obj = None
        self.rtc.memory(prefix)
        return obj
