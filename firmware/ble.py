"""Protocol frames over BLE GATT, on MicroPython's `bluetooth` (NimBLE on the ESP32).

    link = BleLink(bluetooth.BLE(), bluetooth.UUID, time.ticks_ms, log=print)
    link.write(frame_bytes)           queued; sent when a central is connected and ready
    link.poll() -> [bytes, ...]       what the central wrote since the last poll (the app
                                      deframes and opens it, as from the UART)
    link.stop() / link.start()        radio off / on
    link.plan_sleep(mode, ms, now)    the app's sleep, adjusted for the radio (below)
    link.has_wake_line                False: the app plans listen windows (config wake_line 0)

The same interface as firmware/link.py's Link, so the app can use either.

GATT: one service with RX (write, write without response: host -> device) and TX (indicate
only, so every OS subscribes to indications: device -> host). The byte stream is the UART's: each frame is sent as 0x00 + frame, cut into
MTU - 3 byte pieces; the receiver splits at 0x00, so no other framing is needed. TX uses
indications, not notifications: each piece is confirmed by the central's ATT layer, so a
piece lost to a disconnect is known and the frame is sent again, from its start, on the next
connection (the centre drops the duplicate by its counter). A central writes one 0x00 after
it has subscribed to TX; until then nothing is sent (NimBLE's indicate does not check the
CCCD, and a central that is not subscribed would confirm and drop the piece).

Sleep: light sleep with the radio on drops the link on an ESP32 without a 32 kHz crystal
(docs/HARDWARE.md), so the radio works in listen windows, like the UART link: after each wake
the radio comes on (poll() starts it), advertises fast, and the device stays awake while a
central connects and exchanges frames: until the queue is empty and linger_ms have passed
since the last byte, or window_ms after the radio came on if no central came. Then the
radio goes off and the device sleeps as the core planned (light sleep is at most the
reachability bound, 25 s). Keeping the radio and the CPU up instead (never light sleep)
would make a downlink wait one connection event, not a window, at ~40 times the current
(README, energy table).

Privacy: the advertisement carries only the flags: no name, no service UUID, no
manufacturer data, no TX power. The GAP name (readable by anyone who connects; "MPY ESP32"
by default) is set empty. The address is resolvable private (addr_mode 2, rotated by NimBLE
every CONFIG_BT_NIMBLE_RPA_TIMEOUT and new at each start) where the port allows it, else the
identity address (the worse case: the tests use it). The IRK behind it comes from the
secrets file (`secrets`, below): without one NimBLE's built-in IRK, known to anyone, would
resolve it. With it the device also bonds (keys kept there across resets).

Secrets: MicroPython keeps no bond store; NimBLE asks the IRQ handler (_IRQ_GET_SECRET,
_IRQ_SET_SECRET). The one that matters most is our IRK (type 10, key b"irk"), asked for at
every active(True): a handler that cannot keep it leaves NimBLE's built-in IRK, the same on
every device, with which anyone resolves the "private" address (docs/HARDWARE.md,
bluetooth). Kept on flash, it survives resets and deep sleep, so a bonded phone still finds
the device. Bonds (types 1-3: our and the peer's keys, CCCDs) are kept the same way, the
oldest dropped past a bound. The handler answers from a copy in RAM and only marks a change;
the next poll() writes the file (firmware/blestart.py, which also brings the stack up at each
window: code the link needs only then, off the heap the rest of the time). The handler runs on NimBLE's task, whose stack (6 KB, 1 KB
of it NimBLE's) is no place for littlefs (docs/HARDWARE.md, bluetooth): aioble does the same.
"""
try:
    from micropython import const
except ImportError:                                    # CPython (tests)
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import forget

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)

_ADV_FLAGS_ONLY = b"\x02\x01\x06"                      # LE General Discoverable, no BR/EDR
_ADV_INTERVAL_US = const(100000)
_ATT_HEADER = const(3)
_DEFAULT_MTU = const(23)
_WINDOW_MS = const(2000)        # a listen window no central came to
_LINGER_MS = const(300)         # awake after the last byte with a central


