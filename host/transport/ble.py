"""ble://NAME-or-ADDRESS — the device's GATT link (firmware/ble.py) on bleak's public API.

    open_transport("ble://AA:BB:CC:DD:EE:FF")                   the OS backend (lab machines)
    open_transport("ble://AA:BB:...", runner=radio, backend=BumbleBackends,
                   bumble_device=central)                      bumble in CI (virtual time)

ADDRESS is the identity address (a bonded OS resolves the device's private address to it;
the bumble backend does the same with `irks=`). NAME matches the name the OS shows for the
device: the device advertises none, so only a bonded device has one.

Open: scan until the device is seen (timeout_ms), connect, subscribe to TX (indications),
then write one 0x00 to RX: the device sends nothing before that (firmware/ble.py says why).
Frames out are cut into MTU - 3 byte writes with response. A disconnect is TransportClosed.

The bleak calls are coroutines; a *runner* runs them. By default a background thread runs an
asyncio loop in real time; in the emulator the World's radio (host/emulator/radio.py) is
the runner, so a recv timeout is virtual time and nothing waits in real time.
"""
import asyncio
import threading
import time
from collections import deque

from host.transport.base import BadUrl, Transport, TransportClosed, TransportError

SERVICE_UUID = "5a1e0001-7669-6769-6c00-000000000000"   # firmware/ble.py
RX_UUID = "5a1e0002-7669-6769-6c00-000000000000"
TX_UUID = "5a1e0003-7669-6769-6c00-000000000000"


