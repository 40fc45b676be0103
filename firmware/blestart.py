"""The start of a BLE listen window, and the stack's secrets on flash: what firmware/ble.py
runs once per window (or after NimBLE changed a secret), imported then and dropped after
(firmware.forget), so that none of it is on the heap while the link exchanges frames.

    open_window(link)            the stack up for `link` (a ble.BleLink): IRQ handler, privacy,
                                 bonding, the GATT table; the link then advertises
    save_secrets(path, items)    the secrets, bounded, to flash

Why each step is as it is: firmware/ble.py's docstring (GATT, privacy, secrets).
"""
try:
    from micropython import const
except ImportError:                                    # CPython (tests)
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import persist

_IO_NO_INPUT_OUTPUT = const(3)                         # no display, no keyboard: Just Works
_OUR_IRK = const(10)                                   # the secret type of our IRK
_MAX_SECRETS = const(16)                               # our IRK plus a few bonded phones
_FLAG_WRITE_NO_RESPONSE = const(0x0004)
_FLAG_WRITE = const(0x0008)
_FLAG_INDICATE = const(0x0020)
# The service is 5a1e0001-..., RX 5a1e0002-..., TX 5a1e0003-...
_UUID = "5a1e000%d-7669-6769-6c00-000000000000"
_MTU = const(247)               # asked for: one frame (<= 244 bytes stuffed) per piece
# RX keeps one write of the longest a central makes without a long (prepared) write at our
# MTU: the IRQ handler reads each before NimBLE takes the next (sync events,
# docs/HARDWARE.md), and the stack keeps the buffer on MicroPython's heap. Centrals write
# MTU - 3 byte pieces (docs/CONTRACTS.md); a longer write would be cut and its frame refused.
_RX_BUFFER = const(244)         # _MTU - ATT's 3-byte header


def open_window(link):
    ble = link.ble
    if link.secrets is not None and link._secrets is None:
        link._secrets = load_secrets(link.secrets)     # before active(True) asks for our IRK
    # The handler goes first: active(True) asks it for our IRK (_IRQ_GET_SECRET). Without
    # one, NimBLE uses its built-in IRK and anyone can resolve the private address.
    ble.irq(link._irq)
    ble.active(True)
    ble.config(gap_name=b"")
    ble.config(mtu=_MTU)
    if link.private:
        try:
            ble.config(addr_mode=2)                    # resolvable private, rotated by NimBLE
        except (OSError, ValueError):
            pass                                       # the identity address: the worse case
    link.bonding = False
    if link.secrets is not None:
        # Bond (keys kept in the secrets file) over LE Secure Connections; no display or keys
        # on the device, so Just Works. The frames carry their own authentication.
        try:
            ble.config(bond=True, le_secure=True, io=_IO_NO_INPUT_OUTPUT)
            link.bonding = True
        except (OSError, ValueError):
            pass
    uuid = link.uuid
    service = (uuid(_UUID % 1), (
        (uuid(_UUID % 2), _FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE),
        (uuid(_UUID % 3), _FLAG_INDICATE),
    ))
    ((link._rx_handle, link._tx_handle),) = ble.gatts_register_services((service,))
    # A characteristic buffer holds 20 bytes unless told otherwise, and a longer write is cut
    # silently. Append: a write is added to what the handler has not read yet.
    ble.gatts_set_buffer(link._rx_handle, _RX_BUFFER, True)


def load_secrets(path):
    """[[sec_type, key, value], ...] from the secrets file, oldest first; a torn or foreign
    file is no secret at all."""
    items = persist.read_file(path)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, list) and len(item) == 3]


def save_secrets(path, items):
    """Past _MAX_SECRETS the oldest bonds go, never our IRK; then the file is written."""
    while len(items) > _MAX_SECRETS:
        for i in range(len(items)):
            if items[i][0] != _OUR_IRK:
                del items[i]
                break
        else:
            break                                      # only IRKs left: nothing to drop
    persist.write_file(path, items)
