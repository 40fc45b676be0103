"""Wiring: the core on one side, the board's drivers, the flash queue and persistence on
the other. `main.py` builds the board and calls `App(hw).run()`.

One pass of the superloop (`step`): feed the watchdog, collect events (button edges, link
frames, GNSS fixes, then a tick), hand each to the core, carry out its actions, then ask
the core how long and how deeply to sleep. Log lines are short and go to stdout.

How it sleeps follows docs/LINK.md: awake (polling the UARTs) while the GNSS is on or the
link's peer holds the wake line low; otherwise LINK_READY goes low, a guard time lets a
packet already on the wire land, the link UART is flushed, and the board light- or
deep-sleeps until a timer, the button (ext0) or the wake line (ext1). Over BLE there is no
UART, wake line or LINK_READY: the radio's listen windows (firmware/ble.py) set the sleep.
"""
import gc

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import forget, persist
from firmware.clock import ticks_add, ticks_diff
from firmware.store import Queue
from protocol import messages

# Test builds only (`vigil deploy --test-build`, hil): TEST_INJECT stimuli (firmware/inject.py,
# SPEC 4.6). False here: mpy-cross drops every `if _TEST:` block, so a production .mpy has no
# trace of the channel, and production images do not even carry inject.py.
_TEST = const(False)
# SPEC 6 values (protocol/host_constants.py; tests/test_core.py checks them)
_RESET_DEEPSLEEP = const(4)
_STORE_ALARM = const(2)            # core.STORE_ALARM: a send action's store kind for an alarm
FW_VERSION = (1, 1, 0)
_MAX_ALARM_FRAMES = const(8)
# After LINK_READY drops, a packet the peer had already started still lands: the longest
# frame (243 bytes + delimiter) takes 21 ms at 115200 baud.
_READY_GUARD_MS = const(25)
# No deep sleep this soon after link traffic: the ACK of what was sent is on its way, and
# waking from light sleep for it costs far less than a boot.
_LISTEN_AFTER_TRAFFIC_MS = const(3000)
# While the peer holds the wake line low, look at the UART at least this often.
_WAKE_LINE_POLL_MS = const(20)


def log(text):
    print("vigil:", text)


def _make_link(hw, root):
    """The link the pin table names: LINK_KIND "uart" (default) or "ble"."""
    if getattr(hw.pins, "LINK_KIND", "uart") == "ble":
        import bluetooth

        from firmware import ble
        return ble.BleLink(bluetooth.BLE(), bluetooth.UUID, hw.ticks_ms, log,
                           secrets=root + "/state/ble.bin")
    from firmware import link
    return link.Link(hw.link_uart)


# A press that woke the board is dated this much before the modelled wake as well: a board
# that boots faster than DEEP_WAKE_BOOT_MS must not lose a 1.5 s hold (issue 9: >= 1.5 s
# always raises, < 1.0 s never; 1.0 s + 0.15 s + the model's error stays below 1.5 s).
_WAKE_MARGIN_MS = const(150)
# The safe-mode window (safemode.py) polls every 50 ms and ends at the first pressed poll.
_WINDOW_POLL_MS = const(50)


def boot_press_began(boot_ticks, now, woke_by_button, boot_ms):
    """The ticks a press held at the app's start began at, as early as it can have been,
    so that a hold is never under-counted (a false alarm is the lesser harm):
    - held at main.py's first line: it began during the ROM boot, at the reset at the
      earliest, boot_ms before main.py (and the press that woke the board at that reset);
    - else it began after main.py started, at the safe-mode window's last poll at the
      earliest;
    - without main.py's ticks (a test that builds the app itself): now, less the boot when
      the press woke the board."""
    if boot_ticks is None:
        return ticks_add(now, -(boot_ms + _WAKE_MARGIN_MS)) if woke_by_button else now
    main_ms, held_at_main, app_ms = boot_ticks
    if held_at_main or woke_by_button:
        return ticks_add(main_ms, -(boot_ms + (_WAKE_MARGIN_MS if woke_by_button else 0)))
    return ticks_add(app_ms, -_WINDOW_POLL_MS)


