"""Every transport is a URL (DESIGN decision 7).

    transport = open_transport("tcp://127.0.0.1:7000", timeout_ms=500)
    transport.send(wire); frame = transport.recv()      # None on timeout
    listener = listen("tcp://127.0.0.1:0")              # the centre's side: accept() links

Backends are imported only when their scheme is used, from BACKENDS (like pyserial's
serial_for_url and python-can's interfaces). Other parts register theirs with register() or by
providing the module named in the table; until then the scheme fails with a one-line
"not available yet". An installed package adds a scheme with an entry point in the group
`vigil.transports` (name = the scheme, value = "module:Class"), like python-can's
`can.interface` plugins; the table wins over a plugin of the same name.
"""
import importlib
from importlib import metadata

from host.transport.base import (
    BadUrl,
    Transport,
    TransportClosed,
    TransportError,
    TransportTimeout,
)

BACKENDS = {
    "tcp": "host.transport.tcp:TcpTransport",
    "pty": "host.transport.pty:PtyTransport",
    "serial": "host.transport.serial:SerialTransport",
    "rfc2217": "host.transport.serial:SerialTransport",
    "socket": "host.transport.serial:SerialTransport",
    "loop": "host.transport.loop:LoopTransport",
    "emu": "host.emulator.transport:EmuTransport",
    "ble": "host.transport.ble:BleTransport",
    "replay": "host.transport.replay:ReplayTransport",
}
# Schemes that listen for links (the centre); others give one link: the transport itself.
LISTENERS = {"tcp": "host.transport.tcp:TcpListener", "ble": "host.transport.ble:BleListener"}

__all__ = ["BACKENDS", "BadUrl", "Transport", "TransportClosed", "TransportError",
           "TransportTimeout", "listen", "open_transport", "register"]


def register(scheme, target):
    """Register a backend: a Transport subclass or a "module:Class" string."""
    BACKENDS[scheme] = target


def _scheme(url):
    if not isinstance(url, str) or "://" not in url:
        raise BadUrl("%r is not a transport URL (expected SCHEME://..., one of %s)"
                     % (url, ", ".join(s + "://" for s in BACKENDS)))
    return url.split("://", 1)[0].lower()


ENTRY_POINT_GROUP = "vigil.transports"


def _plugin(scheme):
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == scheme:
            return entry.value
    return None


def _resolve(table, url):
    scheme = _scheme(url)
    target = table.get(scheme)
    if target is None and table is BACKENDS:
        target = _plugin(scheme)
    if target is None:
        raise BadUrl("%s: unknown scheme %s:// (known: %s)"
                     % (url, scheme, ", ".join(s + "://" for s in BACKENDS)))
    if not isinstance(target, str):
        return target
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise BadUrl("%s: %s:// is not available yet (%s is not installed)"
                         % (url, scheme, module_name)) from None
        raise
    cls = getattr(module, name, None)
    if cls is None:
        raise BadUrl("%s: %s:// is not available yet (%s has no %s)"
                     % (url, scheme, module_name, name))
    return cls


def open_transport(url, timeout_ms=1000, **kwargs):
    """Open the transport a URL names. Raises BadUrl (a ValueError) for a URL that cannot
    work, TransportError (an OSError) when the host refuses (port missing, connection refused)."""
    return _resolve(BACKENDS, url)(url, timeout_ms=timeout_ms, **kwargs)


class SingleLink:
    """listen() for schemes that are one link already (pty://, serial://...)."""

    def __init__(self, url, timeout_ms=1000):
        self.transport = open_transport(url, timeout_ms)
        self.url = url
        self._given = False

    def accept(self, timeout_ms=None):
        if self._given:
            return None
        self._given = True
        return self.transport

    def close(self):
        self.transport.close()


def listen(url, timeout_ms=1000, **kwargs):
    """A listener: .url (with the real port), .accept(timeout_ms) -> Transport or None,
    .close(). Keyword arguments go to the backend (e.g. ble://'s runner and backend)."""
    scheme = _scheme(url)
    if scheme in LISTENERS:
        return _resolve(LISTENERS, url)(url, timeout_ms=timeout_ms, **kwargs)
    return SingleLink(url, timeout_ms)
