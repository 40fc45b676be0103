"""The centre's side of an in-process emulated board's BLE link: the rig's `ble` board.

Like emu:// (host/emulator/transport.py) on the board's virtual clock, but every byte goes
through the wearer's phone (host/emulator/phone.py): bleak's public API on a bumble central,
the emulated `bluetooth` module and the unchanged firmware/ble.py. The phone holds downlinks
until the device's next listen window, as a real phone would.
"""
from host.transport.base import Transport, TransportClosed


class EmuBleTransport(Transport):
    peer_close_visible = False  # windows come and go; the link as a whole never closes

    def __init__(self, url, timeout_ms=1000, board=None, **options):
        from .phone import PhoneGateway

        super().__init__(url, timeout_ms, **options)
        self.board = board
        self.clock = board.clock
        self._rx = bytearray()
        self.phone = PhoneGateway(board.device)
        self.phone.connect(self._on_uplink)

    def _on_uplink(self, data, _t_ms):
        self._rx += data
        self.clock.activity = True

    def _recv_internal(self, timeout_s):
        if self._closed:
            raise TransportClosed("%s is closed" % self.url)
        data = bytes(self._rx)
        self._rx.clear()
        return data

    def _send_internal(self, data):
        start = 0
        while start < len(data):
            end = data.find(b"\x00", start)
            end = len(data) if end < 0 else end + 1
            self.phone.send_downlink(bytes(data[start:end]))
            start = end

    def _close_internal(self):
        self.phone.connect(None)
