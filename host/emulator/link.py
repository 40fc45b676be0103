"""The device's link to the monitoring centre, on UART 0, with seeded faults.

Byte-level on the device side; 0x00-delimited chunks are the packets that get lost,
duplicated, reordered, corrupted and delayed. Like a gateway or a phone, the link holds
downlinks while the device sleeps and puts them into the UART's RX buffer when it next wakes.
"""
_MAX_UNDELIMITED = 4096  # log text with no frame delimiter is sent on once it reaches this


class Link:
    """Centre side: `connect(on_uplink)` with on_uplink(data: bytes, t_ms: float), or read
    `uplinks` [(t_ms, bytes)]; `send_downlink(data)`. `downlink_waits` holds
    (arrival_t_ms, delivered_t_ms, waited_ms) per delivered downlink; `stats` counts.

    Faults (probabilities 0..1, times in ms): loss, duplicate, reorder (extra delay of
    reorder_delay_ms), corrupt (one bit flipped), latency_ms + exponential jitter_ms, and
    outages [(start_ms, end_ms)] during which every packet either way is lost.
    """

    def __init__(self, dev, loss=0.0, duplicate=0.0, reorder=0.0, corrupt=0.0, latency_ms=50.0,
                 jitter_ms=20.0, reorder_delay_ms=500.0, outages=(), uart_id=0):
        for name, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder),
                        ("corrupt", corrupt)):
            if not 0.0 <= p <= 1.0:
                raise ValueError("link %s %r: must be a probability 0..1" % (name, p))
        if latency_ms < 0 or jitter_ms < 0 or reorder_delay_ms < 0:
            raise ValueError("link latency_ms, jitter_ms and reorder_delay_ms must be >= 0")
        self.dev = dev
        self.loss, self.duplicate, self.reorder, self.corrupt = loss, duplicate, reorder, corrupt
        self.latency_ms, self.jitter_ms, self.reorder_delay_ms = latency_ms, jitter_ms, reorder_delay_ms
        self.outages = [tuple(o) for o in outages]
        self.uart_id = uart_id
        self.on_uplink = None
        self.uplinks = []
        self.downlink_waits = []
        self.stats = {k: 0 for k in ("up_sent", "up_lost", "up_duplicated", "up_corrupted",
                                     "up_reordered", "up_delivered", "down_sent", "down_lost",
                                     "down_duplicated", "down_corrupted", "down_reordered",
                                     "down_delivered", "down_overflow_bytes")}
        self._tx = bytearray()
        self._held = []
        self._up_rng = dev.world.rng(dev.device_id, "link-up")
        self._down_rng = dev.world.rng(dev.device_id, "link-down")

    def connect(self, on_uplink):
        self.on_uplink = on_uplink

    def outage(self, start_ms, duration_ms):
        self.outages.append((start_ms, start_ms + duration_ms))

    def in_outage(self, t_ms):
        return any(a <= t_ms < b for a, b in self.outages)

    @property
    def held(self):
        return len(self._held)

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

    def _send_up(self, chunk):
        dev = self.dev
        radio = dev.profile["radio"]
        dev.energy.pulse("radio", radio["tx_ma"], radio["frame_us"] + radio["per_byte_us"] * len(chunk))
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
            self.dev.world.at_us(t_us, self._arrive_down, packet)

    def _arrive_down(self, data):
        if self.dev.listening:
            self._deliver_down(self.dev.world.now_us, data)
        else:
            self._held.append((self.dev.world.now_us, data))

    def on_wake(self):
        """The device is awake again (after light sleep or boot): hand over what was held."""
        held, self._held = self._held, []
        for arrival_us, data in held:
            self._deliver_down(arrival_us, data)

    def _deliver_down(self, arrival_us, data):
        dev = self.dev
        radio = dev.profile["radio"]
        dev.energy.pulse("radio", radio["rx_ma"], radio["frame_us"] + radio["per_byte_us"] * len(data))
        dev.energy.count("rx_frames")
        dev.energy.count("rx_bytes", len(data))
        self.stats["down_delivered"] += 1
        self.stats["down_overflow_bytes"] += dev.feed_uart(self.uart_id, data)
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
