"""The centre's side of an in-process emulated board's BLE link: the rig's `ble` board.

Like emu:// (host/emulator/transport.py) on the board's virtual clock, but every byte goes
through the wearer's phone (host/emulator/phone.py): bleak's public API on a bumble central,
the emulated `bluetooth` module and the unchanged firmware/ble.py. The phone holds downlinks
until the device's next listen window, as a real phone would.
"""
from .transport import EmuTransport


class EmuBleTransport(EmuTransport):
    peer_close_visible = False  # windows come and go; the link as a whole never closes

    def __init__(self, url, timeout_ms=1000, board=None, **options):
        if board is None:
            raise ValueError("%s: the ble board needs an emulated board to wrap" % url)
        super().__init__(url, timeout_ms, board=board, **options)

    def _peer_of(self, board):
        from .phone import PhoneGateway

        return PhoneGateway(board.device)
