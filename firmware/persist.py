"""Durable small state: flash files written atomically, and RTC memory for deep sleep.

API (MicroPython and CPython; uses only `os`, `struct`, `binascii` and file I/O):

    encode(obj, out=None) -> out; decode(data) -> obj
        A compact codec for None, bool, int (signed 64-bit), bytes, str, list/tuple (decoded
        as list) and dict. encode appends to the bytearray `out` (a new one if None) and
        returns it. Bad data raises ValueError.
    write_file(path, obj)          atomic: write path + ".tmp", then rename over `path`, so a
                                   cut mid-write leaves the old value. File = b"VS" <H len <I
                                   crc32, then encode(obj). Makes a missing directory.
    makedirs(path)                 `path` and its missing parents (littlefs has no makedirs)
    read_file(path, default=None)  the object, or `default` if missing, torn or corrupt.

    MessageCounter(path, block=256)   the protocol's 32-bit frame counter (from 1)
        .resume(exact=None) -> next   call once at boot. `exact` is the counter kept in RTC
                                      memory across deep sleep (only pass it on a deep-sleep
                                      wake; rtc_take() clears the blob so a stale copy is
                                      never reused). Without it, resume at the reserved value.
        .ensure(counter)              make sure `counter` is covered by the reservation before
                                      it is used (protocol.codec.Sender counts): when it is
                                      not, persist a new one first (one flash write per
                                      `block` counters). Raises ValueError past the 32-bit
                                      space (rotate the key).
        .reserved                     every counter ever used is below it; the file holds it

    DownlinkFloor(path, block=256)   the downlink replay window's durable floor (SPEC 4.4)
        .attach(receiver, device_id, key_id, exact=None)   at boot: refuse every downlink
                                      counter up to the floor (receiver.floors), or resume
                                      `exact`, the window kept in RTC memory over deep
                                      sleep; then persist the floor ahead of every
                                      accepted counter
        .snapshot() -> bytes          the exact window, for RTC memory before deep sleep
        .reserved                     every downlink counter ever accepted is at or below it

    State files in state_dir; missing or corrupt files give the defaults shown:
    bump_boot_count(state_dir) -> the new count        (boot.bin, from 0)
    load_config(state_dir) -> (version, {key_id: value})   default (0, {})
    save_config(state_dir, version, items)   items: dict or (key_id, value) pairs

    load_keys(keys_dir) -> (device_id, {key_id: key16}) or None if missing/corrupt
                            (host.keys.device_key_file_bytes writes the file: the device
                            only reads it)

    RTC memory; rtc: any object with memory() / memory(bytes), like machine.RTC()
    rtc_save(rtc, obj)      store `obj` (usually a dict) with a checksum, after the boot
                            guard's 8 bytes; at most 2040 bytes
    rtc_take(rtc) -> obj or None   read and clear: a blob is used once, never after a later
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


def encode(obj, out=None):
    # One bytearray for the whole blob: a list of small bytes pieces (and its growing array
    # of pointers) fragments a small heap, which is what runs out first on the board.
    if out is None:
        out = bytearray()
    if obj is None:
        out.append(0x4E)  # N
    elif obj is True:
        out.append(0x54)  # T
    elif obj is False:
        out.append(0x46)  # F
    elif isinstance(obj, int):
        if not -(1 << 63) <= obj < (1 << 63):
            raise ValueError("persist: %d > 64 bits" % obj)
        out.append(0x69)  # i
        out.extend(struct.pack("<q", obj))
    elif isinstance(obj, (bytes, bytearray, str)):
        is_str = isinstance(obj, str)
        data = obj.encode() if is_str else obj
        out.append(0x73 if is_str else 0x62)  # s, b
        out.extend(struct.pack("<H", len(data)))
        out.extend(data)
    elif isinstance(obj, (list, tuple, dict)):
        is_dict = isinstance(obj, dict)
        out.append(0x64 if is_dict else 0x6C)  # d, l
        out.extend(struct.pack("<H", len(obj)))
        for item in obj:
            encode(item, out)
            if is_dict:
                encode(obj[item], out)
    else:
        raise ValueError("persist: cannot store a %s" % type(obj).__name__)
    return out


def _dec(data, pos):
    # Past the end data[pos] raises IndexError, which decode() reports as bad data.
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
            raise ValueError("persist: bad data")
        return struct.unpack("<q", data[pos : pos + 8])[0], pos + 8
    if pos + 2 > len(data):
        raise ValueError("persist: bad data")
    n = struct.unpack("<H", data[pos : pos + 2])[0]
    pos += 2
    if tag == 0x62 or tag == 0x73:  # b, s
        raw = bytes(data[pos : pos + n])
        if len(raw) != n:
            raise ValueError("persist: bad data")
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
            result[key], pos = _dec(data, pos)  # a list as key: TypeError, bad data
        return result, pos
    raise ValueError("persist: bad data")


def decode(data):
    try:
        obj, pos = _dec(data, 0)
    except (UnicodeError, IndexError, TypeError):
        raise ValueError("persist: bad data") from None
    if pos != len(data):
        raise ValueError("persist: bad data")
    return obj


class _Sizer:
    """What encode() writes, counted, not kept: a blob is then allocated once at its size
    instead of grown by append, which moves it as it grows and needs the old and the new
    copy at once (the deep-sleep snapshot is encoded at the heap's peak)."""

    def __init__(self):
        self.n = 0

    def append(self, byte):
        self.n += 1

    def extend(self, data):
        self.n += len(data)


def _seal(magic, obj, prefix=b""):
    # The header (and the RTC's prefix) go in front of the body in place: one buffer, no
    # copies. Emptied by the slice assignment, the buffer keeps its capacity for encode().
    start = len(prefix)
    size = _Sizer()
    encode(obj, size)
    out = bytearray(start + _FRAME_SIZE + size.n)
    out[:] = prefix + bytes(_FRAME_SIZE)
    encode(obj, out)
    struct.pack_into(_FRAME, out, start, magic, len(out) - start - _FRAME_SIZE,
                     binascii.crc32(memoryview(out)[start + _FRAME_SIZE:]))
    return out


def _unseal(magic, data):
    if len(data) >= _FRAME_SIZE:
        got_magic, length, crc = struct.unpack(_FRAME, data[:_FRAME_SIZE])
        body = data[_FRAME_SIZE : _FRAME_SIZE + length]
        if got_magic == magic and len(body) == length and binascii.crc32(body) == crc:
            return decode(body)
    raise ValueError("persist: bad data")


# ---- files --------------------------------------------------------------------------------


def makedirs(path):
    built = ""
    for part in path.split("/"):
        if part:
            built = built + "/" + part if built or path[0] == "/" else part
            try:
                os.stat(built)
            except OSError:
                os.mkdir(built)


def write_file(path, obj):
    data = _seal(_FILE_MAGIC, obj)
    tmp = path + ".tmp"
    try:
        f = open(tmp, "wb")
    except OSError:  # the first file of a directory not made yet
        makedirs(path[: path.rfind("/") + 1])
        f = open(tmp, "wb")
    with f:
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
    def __init__(self, path, block=256):
        if block < 1:
            raise ValueError("counter: block must be >= 1")
        self.path = path
        self.block = block
        reserved = read_file(path)
        if not isinstance(reserved, int) or not 1 <= reserved <= _U32_MAX + 1:
            reserved = 1
        self.reserved = reserved

    def resume(self, exact=None):
        if isinstance(exact, int) and 1 <= exact <= _U32_MAX + 1:
            # RTC memory kept the exact value over deep sleep: no block is skipped. A value
            # above the file's means the file was lost; never go backwards.
            if exact > self.reserved:
                self.reserved = exact
            return exact
        return self.reserved

    def ensure(self, counter):
        if counter > _U32_MAX:
            raise ValueError("counter: spent, rotate the key")
        if counter >= self.reserved:
            reserved = min(counter + self.block, _U32_MAX + 1)
            write_file(self.path, reserved)  # before the counter is used, never after
            self.reserved = reserved


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
        self.window = None

    def attach(self, receiver, device_id, key_id, exact=None):
        stored = read_file(self.path)
        self._stored = stored if isinstance(stored, dict) else {}  # key_id -> reserved
        reserved = self._stored.get(key_id)
        self.reserved = reserved if isinstance(reserved, int) and reserved >= 0 else 0
        self.key = (device_id, key_id)
        window = self.window = receiver.window(device_id, key_id)
        if isinstance(exact, bytes) and len(exact) == 12:
            window.highest, window.bitmap = struct.unpack("<IQ", exact)
            self._accepted(device_id, key_id, window)  # the file was lost: never go backwards
        elif self.reserved:
            receiver.floors[self.key] = self.reserved
        receiver.on_accept = self._accepted

    def _accepted(self, device_id, key_id, window):
        if (device_id, key_id) == self.key and window.highest > self.reserved:
            reserved = min(window.highest + self.block, _U32_MAX)
            self._stored[key_id] = reserved
            write_file(self.path, self._stored)  # before the frame is acted on, never after
            self.reserved = reserved

    def snapshot(self):
        window = self.window
        return struct.pack("<IQ", window.highest, window.bitmap) if window else None


# ---- flash state: missing or corrupt files give the defaults ---------------------------------


def bump_boot_count(state_dir):
    path = state_dir + "/boot.bin"
    count = read_file(path, 0)
    count = (count if isinstance(count, int) and count >= 0 else 0) + 1
    write_file(path, count)
    return count


def load_config(state_dir):
    data = read_file(state_dir + "/config.bin")
    if (
        isinstance(data, list)
        and len(data) == 2
        and isinstance(data[0], int)
        and isinstance(data[1], dict)
    ):
        return data[0], data[1]
    return 0, {}


def save_config(state_dir, version, items):
    write_file(state_dir + "/config.bin", [version, dict(items)])


# ---- keys ---------------------------------------------------------------------------------


def load_keys(keys_dir):
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
# The deep-sleep snapshot, after the boot guard's bytes (bootguard.py owns the first
# PREFIX_BYTES: the crash count must survive this snapshot's save and take).


def _rtc_prefix(memory):
    # the boot guard's bytes, padded: they stay whatever the snapshot does
    prefix = memory[:_RTC_PREFIX]
    return prefix + bytes(_RTC_PREFIX - len(prefix))


def rtc_save(rtc, obj):
    # sealed behind the prefix in one buffer: the snapshot comes at the heap's peak, and a
    # prefix + blob copy of it was the allocation that failed first
    blob = _seal(_RTC_MAGIC, obj, _rtc_prefix(bytes(rtc.memory())))
    if len(blob) > _RTC_MAX:
        raise ValueError("rtc: %d B, RTC memory holds %d" % (len(blob) - _RTC_PREFIX,
                                                              _RTC_MAX - _RTC_PREFIX))
    rtc.memory(blob)


def rtc_take(rtc):
    memory = bytes(rtc.memory())
    rtc.memory(_rtc_prefix(memory))
    try:
        return _unseal(_RTC_MAGIC, memory[_RTC_PREFIX:])
    except ValueError:
        return None
