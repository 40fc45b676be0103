"""The Dut: what a HIL test talks to, whatever the board is.

    dut.press_button(2000)                 # a press of 2 s (the wearer's long press)
    alarm = dut.expect("ALARM", timeout=10_000, where={"kind": 1})
    dut.send("COMMAND", {"command": 2, "arg": 1})
    dut.clock.now_ms()                     # virtual on emulated boards, wall time on real ones
    dut.log                                # console text lines

The Dut sees only frames: uplinks come off `link` (a Transport), go to the rig's monitoring
centre (host.centre.Centre, the `centre` fixture) whose replies go back down the link, and
are decoded with the device key so tests can expect them. Waiting always means pumping
that loop on the rig's clock, so ACKs and operator acks flow while a test waits.
"""
from collections import deque

from host.transport import TransportTimeout
from protocol import codec

KEY_ID = 0
WIRE_FRAMES_KEPT = 200_000  # the newest frames a failing test's pcapng holds (a soak runs long)


class ExpectTimeout(AssertionError):
    """expect() saw no matching frame in time; the message says what did arrive."""


class Dut:
    def __init__(self, board, link, clock, centre, drivers, device_id, key, utc0_ms,
                 strategy=None):
        self.board = board
        self.link = link
        self.clock = clock
        self.centre = centre
        self.drivers = drivers
        self.device_id = device_id
        self.key = key
        self.utc0_ms = utc0_ms
        self.strategy = strategy
        self.frames = []  # (t_ms, Frame): every authentic uplink, retransmissions included
        self.downlinks = []  # (t_ms, wire) sent to the device
        self.refused = []  # (t_ms, reason) uplink bytes that did not decode
        self.lost = []  # (t_ms, wire) downlinks the rig dropped on purpose (lose_downlinks)
        self.lose_downlinks = 0
        self.unsent = []  # (t_ms, wire) the device never got ready for
        # (t_ms, "up"|"down", wire): every frame the link moved, refused ones too; hil.plugin
        # writes it as a failing test's pcapng
        self.wire = deque(maxlen=WIRE_FRAMES_KEPT)
        link.add_tap(self._tap)
        self._used = set()
        ring = codec.Keyring()
        ring.add(device_id, KEY_ID, key)
        self._receiver = codec.Receiver(ring, check_replay=False)

    def _tap(self, direction, frame, _time_ns):
        self.wire.append((self.clock.now_ms(), "up" if direction == "rx" else "down", frame))

    # ---- time ---------------------------------------------------------------------------
    def utc_ms(self):
        return self.utc0_ms + int(self.clock.now_ms())

    def wait(self, ms):
        """Let `ms` pass on the rig's clock, answering the device all along."""
        self._pump(self.clock.now_ms() + ms)

    # ---- stimuli ------------------------------------------------------------------------
    def _driver(self, name):
        driver = self.drivers.get(name)
        if driver is None:
            raise NotImplementedError("board %s has no %s driver" % (self.board.name, name))
        return driver

    def press_button(self, ms):
        self._driver("button").press(ms)

    def set_route(self, waypoints, speed_kmh=5.0, sky=True):
        """Move the wearer along [(lat, lon), ...] at speed_kmh from now; one point stands
        still. sky=False: indoors, no fix at all."""
        self._driver("gps").set_route(waypoints, speed_kmh, sky)

    def set_battery(self, pct):
        self._driver("battery").set_pct(pct)

    def cut_power(self):
        self._driver("power").cut()
        if self.strategy is not None:
            self.strategy.fall_back("provisioned")

    def power_on(self):
        self._driver("power").on()

    def reset(self):
        self._driver("power").reset()

    @property
    def reset_cause(self):
        """The HELLO reset_cause that reset() gives: EN (a relay, esptool's DTR/RTS, the
        emulator) is a power-on reset; TEST_INJECT's machine.reset() a hard reset."""
        from protocol import host_constants as constants
        return getattr(self._driver("power"), "reset_cause", constants.RESET_POWER_ON)

    def cut_power_after_flash_writes(self, n):
        """Cut the supply right after the next n flash writes (a brown-out mid-update)."""
        self._driver("power").cut_after_flash_writes(n)

    def haptic_pulses(self, since_ms=0):
        """[(start_ms, duration_ms or None)] of the haptic motor since since_ms (clock ms)."""
        return self._driver("outputs").pulses("haptic", since_ms)

    def lose_next_downlinks(self, n):
        """Drop the next n frames the centre sends (ACKs included): loss on the way down,
        on any board, without touching the board."""
        self.lose_downlinks = n

    def console_write(self, data):
        """Type into the console (the REPL UART): a key for safe mode, a line at the REPL."""
        self._driver("console").write(data.encode() if isinstance(data, str) else data)

    def wait_for_log(self, text, timeout=5_000, step_ms=50, since=0):
        """Pump until a console line (from line `since` on) contains `text`; returns the
        line or raises ExpectTimeout."""
        deadline = self.clock.now_ms() + timeout
        while True:
            for line in self.log[since:]:
                if text in line:
                    return line
            if self.clock.now_ms() >= deadline:
                raise ExpectTimeout("no console line with %r within %d ms; last: %r"
                                    % (text, timeout, self.log[-3:]))
            self.wait(step_ms)

    @property
    def log(self):
        return self._driver("console").lines()

    # ---- frames -------------------------------------------------------------------------
    def send(self, name, fields=None):
        """Queue a downlink from the centre (sealed with the device key); it goes out at once
        if the centre may send now, else with its next flush. Returns its counter."""
        counter = self.centre.send(self.device_id, name, dict(fields or {}), self.utc_ms())
        self._send_all(self.centre.tick(self.utc_ms()))
        return counter

    def mark(self):
        """A position in the frame history: expect(..., since=mark) looks only later."""
        return len(self.frames)

    def expect(self, message_type, timeout=10_000, where=None, since=0):
        """The first not yet expected uplink of `message_type` (received since `since`) that
        matches `where` (a dict of field values, or a callable on the Frame); waits up to
        `timeout` ms on the rig's clock. Raises ExpectTimeout naming what did arrive."""
        deadline = self.clock.now_ms() + timeout

        def match():
            for i in range(since, len(self.frames)):
                frame = self.frames[i][1]
                if i in self._used or frame.name != message_type:
                    continue
                if where is None or (where(frame) if callable(where) else
                                     all(frame.fields.get(k) == v for k, v in where.items())):
                    self._used.add(i)
                    return frame
            return None

        found = match() or self._pump(deadline, match)
        if found is None:
            seen = ", ".join("%s#%d@%d" % (f.name, f.counter, t) for t, f in self.frames[since:][-12:])
            raise ExpectTimeout("no %s%s within %d ms (at %d ms); last uplinks: %s"
                                % (message_type, "" if where is None else " matching " + (
                                    repr(where) if isinstance(where, dict) else "where"),
                                   timeout, self.clock.now_ms(), seen or "none"))
        return found

    def expect_none(self, message_type, within, where=None):
        """Wait `within` ms and fail if an uplink of that type (matching `where`) arrived."""
        start = self.mark()
        self.wait(within)
        for _t, frame in self.frames[start:]:
            if frame.name == message_type and (where is None or (
                    where(frame) if callable(where) else
                    all(frame.fields.get(k) == v for k, v in where.items()))):
                raise AssertionError("unexpected %s #%d %r" % (frame.name, frame.counter,
                                                               frame.fields))

    def of_type(self, message_type, since=0):
        return [(t, f) for t, f in self.frames[since:] if f.name == message_type]

    # ---- the loop -----------------------------------------------------------------------
    def _send_all(self, pairs):
        for _link_id, wire in pairs:
            self._down(wire)

    def _down(self, wire):
        if self.lose_downlinks > 0:
            self.lose_downlinks -= 1
            self.lost.append((self.clock.now_ms(), wire))
            return
        try:
            self.link.send(wire)
        except TransportTimeout:
            # LINK_READY never rose: the bytes were not sent (docs/LINK.md step 5). The
            # centre keeps the downlink and retries it; the wake line stays asserted.
            self.unsent.append((self.clock.now_ms(), wire))
            return
        self.downlinks.append((self.clock.now_ms(), wire))

    def _on_uplink(self, data):
        now_ms = self.clock.now_ms()
        for item in self._receiver.feed(data):
            if isinstance(item, codec.Frame):
                self.frames.append((now_ms, item))
            else:
                self.refused.append((now_ms, item.reason))
        for wire in self.centre.receive(self.device_id, data, self.utc_ms()):
            self._down(wire)

    def _pump(self, until_ms, stop=None):
        """Run the link and the centre until until_ms on the clock, or until stop() returns
        something (returned)."""
        while True:
            now_ms = self.clock.now_ms()
            due_utc = self.centre.next_deadline_ms()
            due_ms = None if due_utc is None else due_utc - self.utc0_ms
            if due_ms is not None and due_ms <= now_ms:
                self._send_all(self.centre.tick(self.utc_ms()))
                due_utc = self.centre.next_deadline_ms()
                due_ms = None if due_utc is None else due_utc - self.utc0_ms
            if now_ms >= until_ms:
                return None
            step_end = until_ms if due_ms is None else min(until_ms, max(due_ms, now_ms + 1))
            frame = self.link.recv(timeout_ms=max(0, step_end - now_ms))
            if frame is not None:
                self._on_uplink(frame)
                if stop is not None:
                    found = stop()
                    if found is not None:
                        return found

    def close(self):
        self.link.close()
