"""The drivers and the app wiring on fake hardware (CPython), with the real codec, flash
queue and persistence in a temporary directory."""
import types

from firmware import app as app_mod
from firmware import battery, board, button, core, outputs, persist, pins
from host.keys import device_key_file_bytes
from protocol import codec

KEY = bytes(range(16))
DEVICE = 77


class FakePin:
    IN, OUT, PULL_UP, IRQ_FALLING, IRQ_RISING = 1, 2, 3, 4, 8

    def __init__(self, n, mode=None, pull=None, value=None, hold=None):
        # the button and the link's wake line idle high (pulled up)
        self.n, self.handler = n, None
        self.level = 1 if n in (pins.PANIC_BUTTON_PIN, pins.LINK_WAKE_PIN) else 0
        self.history = []
        self.held = False
        if value is not None:
            self.value(value)

    def init(self, mode=None, pull=None, value=None, hold=None):
        if hold is not None:
            self.held = hold

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        self.history.append(self.level)

    def irq(self, handler=None, trigger=0, wake=None):
        self.handler = handler

    def drive(self, level):                    # the outside world changes the level
        self.level = level
        if self.handler:
            self.handler(self)


class FakeUart:
    def __init__(self, *a, **kw):
        self.rx, self.tx = bytearray(), bytearray()

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, data):
        self.tx += data
        return len(data)

    def flush(self):
        pass


class Clock:
    """The board's `time`: ticks (restart at a reset) and the RTC (counts through deep
    sleep, like the ESP32's)."""

    def __init__(self):
        self.now = (1 << 30) - 3000
        self.rtc_ms = 800_000_000_000

    def ticks_ms(self):
        return self.now

    def sleep_ms(self, ms):
        self.now = core.ticks_add(self.now, ms)
        self.rtc_ms += ms

    def time_ns(self):
        return self.rtc_ms * 1_000_000


def fake_board():
    clock = Clock()
    class FakeAdc:
        ATTN_11DB = 3

        def __init__(self, pin):
            self.attenuation = 0

        def atten(self, value):
            self.attenuation = value

        def read_uv(self):
            # 3.9 V cell through the 2:1 divider; saturates below 11 dB like the ESP32.
            return 1_950_000 if self.attenuation == self.ATTN_11DB else 950_000
    rtc_mem = bytearray()

    def memory(data=None):
        if data is None:
            return bytes(rtc_mem)
        rtc_mem[:] = data

    machine = types.SimpleNamespace(
        Pin=FakePin, UART=FakeUart, ADC=FakeAdc,
        RTC=lambda: types.SimpleNamespace(memory=memory),
        WDT=lambda timeout: types.SimpleNamespace(feed=lambda: None),
        lightsleep=clock.sleep_ms, deepsleep=clock.sleep_ms, reset=lambda: None,
        reset_cause=lambda: 1, wake_reason=lambda: 0, unique_id=lambda: b"\x01\x02\x03\x04",
        freq=lambda hz=None: None,
        PWRON_RESET=1, HARD_RESET=2, WDT_RESET=3, DEEPSLEEP_RESET=4, SOFT_RESET=5, EXT0_WAKE=2)
    esp32 = types.SimpleNamespace(wake_on_ext0=lambda pin, level: None,
                                  wake_on_ext1=lambda pins, level: None, WAKEUP_ALL_LOW=0)
    hw = board.Board(machine, esp32, clock, pins)
    return hw, clock


def centre():
    ring = codec.Keyring()
    ring.add(DEVICE, 1, KEY)
    return codec.Receiver(ring, check_replay=False), codec.Sender(DEVICE, 1, KEY,
                                                                  downlink=True)


def uplinks(hw, receiver):
    frames = [f for f in receiver.feed(bytes(hw.link_uart.tx)) if hasattr(f, "fields")]
    hw.link_uart.tx.clear()
    return frames


def boot(tmp_path, hw=None):
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "device.key").write_bytes(device_key_file_bytes(DEVICE, {1: KEY}))
    hw, clock = hw or fake_board()
    a = app_mod.App(hw, root=str(tmp_path))
    a.start()
    return a, hw, clock


