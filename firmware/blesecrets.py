"""The Bluetooth stack's secrets on flash, served through `_IRQ_GET_SECRET`/`_IRQ_SET_SECRET`.

    store = SecretStore("/state/ble.bin")
    store.get(sec_type, index, key) -> bytes or None     (key None: the index-th of sec_type)
    store.set(sec_type, key, value) -> True              (value None: forget it)

MicroPython keeps no bond store of its own: NimBLE asks the IRQ handler. The one secret that
matters most is our IRK (type 10, key b"irk"): at every `active(True)` NimBLE asks for it, and
a handler that cannot keep it leaves NimBLE's built-in IRK, the same on every device, with
which anyone resolves the "private" address (docs/HARDWARE.md, bluetooth). Kept on flash, the
IRK survives resets and deep sleep, so a bonded phone still finds the device. Bonds (types
1-3: our and the peer's keys, CCCDs) are kept the same way, oldest dropped past a bound.
"""
try:
    from micropython import const
except ImportError:                                    # CPython (tests)
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import persist

_MAX_SECRETS = const(16)                               # our IRK plus a few bonded phones
_OUR_IRK = const(10)


class SecretStore:
    def __init__(self, path):
        self.path = path
        items = persist.read_file(path)
        self._items = []                               # [sec_type, key, value], oldest first
        if isinstance(items, list):
            for item in items:
                if isinstance(item, list) and len(item) == 3:
                    self._items.append([item[0], bytes(item[1]), bytes(item[2])])

    def get(self, sec_type, index, key):
        if key is not None:
            key = bytes(key)
        for t, k, v in self._items:
            if t == sec_type:
                if key is None:                        # the index-th of this type
                    if index == 0:
                        return v
                    index -= 1
                elif k == key:
                    return v
        return None

    def set(self, sec_type, key, value):
        key = bytes(key)
        items = self._items
        for i in range(len(items)):
            if items[i][0] == sec_type and items[i][1] == key:
                del items[i]                           # keys are unique: at most one
                break
        if value is not None:
            items.append([sec_type, key, bytes(value)])
            if len(items) > _MAX_SECRETS:
                for i in range(len(items)):            # the oldest bond goes, never our IRK
                    if items[i][0] != _OUR_IRK:
                        del items[i]
                        break
        persist.write_file(self.path, items)
        return True
