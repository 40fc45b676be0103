"""The device's link peer on the link UART (docs/LINK.md), with seeded network faults.

The peer is what sits on the other end of the board's link UART: a USB-serial adapter on the
bench (the host holds the bytes; RTS is the wake line, CTS reads the ready line) or a cellular
modem in eDRX in a product (the network holds a downlink until the modem's next paging
occasion, then the modem holds it in its bounded receive buffer). Either way the peer follows
the handshake exactly: it pulls LINK_WAKE low while it has bytes, sends only while LINK_READY
is high, one packet at a time at the UART's baud rate, and releases the wake line when it is
empty. It never puts bytes into a UART that is not listening; bytes it does send while the
device cannot hear (a packet already on the wire when the device drops READY and sleeps) are
lost, as on the board.

Uplink bytes reach the peer when their last bit has left the device's UART; 0x00-delimited
chunks are the packets that the network loses, duplicates, reorders, corrupts and delays.
"""
import collections

_MAX_UNDELIMITED = 4096  # log text with no frame delimiter is sent on once it reaches this


class Link:
    """Centre side: `connect(on_uplink)` with on_uplink(data: bytes, t_ms: float), or read
    `uplinks` [(t_ms, bytes)]; `send_downlink(data)`. `downlink_waits` holds
    (network_arrival_t_ms, delivered_t_ms, waited_ms) per delivered downlink; `stats` counts.

    Faults (probabilities 0..1, times in ms): loss, duplicate, reorder (extra delay of
    reorder_delay_ms), corrupt (one bit flipped), latency_ms + exponential jitter_ms, and
    outages [(start_ms, end_ms)] during which every packet either way is lost.
    The peer: `peer` "adapter" or "modem", `edrx_cycle_s` (modem paging cycle; 0 = none),
    `buffer_bytes` (the peer's receive buffer; 0 = unbounded, the host's memory). Defaults
    come from the board profile's [link] table.
    """

    def __init__(self, dev, loss=0.0, duplicate=0.0, reorder=0.0, corrupt=0.0, latency_ms=50.0,
                 jitter_ms=20.0, reorder_delay_ms=500.0, outages=(), uart_id=1, wake_pin=32,
                 ready_pin=27, peer=None, edrx_cycle_s=None, buffer_bytes=None):
        for name, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder),
                        ("corrupt", corrupt)):
            if not 0.0 <= p <= 1.0:
                raise ValueError("link %s %r: must be a probability 0..1" % (name, p))
        if latency_ms < 0 or jitter_ms < 0 or reorder_delay_ms < 0:
            raise ValueError("link latency_ms, jitter_ms and reorder_delay_ms must be >= 0")
        profile = dev.profile.get("link", {})
        self.dev = dev
        self.loss, self.duplicate, self.reorder, self.corrupt = loss, duplicate, reorder, corrupt
        self.latency_ms, self.jitter_ms, self.reorder_delay_ms = latency_ms, jitter_ms, reorder_delay_ms
        self.outages = [tuple(o) for o in outages]
        self.uart_id = uart_id
        self.wake_pin = wake_pin
        self.ready_pin = ready_pin
        self.peer = peer or profile.get("peer", "adapter")
        self.edrx_cycle_us = int(1e6 * (edrx_cycle_s if edrx_cycle_s is not None
                                        else profile.get("edrx_cycle_s", 0.0)))
        self.buffer_bytes = int(buffer_bytes if buffer_bytes is not None
                                else profile.get("buffer_bytes", 0))
        # Each modem pages at its own offset within the cycle (set by its identity).
        self._page_phase_us = (dev.world.rng(dev.device_id, "edrx").randrange(
            max(1, self.edrx_cycle_us)) if self.edrx_cycle_us else 0)
        self.on_uplink = None
        self.uplinks = []
        self.downlink_waits = []
        self.stats = {k: 0 for k in ("up_sent", "up_lost", "up_duplicated", "up_corrupted",
                                     "up_reordered", "up_delivered", "down_sent", "down_lost",
                                     "down_duplicated", "down_corrupted", "down_reordered",
                                     "down_delivered", "down_overflow_bytes",
                                     "down_peer_overflow", "down_unheard_bytes", "wakes")}
        self._tx = bytearray()
        self._queue = collections.deque()      # (network arrival us, packet) held by the peer
        self._queued_bytes = 0
        self._sending = False
        self._waking = False
        self._ready = False
        self._connected_until_us = 0
        self._up_rng = dev.world.rng(dev.device_id, "link-up")
        self._down_rng = dev.world.rng(dev.device_id, "link-down")
        dev.attach_uart(uart_id, self.on_device_write)
        dev.on_output(ready_pin, self._ready_changed)
        dev.drive_pin(wake_pin, 1)             # the peer's idle level: not asking

    def connect(self, on_uplink):
        self.on_uplink = on_uplink

    def outage(self, start_ms, duration_ms):
        self.outages.append((start_ms, start_ms + duration_ms))

    def in_outage(self, t_ms):
        return any(a <= t_ms < b for a, b in self.outages)

    @property
    def held(self):
        """Packets the peer holds for the device."""
        return len(self._queue)

    # --- uplink -----------------------------------------------------------------------
    def on_device_write(self, data):
        self._tx += data
        while True:
            end = self._tx.find(b"\x00")
            if end < 0:
                break
            chunk = bytes(self._tx[:end + 1])
            del self._tx[:end + 1]
            if end == 0:
                continue  # a lone delimiter (the firmware's preamble before a frame) is no packet
            self._send_up(chunk)
        if len(self._tx) >= _MAX_UNDELIMITED:
            chunk = bytes(self._tx)
            self._tx.clear()
            self._send_up(chunk)

    def _radio(self, ma_key, nbytes):
        """One frame on the radio: a connection (frame_us) unless the last frame's connection
        is still up (the profile's connection_window_s), plus its bytes."""
        dev = self.dev
        radio = dev.profile["radio"]
        now = dev.world.now_us
        us = radio["per_byte_us"] * nbytes
        if now >= self._connected_until_us:
            us += radio["frame_us"]
        self._connected_until_us = now + int(radio.get("connection_window_s", 0.0) * 1e6)
        dev.energy.pulse("radio", radio[ma_key], us)

    def _send_up(self, chunk):
        dev = self.dev
        self._radio("tx_ma", len(chunk))
        dev.energy.count("tx_frames")
        dev.energy.count("tx_bytes", len(chunk))
        self.stats["up_sent"] += 1
        for t_us, data in self._faults(chunk, self._up_rng, "up"):
            dev.world.at_us(t_us, self._deliver_up, data)

    def _deliver_up(self, data):
        self.stats["up_delivered"] += 1
        t_ms = self.dev.world.now_ms
        self.dev.world.record(self.dev.device_id, "uplink", data.hex())
        if self.on_uplink is not None:
            self.on_uplink(data, t_ms)
        else:
            self.uplinks.append((t_ms, data))

    # --- downlink ---------------------------------------------------------------------
    def send_downlink(self, data):
        """The centre sends `data` (one packet) now."""
        self.stats["down_sent"] += 1
        for t_us, packet in self._faults(bytes(data), self._down_rng, "down"):
            self.dev.world.at_us(t_us, self._arrive_at_network_edge, packet)

    def _arrive_at_network_edge(self, packet):
        world = self.dev.world
        now = world.now_us
        if self.edrx_cycle_us and now >= self._connected_until_us:
            # In idle the network pages the modem only at its next paging occasion (3GPP
            # TS 24.008 eDRX); while a connection is up (an uplink's ACK) it sends at once.
            cycle, phase = self.edrx_cycle_us, self._page_phase_us
            page = now + (phase - now) % cycle
            world.at_us(page, self._peer_receive, (now, packet))
        else:
            self._peer_receive((now, packet))

    def _peer_receive(self, item):
        arrival_us, packet = item
        if self.buffer_bytes and self._queued_bytes + len(packet) > self.buffer_bytes:
            self.stats["down_peer_overflow"] += 1
            self.dev.world.record(self.dev.device_id, "link_peer_overflow", len(packet))
            return
        self._queue.append((arrival_us, packet))
        self._queued_bytes += len(packet)
        self._pump()

    def _ready_changed(self, level):
        self._ready = level == 1      # floating reads "not ready" (the adapter's CTS pull-up)
        if self._ready:
            self._pump()

    def _pump(self):
        if self._sending:
            return
        if not self._queue:
            if self._waking:
                self._waking = False
                self.dev.drive_pin(self.wake_pin, 1)
            return
        if not self._ready:
            if not self._waking:
                self._waking = True
                self.stats["wakes"] += 1
                self.dev.drive_pin(self.wake_pin, 0)
            return
        arrival_us, packet = self._queue.popleft()
        self._queued_bytes -= len(packet)
        self._sending = True
        byte_us = self.dev.uarts[self.uart_id].byte_us()
        self.dev.world.at_us(self.dev.world.now_us + int(len(packet) * byte_us),
                             self._on_the_wire_done, (arrival_us, packet))

    def _on_the_wire_done(self, item):
        arrival_us, packet = item
        self._sending = False
        self._deliver_down(arrival_us, packet)
        self._pump()

    def _deliver_down(self, arrival_us, data):
        dev = self.dev
        self._radio("rx_ma", len(data))
        dev.energy.count("rx_frames")
        dev.energy.count("rx_bytes", len(data))
        self.stats["down_delivered"] += 1
        lost = dev.feed_uart(self.uart_id, data)
        if lost and dev.state not in ("run", "wait", "idle", "repl"):
            self.stats["down_unheard_bytes"] += lost
        else:
            self.stats["down_overflow_bytes"] += lost
        waited_ms = (dev.world.now_us - arrival_us) / 1000
        self.downlink_waits.append((arrival_us / 1000, dev.world.now_ms, waited_ms))
        dev.world.record(dev.device_id, "downlink", "%s waited %.3f ms" % (data.hex(), waited_ms))

    # --- faults -----------------------------------------------------------------------
    def _faults(self, data, rng, direction):
        """[(delivery_t_us, bytes)] for one packet. Draws the same random numbers whatever
        the fault settings, so changing one probability does not reshuffle the others."""
        now_us = self.dev.world.now_us
        r_loss, r_dup = rng.random(), rng.random()
        copies = []
        for _ in range(2):
            copies.append((rng.random(), rng.random(), rng.random(), rng.expovariate(1.0),
                           rng.random()))
        if self.in_outage(now_us / 1000) or r_loss < self.loss:
            self.stats[direction + "_lost"] += 1
            return []
        count = 1
        if r_dup < self.duplicate:
            count = 2
            self.stats[direction + "_duplicated"] += 1
        out = []
        for r_corrupt, r_pos, r_bit, r_jitter, r_reorder in copies[:count]:
            packet = data
            if r_corrupt < self.corrupt and data:
                body = max(1, len(data) - 1)  # leave the trailing delimiter alone
                pos = int(r_pos * body)
                flipped = bytearray(data)
                flipped[pos] ^= 1 << int(r_bit * 8)
                packet = bytes(flipped)
                self.stats[direction + "_corrupted"] += 1
            delay_ms = self.latency_ms + self.jitter_ms * r_jitter
            if r_reorder < self.reorder:
                delay_ms += self.reorder_delay_ms
                self.stats[direction + "_reordered"] += 1
            out.append((now_us + round(delay_ms * 1000), packet))
        return out
