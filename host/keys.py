"""Device keys on the host: one key store and one key-file format for the centre, the decoder
and the HIL rig.

Key file (JSON): a list of entries, one per device key

    [{"device_id": 1004, "key_id": 1, "key": "000102030405060708090a0b0c0d0e0f"}, ...]

`device_id` is a u32, `key_id` a u8 (rotation, SPEC 4.1), `key` 16 bytes as 32 hex digits.
Any problem is a KeyFileError whose message is one line naming the file, the entry and the
problem.

The board's own key file is another thing: device_key_file_bytes() builds /keys/device.key
(or /keys/test.key) for provisioning, the emulator and the rig; firmware.persist.load_keys
reads it on the device.
"""
import json

from firmware import persist
from protocol import codec

KEY_LEN = 16
MAX_FILE_BYTES = 16 << 20  # about 150,000 keys; more is a mistake (or /dev/zero)


class KeyFileError(ValueError):
    """A key file cannot be used; the message is one line for the user."""


class KeyStore:
    """Raw device keys by (device_id, key_id). The centre needs the raw key (not only a
    codec.Keyring) because it also seals downlinks with it."""

    def __init__(self, entries=()):
        self._keys = {}
        for device_id, key_id, key in entries:
            self.add(device_id, key_id, key)

    @classmethod
    def coerce(cls, keys):
        """A KeyStore from a KeyStore, a {(device_id, key_id): key} mapping or triples."""
        if isinstance(keys, cls):
            return keys
        if hasattr(keys, "items"):
            return cls((d, k, v) for (d, k), v in keys.items())
        return cls(keys)

    def add(self, device_id, key_id, key):
        key = bytes(key)
        if len(key) != KEY_LEN:
            raise ValueError("device %d key %d: a key is %d bytes, not %d"
                             % (device_id, key_id, KEY_LEN, len(key)))
        self._keys[(device_id, key_id)] = key

    def get(self, device_id, key_id):
        return self._keys.get((device_id, key_id))

    def key_ids(self, device_id):
        return sorted(k for d, k in self._keys if d == device_id)

    def devices(self):
        return sorted({d for d, _ in self._keys})

    def keyring(self):
        ring = codec.Keyring()
        for (device_id, key_id), key in self._keys.items():
            ring.add(device_id, key_id, key)
        return ring

    def __len__(self):
        return len(self._keys)

    def to_json(self):
        return json.dumps([{"device_id": d, "key_id": k, "key": v.hex()}
                           for (d, k), v in sorted(self._keys.items())], indent=1)


def _int_field(entry, name, high, where):
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise KeyFileError("%s: %s must be an integer 0..%d" % (where, name, high))
    return value


def parse_keys(text, source="<keys>"):
    try:
        data = json.loads(text)
    except ValueError as e:
        raise KeyFileError("%s: not JSON (%s)" % (source, e)) from None
    if not isinstance(data, list):
        raise KeyFileError("%s: must be a JSON list of {device_id, key_id, key} objects" % source)
    store = KeyStore()
    for index, entry in enumerate(data):
        where = "%s: entry %d" % (source, index)
        if not isinstance(entry, dict):
            raise KeyFileError(where + ": must be an object {device_id, key_id, key}")
        unknown = set(entry) - {"device_id", "key_id", "key", "comment"}
        if unknown:
            raise KeyFileError("%s: unknown field %s" % (where, sorted(unknown)[0]))
        device_id = _int_field(entry, "device_id", 0xFFFFFFFF, where)
        key_id = _int_field(entry, "key_id", 0xFF, where)
        key_hex = entry.get("key")
        try:
            key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
        except ValueError:
            key = b""
        if len(key) != KEY_LEN:
            raise KeyFileError("%s: key must be %d hex digits" % (where, 2 * KEY_LEN))
        if store.get(device_id, key_id) is not None:
            raise KeyFileError("%s: device %d key %d is listed twice" % (where, device_id, key_id))
        store.add(device_id, key_id, key)
    return store


def load_keys(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_FILE_BYTES + 1)  # bounded: never a device read into memory
    except OSError as e:
        raise KeyFileError("%s: cannot read (%s)" % (path, e.strerror or e)) from None
    except UnicodeDecodeError:
        raise KeyFileError("%s: not a UTF-8 text file" % path) from None
    if len(text) > MAX_FILE_BYTES:
        raise KeyFileError("%s: larger than %d bytes; not a key file" % (path, MAX_FILE_BYTES))
    try:
        return parse_keys(text, str(path))
    except RecursionError:  # json nested tens of thousands deep
        raise KeyFileError("%s: not JSON (nested too deeply)" % path) from None


def device_key_file_bytes(device_id, keys):
    """The board's key file for `device_id` and keys {key_id: 16 bytes}: what
    firmware.persist.load_keys reads. Built with persist's own sealing (the file format of
    persist.write_file), so host and device cannot drift apart; it lives on the host because
    the device only ever reads key files, and every function in persist costs device heap."""
    for key_id in keys:
        if not isinstance(key_id, int) or len(keys[key_id]) != KEY_LEN:
            raise ValueError("keys: id %r needs %d bytes" % (key_id, KEY_LEN))
    return bytes(persist._seal(persist._FILE_MAGIC, [device_id, keys]))