def run(a, clock, ms):
    end = core.ticks_add(clock.now, ms)
    while core.ticks_diff(end, clock.now) > 0:
        mode, sleep_ms = a.step()
        clock.sleep_ms(max(1, min(sleep_ms, core.ticks_diff(end, clock.now))))


def test_battery_percent_from_ocv_table():
    assert battery.percent(3000) == 0 and battery.percent(4300) == 100
    assert battery.percent(3830) == 50 and 50 < battery.percent(3850) < 60
    b = battery.Battery(types.SimpleNamespace(read_uv=lambda: 1_800_000), FakePin(35), 2)
    assert b.read() == (3600, 10, 0)


def test_button_reports_edges_once_and_catches_edges_missed_in_sleep():
    clock = Clock()
    pin = FakePin(0)
    b = button.Button(pin, clock.ticks_ms)
    pin.drive(0)
    clock.sleep_ms(5)
    pin.drive(1)
    pin.drive(0)
    assert [p for p, _ in b.events()] == [1, 0, 1]
    assert b.events() == []
    pin.level = 1                                  # released while asleep: no IRQ
    assert [p for p, _ in b.events()] == [0]


def test_outputs_step_through_a_haptic_pattern_and_blink_led():
    haptic, led = FakePin(25), FakePin(2)
    out = outputs.Outputs(haptic, led)
    out.haptic("operator_ack")
    t = 100
    nxt = out.step(t)
    while nxt is not None:
        t = nxt
        nxt = out.step(t)
    assert haptic.history == [1, 0, 1, 0, 1, 0] and t == 100 + sum(outputs.HAPTIC["operator_ack"])
    out.led("no_contact")
    out.wake(t)
    assert led.level == 1 and out.step(t + 30) is None and led.level == 0


def test_app_boots_sends_hello_and_a_long_press_reaches_the_centre(tmp_path):
    a, hw, clock = boot(tmp_path)
    receiver, _ = centre()
    run(a, clock, 1000)
    names = [f.name for f in uplinks(hw, receiver)]
    assert names[0] == "HELLO"
    hw.button_pin.drive(0)
    run(a, clock, 1600)
    hw.button_pin.drive(1)
    run(a, clock, 100)
    alarms = [f for f in uplinks(hw, receiver) if f.name == "ALARM"]
    assert alarms and alarms[0].fields["kind"] == 1 and alarms[0].ack_requested
    assert len(a.queue) >= 1 and a.queue.alarm_count == 1


def test_ack_stops_resends_and_crash_restart_resumes_the_alarm(tmp_path):
    a, hw, clock = boot(tmp_path)
    receiver, down = centre()
    hw.button_pin.drive(0)
    run(a, clock, 1600)
    hw.button_pin.drive(1)
    run(a, clock, 2500)
    alarms = [f for f in uplinks(hw, receiver) if f.name == "ALARM"]
    assert len(alarms) >= 3 and len({f.counter for f in alarms}) == 1    # resends
    alarm_id = alarms[0].fields["alarm_id"]
    # A crash now: a fresh App on the same flash resumes the alarm and resends it at once.
    a2, hw2, clock2 = boot(tmp_path)
    again = [f for f in uplinks(hw2, receiver) if f.name == "ALARM"]
    assert again and again[0].counter == alarms[0].counter
    assert a2.core.panic_id == alarm_id
    hw2.link_uart.rx += down.seal("ACK", {"highest": alarms[0].counter, "bitmap": 0})
    run(a2, clock2, 200)
    uplinks(hw2, receiver)
    run(a2, clock2, 60_000)
    assert not [f for f in uplinks(hw2, receiver) if f.name == "ALARM"]
    assert a2.queue.alarm_count == 0 and a2.core.panic_id == alarm_id


