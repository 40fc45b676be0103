"""emu:// — the centre's side of an in-process emulated board's link, on the board's
virtual clock.

    link = open_transport("emu://1004?seed=3")     # boots the firmware on a fresh World
    link.recv(timeout_ms=60_000)                   # runs 60 s of *virtual* time at most
    link.board.device.button.hold(2000)            # the board itself, for stimuli

The transport never waits in wall time: its clock (EmuClock) runs the World event by event
until the board writes to its link or the timeout passes, so a 15-minute wait costs what
the firmware does in those 15 minutes. Downlinks go through the emulated link peer
(host/emulator/link.py), which holds them until the device listens — the wake/ready
handshake on the emulated board lives there, not here.
"""
from urllib.parse import parse_qs, urlsplit

from host.transport.base import BadUrl, Transport, TransportClosed

DEFAULT_DEVICE_ID = 1004


class EmuClock:
    """Virtual time of one World, as a transport clock and the rig's clock."""

    virtual = True
    settle_s = 0  # in-process: bytes are there the moment the board writes them

    def __init__(self, world):
        self.world = world
        self.activity = False

    def now_s(self):
        return self.world.now_us / 1e6

    def now_ms(self):
        return self.world.now_us / 1000

    def advance_s(self, seconds):
        """Run the board until it writes to the link or `seconds` passed; True if it wrote."""
        self.activity = False
        return self.world.run_until_done(seconds * 1000, lambda: self.activity)

    def sleep_ms(self, ms):
        """Let `ms` of virtual time pass, whatever the board does."""
        self.world.run_for(ms)


class EmuBoard:
    """A World with one emulated board running the repository's firmware, provisioned with
    `key` (default: the scenario key of `seed`). Options go to World.add_device."""

    def __init__(self, device_id=DEFAULT_DEVICE_ID, seed=0, key=None, files=None, **options):
        from host import emulate
        from host.deploy import device_files
        from host.emulator import World
        from host.keys import device_key_file_bytes

        self.device_id = device_id
        self.seed = seed
        self.key = key if key is not None else emulate.device_key(seed, device_id)
        if files is None:
            files = dict(device_files(emulate.REPO))
            files["/keys/device.key"] = device_key_file_bytes(
                device_id, {emulate.KEY_ID: self.key})
        self.files = files
        self.world = World(seed=seed)
        self.clock = EmuClock(self.world)
        options.setdefault("link", {"latency_ms": 20.0, "jitter_ms": 5.0})
        self.device = self.world.add_device(device_id, key=self.key, files=files, **options)

    def close(self):
        self.world.close()


def _parse(url):
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/")
    if name and not name.isdigit():
        raise BadUrl("%s: expected emu://[DEVICE_ID][?seed=N] (a number, got %r)" % (url, name))
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"seed"}
    if unknown:
        raise BadUrl("%s: unknown option %s (known: seed)" % (url, sorted(unknown)[0]))
    seed = options.get("seed", "0")
    if not seed.isdigit():
        raise BadUrl("%s: seed must be a number" % url)
    return int(name) if name else DEFAULT_DEVICE_ID, int(seed)


class EmuTransport(Transport):
    """The centre's end of an emulated board's link (see the module docstring)."""

    peer_close_visible = False  # a UART link: the board never "closes"

    def __init__(self, url="emu://", timeout_ms=1000, board=None, **options):
        super().__init__(url, timeout_ms, **options)
        self._owns_board = board is None
        if board is None:
            device_id, seed = _parse(url)
            board = EmuBoard(device_id, seed)
        self.board = board
        self.clock = board.clock
        self._rx = bytearray()
        self.peer = self._peer_of(board)
        self.peer.connect(self._on_uplink)

    def _peer_of(self, board):
        """What carries the bytes: the board's link peer (a subclass puts a phone there)."""
        return board.device.link

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
        while start < len(data):  # one frame (up to its 0x00 delimiter) at a time
            end = data.find(b"\x00", start)
            end = len(data) if end < 0 else end + 1
            self.peer.send_downlink(bytes(data[start:end]))
            start = end

    def _close_internal(self):
        self.peer.connect(None)
        if self._owns_board:
            self.board.close()