class ThreadRunner:
    """An asyncio loop in a daemon thread; run(coro, timeout_ms) blocks for its result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="vigil-ble")
        self._thread.start()

    def run(self, coro, timeout_ms=10000):
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(None if timeout_ms is None else timeout_ms / 1000 + 1)

    def clock_s(self):
        return time.monotonic()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def _os_backend_error(exc, backend):
    """The OS backend's failure in words a lab user can act on: on Linux, no BlueZ answering
    on the system D-Bus (no socket, no adapter) surfaces as a bare FileNotFoundError."""
    text = str(exc) or type(exc).__name__
    if backend is not None:
        return text
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)) or "adapter" in text.lower():
        return ("no Bluetooth adapter: bleak's OS backend found none (is bluetoothd running "
                "and an adapter powered?) (%s)" % text)
    return text


class BumbleBackends:
    """backend= for CI: the scanner and client classes of host/transport/bleak_bumble.py."""

    @staticmethod
    def scanner():
        from host.transport.bleak_bumble import BumbleScanner
        return BumbleScanner

    @staticmethod
    def client():
        from host.transport.bleak_bumble import BumbleClient
        return BumbleClient


def parse_target(url):
    target = url.split("://", 1)[1].split("?", 1)[0].strip("/")
    if not target:
        raise BadUrl("%s: expected ble://NAME or ble://AA:BB:CC:DD:EE:FF" % url)
    parts = target.split(":")
    is_address = len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                         for p in parts)
    return target.upper() if is_address else target, is_address


class _RadioClock:
    """The base class's virtual clock for a BLE link on the emulator's radio: advancing it
    runs the World until data arrives or the time is up."""

    settle_s = 0

    def __init__(self, transport):
        self.transport = transport

    def now_s(self):
        return self.transport.runner.clock_s()

    def advance_s(self, s):
        t = self.transport
        if t._rx or t._gone:
            return True
        # The World counts whole microseconds: a wait shorter than one (a deadline that float
        # rounding left a hair ahead of now) would advance nothing, and recv would spin.
        s = max(s, 1e-6)
        t.runner.run(t._wait(s), s * 1000 + 1000)
        return bool(t._rx or t._gone)


class BleTransport(Transport):
    def __init__(self, url, timeout_ms=1000, runner=None, backend=None, connect_timeout_ms=10000,
                 reconnect_ms=0, ready_timeout_ms=2000, **bleak_kwargs):
        super().__init__(url, timeout_ms, ready_timeout_ms=ready_timeout_ms,
                         reconnect_ms=reconnect_ms)
        self.target, self.is_address = parse_target(url)
        try:
            import bleak
        except ImportError:
            raise BadUrl("%s: ble:// needs bleak (pip install 'vigil[ble]')" % url) from None
        self._bleak = bleak
        self._own_runner = runner is None
        self.runner = runner or ThreadRunner()
        self.backend = backend
        self.bleak_kwargs = bleak_kwargs
        self._rx = deque()
        self._event = None
        self._gone = False
        self.client = None
        self.connect_timeout_ms = connect_timeout_ms
        if hasattr(self.runner, "world"):   # the emulator's radio: timeouts in virtual time
            self.clock = _RadioClock(self)
        try:
            self.runner.run(self._open(connect_timeout_ms / 1000), connect_timeout_ms + 1000)
        except TransportError:
            self._shutdown_runner()
            raise
        except (TimeoutError, asyncio.TimeoutError):
            self._shutdown_runner()
            raise TransportError(110, "%s: no such device seen within %d ms"
                                 % (url, connect_timeout_ms)) from None
        except Exception as exc:  # noqa: BLE001 - BleakError and OS backend errors: one line
            self._shutdown_runner()
            raise TransportError(5, "%s: %s" % (url, _os_backend_error(exc, backend))) from None

    def _kw(self, which):
        kw = dict(self.bleak_kwargs)
        if self.backend is not None:
            kw["backend"] = getattr(self.backend, which)()
        return kw

    async def _open(self, timeout_s):
        bleak = self._bleak
        self._event = asyncio.Event()
        found = asyncio.get_running_loop().create_future()

        def seen(device, adv):
            if found.done():
                return
            if (device.address.upper() == self.target if self.is_address
                    else self.target in (device.name, adv.local_name)):
                found.set_result(device)

        scanner = bleak.BleakScanner(seen, **self._kw("scanner"))
        await scanner.start()
        try:
            device = await asyncio.wait_for(found, timeout_s)
        except asyncio.TimeoutError:
            raise TransportError(110, "%s: no such device seen within %d ms"
                                 % (self.url, timeout_s * 1000)) from None
        finally:
            await scanner.stop()
        client = bleak.BleakClient(device, disconnected_callback=self._on_disconnect,
                                   timeout=timeout_s, **self._kw("client"))
        await client.connect()
        self.client = client
        await client.start_notify(TX_UUID, self._on_data)
        await client.write_gatt_char(RX_UUID, b"\x00", response=True)

    def _on_data(self, _char, data):
        self._rx.append(bytes(data))
        if self._event is not None:
            self._event.set()

    def _on_disconnect(self, _client):
        self._gone = True
        if self._event is not None:
            self._event.set()

    @property
    def mtu(self):
        return self.client.mtu_size if self.client is not None else 23

    # --- Transport backend ----------------------------------------------------------------
    async def _wait(self, timeout_s):
        event = self._event
        if not self._rx and not self._gone:
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass

    def _recv_internal(self, timeout_s):
        if not self._rx and not self._gone and self.clock is None:
            self.runner.run(self._wait(timeout_s), None if timeout_s is None
                            else timeout_s * 1000 + 1000)
        if self._rx:
            out = b"".join(self._rx)
            self._rx.clear()
            return out
        if self._gone:
            raise TransportClosed("%s: the device disconnected" % self.url)
        return b""

    async def _write(self, data):
        size = max(20, self.mtu - 3)
        for i in range(0, len(data), size):
            await self.client.write_gatt_char(RX_UUID, data[i:i + size], response=True)

    def _send_internal(self, data):
        if self._gone:
            raise TransportClosed("%s: the device disconnected" % self.url)
        try:
            self.runner.run(self._write(data), max(self.timeout_ms or 0, 1000) + 1000)
        except Exception as exc:  # noqa: BLE001 - BleakError mid-write: the link went
            if self._gone:
                raise TransportClosed("%s: the device disconnected" % self.url) from None
            raise TransportError(5, "%s: %s" % (self.url, exc)) from None

    def _reopen_internal(self):
        """The device's next listen window (reconnect_ms > 0): scan and connect again."""
        self._gone = False
        self._rx.clear()
        try:
            self.runner.run(self._open(self.connect_timeout_ms / 1000),
                            self.connect_timeout_ms + 1000)
        except TransportError:
            raise
        except Exception as exc:  # noqa: BLE001 - BleakError, timeouts: not back yet
            raise TransportError(5, "%s: %s" % (self.url, exc)) from None
        self._peer_gone = False

    def _close_internal(self):
        client = self.client
        if client is not None and not self._gone:
            try:
                self.runner.run(client.disconnect(), 2000)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self._shutdown_runner()

    def _shutdown_runner(self):
        if self._own_runner:
            self.runner.close()


class BleListener:
    """listen("ble://…"): the centre's (or a gateway's) side. A device in listen windows
    connects for seconds at a time, so each connection is one link: accept() scans until the
    device advertises, connects, and returns that link as a BleTransport (None after
    timeout_ms). The centre serves each link until it closes, then accepts the next."""

    def __init__(self, url, timeout_ms=1000, runner=None, **kwargs):
        parse_target(url)
        self.url = url
        self.timeout_ms = timeout_ms
        self._own_runner = runner is None
        self.runner = runner or ThreadRunner()
        self.kwargs = kwargs
        self._closed = False

    def accept(self, timeout_ms=None):
        if self._closed:
            raise TransportClosed("%s is closed" % self.url)
        start = self.runner.clock_s()
        while not self._closed:
            left_ms = None if timeout_ms is None else timeout_ms - (self.runner.clock_s() - start) * 1000
            if left_ms is not None and left_ms <= 0:
                return None
            try:
                return BleTransport(self.url, self.timeout_ms, runner=self.runner,
                                    connect_timeout_ms=min(left_ms or 30_000, 30_000),
                                    **self.kwargs)
            except TransportError as exc:
                if exc.errno != 110:            # not "not seen yet": a real failure
                    raise
        raise TransportClosed("%s is closed" % self.url)

    def close(self):
        self._closed = True
        if self._own_runner:
            self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