def test_backlog_is_flushed_byte_for_byte(tmp_path):
    """SPEC 3.3: a queued record is resent as the same bytes (no HISTORIC flag in v2: a
    re-seal under the same counter with another plaintext would reuse CTR keystream)."""
    a, hw, clock = boot(tmp_path)
    receiver, down = centre()
    for i in range(3):
        a.dispatch(("rx", "COMMAND", {"command": 3, "arg": 0}, 10 + i, 0), clock.now)
    run(a, clock, 30_000)                          # > ack_wait_ms: they are backlog now
    sent = [f for f in uplinks(hw, receiver) if f.name == "EVENT"]
    assert len(sent) == 3 and not any(f.historic for f in sent)
    hw.link_uart.rx += down.seal("ACK", {"highest": 1, "bitmap": 0})
    run(a, clock, 100)
    flushed = [f for f in uplinks(hw, receiver) if f.name == "EVENT"]
    assert [f.counter for f in flushed] == [f.counter for f in sent]
    assert [f.raw for f in flushed] == [f.raw for f in sent]


def test_deep_sleep_wake_resumes_the_timers_less_the_rtc_measured_sleep(tmp_path):
    """The app keeps the core's timers and the RTC time in RTC memory; a wake (here a button,
    100 s into a 595 s sleep, with ticks restarted) resumes them less the time the RTC
    counted, sends no HELLO, and keeps the exact counter."""
    persist.save_config(str(tmp_path / "state"), 1, {10: 600})  # reachability_s
    a, hw, clock = boot(tmp_path)
    receiver, _ = centre()
    run(a, clock, 120_000)                         # no fix: GNSS off after gnss_timeout_s
    uplinks(hw, receiver)
    mode, sleep_ms = a.step()
    assert mode == "deep"
    heartbeat_ms = core.ticks_diff(a.core._due["heartbeat"], clock.now)
    counter = a.core.counter
    hw.machine.deepsleep = lambda ms: clock.sleep_ms(100_000)    # the press wakes it early
    a.sleep(mode, sleep_ms)
    hw2, clock2 = fake_board()
    hw2.reset_cause = 4                            # the board read DEEPSLEEP_RESET at its build
    hw2.rtc.memory(hw.rtc.memory())                # RTC memory and the RTC survive
    clock2.rtc_ms, clock2.now = clock.rtc_ms, 4321
    a2, _, _ = boot(tmp_path, (hw2, clock2))
    # less the sleep and the guard time after LINK_READY dropped (app._READY_GUARD_MS)
    assert core.ticks_diff(a2.core._due["heartbeat"], clock2.now) == \
        heartbeat_ms - 100_000 - app_mod._READY_GUARD_MS
    assert a2.core.counter == counter              # exact: RTC memory, not the reservation
    assert not [f for f in uplinks(hw2, receiver) if f.name == "HELLO"]
    run(a2, clock2, heartbeat_ms - 100_000 + 1)
    beats = [f for f in uplinks(hw2, receiver) if f.name == "HEARTBEAT"]
    assert len(beats) == 1 and beats[0].counter == counter


def test_unprovisioned_device_still_runs_with_a_logged_warning(tmp_path, capsys):
    hw, clock = fake_board()
    a = app_mod.App(hw, root=str(tmp_path))
    a.start()
    run(a, clock, 1000)
    assert "unprovisioned" in capsys.readouterr().out
    assert hw.link_uart.tx                         # still talks (centre will refuse the key)


def test_app_delivers_a_frame_once_acks_its_repeat_and_drops_a_forgery(tmp_path, capsys):
    a, hw, clock = boot(tmp_path)
    _, down = centre()
    wire = down.seal("OPERATOR_ACK", {"alarm_id": 1, "operator_id": 2})
    forged = codec.Sender(DEVICE, 1, bytes(16), downlink=True).seal(
        "OPERATOR_ACK", {"alarm_id": 1, "operator_id": 2})  # bad_tag
    seen = []
    dispatch = a.dispatch

    def record(event, now):
        seen.append(event)
        dispatch(event, now)
    a.dispatch = record
    capsys.readouterr()
    # More than one UART read (256 bytes) of it: the link hands over every read.
    hw.link_uart.rx += wire + wire + bytes(forged) + wire * 3
    a.step()
    rx = [e for e in seen if e[0] == "rx"]
    repeats = [e for e in seen if e[0] == "rx_duplicate"]
    assert [e[1] for e in rx] == ["OPERATOR_ACK"]
    assert [e[1] for e in repeats] == [rx[0][3]] * 4          # acked again, delivered once
    dropped = [line for line in capsys.readouterr().out.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and dropped[0].startswith("vigil: link: dropped frame: bad_tag")