class App:
    def __init__(self, hw, root="", guard=None, boot_ticks=None):
        self.hw = hw
        # (ticks at main.py's first line, button held then, ticks before the app's imports)
        self.boot_ticks = boot_ticks
        self.root = root
        self.guard = guard                     # bootguard.BootGuard, cleared at the first sleep
        self._last_traffic = None              # ticks of the last frame in or out
        self.counter = persist.MessageCounter(root + "/state/counter.bin")
        self.queue = Queue(root + "/queue")
        self.alarm_frames = {}                 # counter -> sealed frame, for fast resends
        self.events = []
        self._alarm_writes = []                # alarm frames stored, not yet on the link
        self.reboot = False

    # --- boot -------------------------------------------------------------------------------
    def start(self):
        hw = self.hw
        # Boot-only work first, in its own module, dropped once done; the superloop's modules
        # load after it, into the heap it gave back (docs/HARDWARE.md, "RAM").
        from firmware import startup
        (cause, boots, cfg, state, device_id, ring, downlinks, self.sender,
         self.down_floor) = startup.resume(self, log, _MAX_ALARM_FRAMES)
        del startup
        forget("firmware.startup")
        # Needed again only for a CONFIG frame, which imports them again (orders.py, messages)
        forget("firmware.config")
        forget("protocol.config_keys")
        from firmware import battery, button, core, gnss, outputs
        self.downlinks = downlinks
        self.link = _make_link(hw, self.root)
        if not self.link.has_wake_line:
            # A link its peer cannot wake (BLE): reached only in the device's listen windows.
            cfg["wake_line"] = 0
        self.button = button.Button(hw.button_pin, hw.ticks_ms)
        self.battery = battery.Battery(hw.battery_adc, hw.charger_pin, hw.pins.BATTERY_DIVIDER)
        self.outputs = outputs.Outputs(hw.haptic_pin, hw.led_pin)
        self.gnss = gnss.Gnss(hw.gnss_uart, hw.gnss_en)
        if _TEST:
            from firmware import inject
            self.injector = inject.Injector(self, ring, downlinks, device_id)
        self.core = core.Core(cfg, state)
        hw.arm_wakes()
        self.wdt = hw.watchdog()
        hw.ready(1)
        log("boot %d cause %d device %d counter %d queue %d" % (
            boots, cause, device_id, state["counter"], len(self.queue)))
        hello = {"fw_major": FW_VERSION[0], "fw_minor": FW_VERSION[1],
                 "fw_patch": FW_VERSION[2], "schema_hash": messages.SCHEMA_HASH,
                 "reset_cause": cause, "boot_count": boots & 0xFFFFFFFF}
        now = hw.ticks_ms()
        self.dispatch(("boot", hello), now)
        self.dispatch(("queue_depth", len(self.queue)), now)
        if self.button.pressed():
            # Held through the boot: the press began before the app could see it. Counting
            # it from now would lose a 1.5 s press to the boot and the imports.
            self.button.reported = 1
            woke = cause == _RESET_DEEPSLEEP and hw.woke_by_button
            self.dispatch(("button", 1), boot_press_began(
                self.boot_ticks, now, woke, getattr(hw.pins, "DEEP_WAKE_BOOT_MS", 0)))

    # --- one pass ---------------------------------------------------------------------------
    def step(self):
        """Handle everything pending; return (mode, sleep_ms) for the sleep that follows."""
        hw = self.hw
        self.wdt.feed()
        now = hw.ticks_ms()
        self.outputs.wake(now)
        for pressed, ticks in self.button.events():
            self.dispatch(("button", pressed), ticks)
        # What the link brought, opened by the one receiver: new frames; authentic repeats
        # (the centre missed our ACK: acked again, delivered once, SPEC); refusals, logged.
        frames = []
        repeats = []
        for data in self.link.poll():
            for item in self.downlinks.feed(data):
                if hasattr(item, "fields"):
                    frames.append(item)
                elif getattr(item, "frame", None) is not None:
                    repeats.append(item.frame)
                else:
                    log("link: dropped frame: %s" % item)
        if frames or repeats:
            self._last_traffic = now
        for frame in frames:
            if _TEST and frame.name == "TEST_INJECT":   # the rig's, not the centre's: no ACK
                self.injector.apply(frame, now)
                continue
            self.dispatch(("rx", frame.name, frame.fields, frame.counter, frame.flags), now)
        for frame in repeats:
            if _TEST and frame.name == "TEST_INJECT":
                continue
            self.dispatch(("rx_duplicate", frame.counter, frame.flags), now)
        for fix in self.gnss.poll():
            self.dispatch(("fix", fix), now)
        self.dispatch(("tick",), now)
        gc.collect()
        now = hw.ticks_ms()
        mode, sleep_ms = self.core.sleep_plan(now)
        out_next = self.outputs.step(now)
        if out_next is not None:
            mode = "idle"
            sleep_ms = min(sleep_ms, max(0, ticks_diff(out_next, now)))
        if self.gnss.powered:
            mode = "idle"                       # the GNSS UART hears nothing in light sleep
        if hw.link_wake_asserted():
            mode = "idle"                       # the peer is waiting to send
            sleep_ms = min(sleep_ms, _WAKE_LINE_POLL_MS)
        if mode == "deep" and self._last_traffic is not None and ticks_diff(
                now, self._last_traffic) < _LISTEN_AFTER_TRAFFIC_MS:
            mode = "light"
            sleep_ms = min(sleep_ms, _LISTEN_AFTER_TRAFFIC_MS)
        plan = getattr(self.link, "plan_sleep", None)
        if plan is not None:                    # BLE: listen windows (firmware/ble.py)
            mode, sleep_ms = plan(mode, sleep_ms, now)
        if _TEST:
            mode, sleep_ms = self.injector.plan(mode, sleep_ms, now)
        return mode, sleep_ms

    def sleep(self, mode, sleep_ms):
        hw = self.hw
        if mode == "idle" or sleep_ms <= 0:
            if sleep_ms > 0:
                hw.wait(sleep_ms)               # awake: back early on bytes or an IRQ
            return
        uart = hw.link_uart                     # None over BLE: no LINK_READY, no guard
        if uart is not None:
            # Stop listening before the sleep: LINK_READY low, then a guard time for a packet
            # the peer had already started. Bytes that came in meanwhile (or a wake line
            # still held) mean another pass instead of the sleep.
            hw.ready(0)
            hw.time.sleep_ms(_READY_GUARD_MS)
            if uart.any() or hw.link_wake_asserted():
                hw.ready(1)
                return
        if self.guard is not None:
            self.guard.clear()                  # a full pass ran: not a crash loop
        if mode == "deep":
            self.gnss.power(0)
            # The core's timers resume at the wake, less the time slept by the RTC.
            state = self.core.sleep_snapshot(hw.ticks_ms())
            state["deep"]["rtc_ms"] = self.rtc_ms()
            state["down"] = self.down_floor.snapshot()
            persist.rtc_save(hw.rtc, state)
            log("deep sleep %d ms" % sleep_ms)
            if uart is not None:
                uart.flush()
            hw.hold_outputs()
            hw.machine.deepsleep(sleep_ms)      # a reset: never returns on the board
            return
        if uart is not None:
            uart.flush()
        hw.machine.lightsleep(sleep_ms)
        hw.after_light_sleep()
        hw.ready(1)

    def rtc_ms(self):
        """The RTC in ms: unlike ticks, it keeps counting through deep sleep."""
        return self.hw.time.time_ns() // 1000000

    def run(self):
        self.start()
        while not self.reboot:
            mode, sleep_ms = self.step()
            self.sleep(mode, sleep_ms)
        self.hw.machine.reset()

    # --- events and actions -----------------------------------------------------------------
    def dispatch(self, event, now):
        events = self.events
        events.append(event)
        while events:
            for action in self.core.handle(events.pop(0), now):
                self.act(action, now)
        # An alarm goes on the link only once it is in the flash queue and the core's
        # snapshot (which follows the send in the same batch) is saved: a power cut at any
        # write before that leaves no alarm the centre has but the device forgot.
        for frame in self._alarm_writes:
            self._write(frame)
        self._alarm_writes = []

    def act(self, action, now):
        kind = action[0]
        if kind == "send":
            self._send(action)
        elif kind == "resend":
            frame = self.alarm_frames.get(action[1])
            if frame is None:
                # One record from flash: reading the whole queue would not fit in RAM at 10k
                # records.
                record = self.queue.get(action[1])
                frame = None if record is None else record[1]
            if frame is None:
                log("resend %d: not stored" % action[1])
            else:
                self._write(frame)
        elif kind == "flush":
            self._flush(action[1], action[2], action[3])
        elif kind == "acked":
            for counter in action[1]:
                self.alarm_frames.pop(counter, None)
            if self.queue.ack(action[1]):
                self.events.append(("queue_depth", len(self.queue)))
        elif kind == "gnss":
            self.gnss.power(action[1])
            self.hw.cpu_slow(action[1])
        elif kind == "haptic":
            self.outputs.haptic(action[1])
        elif kind == "led":
            self.outputs.led(action[1])
        elif kind == "sample_battery":
            mv, pct, charging = self.battery.read()
            self.events.append(("battery", mv, pct, charging))
        elif kind == "persist":
            persist.write_file(self.root + "/state/core.bin", action[1])
        elif kind == "save_config":
            persist.save_config(self.root + "/state", action[1], action[2])
        elif kind == "reboot":
            self.reboot = True
        elif kind == "log":
            log(action[1])

    def _write(self, frame):
        self.link.write(frame)
        self._last_traffic = self.hw.ticks_ms()

    def _send(self, action):
        _, name, fields, flags, counter, store = action
        self.counter.ensure(counter + 1)               # reserve before the counter is used
        try:
            frame = self.sender.seal(name, fields, flags, counter=counter)
        except ValueError as exc:                      # PayloadError: a core or driver bug
            log("send %s: %s" % (name, exc))
            return
        if store:
            evicted = self.queue.append(counter, store == _STORE_ALARM, frame)
            if evicted:
                self.events.append(("evicted", evicted))
            self.events.append(("queue_depth", len(self.queue)))
        if store == _STORE_ALARM:
            self.alarm_frames[counter] = frame
            if len(self.alarm_frames) > _MAX_ALARM_FRAMES:
                del self.alarm_frames[min(self.alarm_frames)]
            self._alarm_writes.append(frame)
        else:
            self._write(frame)

    def _flush(self, max_n, below, skip):
        """Resend queued records oldest-first, byte for byte as stored (SPEC 3.3: a resend
        is the same frame, so it never reuses a CTR keystream over other plaintext; the
        centre tells a late record from a live one by its counter)."""
        sent = 0
        for counter, _is_alarm, frame in self.queue.pending(limit=max_n, exclude=skip):
            if counter >= below:
                break
            self._write(frame)
            sent += 1
        if sent:
            log("flushed %d queued record(s)" % sent)