class BleLink:
    # No line the phone can pull: the radio is off between listen windows (module docstring).
    has_wake_line = False

    def __init__(self, ble, uuid, ticks_ms, log=None, max_queued=32, private=True,
                 secrets=None):
        self.ble = ble
        self.uuid = uuid
        self.ticks_ms = ticks_ms
        self.log = log
        self.max_queued = max_queued
        self.private = private
        self.secrets = secrets      # the secrets file (our IRK and bonds), or None
        self._secrets = None        # [[sec_type, key, value], ...] once the first window loaded it
        self._secrets_changed = False
        self.bonding = False
        self._on_since = 0
        self._last_io = 0
        self._pass_done = True
        self._queue = []            # frames (bytes, 0x00 + frame), oldest first
        self._offset = 0            # bytes of _queue[0] confirmed by the central
        self._inflight = 0          # length of the piece awaiting its confirmation
        self._rx = []               # pieces the central wrote, not yet polled
        self._conn = None
        self._ready = False         # the central has subscribed (it wrote its 0x00)
        self._mtu = _DEFAULT_MTU
        self._rx_handle = self._tx_handle = 0        # the GATT table's, set by each start()
        self._on = False
        self.start()

    # --- radio on/off -----------------------------------------------------------------------
    def start(self):
        if self._on:
            return
        # Code needed once per window: imported now, dropped after (blestart's docstring).
        from firmware import blestart
        blestart.open_window(self)
        forget("firmware.blestart")
        self._on = True
        self._conn = None
        self._ready = False
        self._on_since = self._last_io = self.ticks_ms()
        self.ble.gap_advertise(_ADV_INTERVAL_US, _ADV_FLAGS_ONLY)

    def stop(self):
        """Radio off. Unconfirmed frames stay queued and go out after the next start()."""
        if not self._on:
            return
        self._on = False
        self._conn = None
        self._cut()
        self.ble.irq(None)
        self.ble.active(False)

    def _cut(self):
        # No central, or a new one: a frame cut short starts over.
        self._ready = False
        self._offset = 0
        self._inflight = 0

    def plan_sleep(self, mode, sleep_ms, now):
        """(mode, sleep_ms) for the app's sleep: stay awake ("idle", short) while the radio
        has work in this window; otherwise the radio goes off before a light or deep sleep."""
        self._pass_done = True
        self._pump()
        if mode not in ("light", "deep") or not self._on:
            return mode, sleep_ms
        if self._conn is not None and self._ready:     # linger after the last byte
            busy, since, limit = bool(self._queue), self._last_io, _LINGER_MS
        else:                                          # no central yet, or not subscribed
            busy, since, limit = False, self._on_since, _WINDOW_MS
        # time.ticks_diff for the ESP32's 2**30 ms tick period, without importing time here
        if busy or ((now - since + 0x20000000) & 0x3FFFFFFF) - 0x20000000 < limit:
            return "idle", min(sleep_ms, 20)
        if self._conn is not None:
            self.ble.gap_disconnect(self._conn)
        self.stop()
        return mode, sleep_ms

    # --- Link interface ---------------------------------------------------------------------
    def write(self, frame):
        # The leading delimiter ends any piece the central holds from a frame cut short by a
        # disconnect, as on the UART (SPEC 2.3).
        if len(self._queue) >= self.max_queued:
            # The oldest goes: it is in the flash queue (or a heartbeat that a newer one
            # replaces), and the core resends what the centre never acked.
            self._queue.pop(0)
            self._offset = 0
            self._inflight = 0
        self._queue.append(b"\x00" + bytes(frame))
        # Nothing leaves until this pass of the app ends (poll or plan_sleep): a frame sent
        # in a pass goes after the flash writes of that pass, so an ACK never reaches the
        # centre before what it acknowledges is stored (BLE is fast enough to win that race).
        self._pass_done = False

    def poll(self):
        if not self._on:
            self.start()                               # a new listen window
        if self._secrets_changed:                      # out of the IRQ handler (docstring)
            self._secrets_changed = False
            from firmware import blestart
            blestart.save_secrets(self.secrets, self._secrets)
            forget("firmware.blestart")
        self._pass_done = True
        pieces = self._rx
        self._rx = []
        self._pump()
        return pieces

    # --- events (the port's IRQ handler) ---------------------------------------------------
    def _irq(self, event, data):
        if event == _IRQ_GET_SECRET:                   # answered at once: NimBLE waits on it
            return None if self.secrets is None else get_secret(self._secrets, *data)
        if event == _IRQ_SET_SECRET:
            if self.secrets is None:
                return False
            set_secret(self._secrets, *data)
            self._secrets_changed = True               # written by the next poll()
            return True
        now = self.ticks_ms()                          # first: reading ticks may run IRQs
        if event == _IRQ_CENTRAL_CONNECT:
            if self._conn is None:
                self._conn = data[0]
                self._last_io = now
                self._mtu = _DEFAULT_MTU
                self._cut()
            else:
                self.ble.gap_disconnect(data[0])       # one central at a time
        elif event == _IRQ_CENTRAL_DISCONNECT:
            if data[0] == self._conn:
                self._conn = None
                self._cut()
                if self._on:
                    self.ble.gap_advertise(_ADV_INTERVAL_US, _ADV_FLAGS_ONLY)
        elif event == _IRQ_GATTS_WRITE:
            if data[1] != self._rx_handle:
                return
            # Read even a write from a central being turned away: the append buffer would
            # keep its bytes in front of the next piece from ours.
            piece = self.ble.gatts_read(self._rx_handle)
            if data[0] == self._conn:
                if piece:
                    self._rx.append(bytes(piece))
                    self._last_io = now
                if not self._ready:
                    self._ready = True
                    self._pump()
        elif event == _IRQ_MTU_EXCHANGED:
            if data[0] == self._conn:
                self._mtu = data[1]
        elif event == _IRQ_GATTS_INDICATE_DONE:
            if data[0] == self._conn and self._inflight:
                n = self._inflight
                self._inflight = 0
                if data[2] == 0:
                    self._last_io = now
                    self._offset += n
                    if self._queue and self._offset >= len(self._queue[0]):
                        self._queue.pop(0)
                        self._offset = 0
                self._pump()

    def _pump(self):
        if (self._inflight or not self._queue or self._conn is None or not self._ready
                or not self._pass_done):
            return
        head = self._queue[0]
        n = min(len(head) - self._offset, self._mtu - _ATT_HEADER)
        try:
            self.ble.gatts_indicate(self._conn, self._tx_handle,
                                    head[self._offset:self._offset + n])
        except OSError as exc:                         # ENOTCONN/ENOMEM: try again later
            if self.log:
                self.log("ble: indicate: %s" % exc)
            return
        self._inflight = n


# --- the stack's secrets (module docstring), as the IRQ handler needs them ----------------
def get_secret(items, sec_type, index, key):
    """The secret of sec_type under key, or (key None) the index-th of sec_type; else None."""
    if key is not None:
        key = bytes(key)
    for t, k, v in items:
        if t == sec_type:
            if key is None:
                if index == 0:
                    return v
                index -= 1
            elif k == key:
                return v
    return None


def set_secret(items, sec_type, key, value):
    """Keep value under (sec_type, key) in items, newest last, or forget it (value None).
    blestart.save_secrets bounds the list before it writes it."""
    key = bytes(key)
    for i in range(len(items)):
        if items[i][0] == sec_type and items[i][1] == key:
            del items[i]                               # keys are unique: at most one
            break
    if value is not None:
        items.append([sec_type, key, bytes(value)])
