"""Issue 3's survival claims, end to end: the real firmware on the emulated board against the
emulated centre, in virtual time (host.emulate.ScenarioRun).

- [device.config] provisions CONFIG on the device's flash, and the firmware follows it;
- deep sleep where the reachability bound allows it: real resets (DEEPSLEEP), exact counters
  across wakes (RTC memory), less energy than light sleep, a panic press wakes it (ext0);
- a raised alarm survives a power cut before its ack, reaches the centre once, and stays
  active until COMMAND clear_alarm;
- a link outage while moving: the backlog arrives later flagged historic with its original
  fix times, nothing lost, counters never reused.
"""
import pytest

from firmware import persist
from host import emulate, scenario
from host.deploy import device_files
from protocol import codec
from protocol import host_constants as constants

from .firmware_e2e import (
    boots,
    centre_alarms,
    counter_reuse,
    log_lines,
    resets,
    run_toml,
    sent_frames,
    start_toml,
    trace,
)

DEEPSLEEP = constants.RESET_DEEPSLEEP
# Press to transport ACK on a clean link, from the instant the wearer presses a deep-sleeping
# device: the 1.5 s long press (of which the 0.6 s boot is part), then one round trip.
PRESS_TO_ACK_MAX_MS = 2_500


# --- [device.config] -----------------------------------------------------------------------
BASE = """
[scenario]
name = "t"
duration_s = 60

[[device]]
id = 7
location = [52.0, 5.0]
"""


def test_config_table_validates_names_and_ranges():
    loaded = scenario.parse(BASE + "[device.config]\nreachability_s = 600\nheartbeat_s = 1800\n")
    config = loaded["device"][0]["config"]
    assert config["reachability_s"] == 600 and config["heartbeat_s"] == 1800
    assert config["long_press_ms"] is None                 # left out: the firmware's default
    assert emulate.provisioned_config(config) == {10: 600, 1: 1800}
    assert scenario.parse(BASE)["device"][0]["config"]["reachability_s"] is None


@pytest.mark.parametrize("line, words", [
    ("reachability_s = 4000", ("device[0].config.reachability_s", "<= 3600")),
    ("reachability_s = 4", ("device[0].config.reachability_s", ">= 5")),
    ("heartbeat_s = 90.5", ("device[0].config.heartbeat_s", "whole number")),
    ("heartbeat_s = 'often'", ("device[0].config.heartbeat_s", "number")),
    ("deep_sleep_min_s = 60", ("unknown field device[0].config.deep_sleep_min_s",)),
])
def test_bad_config_is_one_line_naming_the_field(line, words):
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.parse(BASE + "[device.config]\n" + line + "\n", "s.toml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("s.toml: ")
    for word in words:
        assert word in message


def test_config_file_is_what_the_firmware_reads(tmp_path):
    """The provisioned bytes are persist's own file format: load_config reads them back."""
    (tmp_path / "config.bin").write_bytes(emulate.config_file_bytes(3, {10: 600, 1: 1800}))
    assert persist.load_config(str(tmp_path)) == (3, {10: 600, 1: 1800})
    persist.save_config(str(tmp_path), 3, {10: 600, 1: 1800})
    assert (tmp_path / "config.bin").read_bytes() == emulate.config_file_bytes(
        3, {10: 600, 1: 1800})


def test_provisioned_config_reaches_the_firmware():
    sim = run_toml(BASE.replace("duration_s = 60", "duration_s = 300") +
                   "[device.config]\nreachability_s = 600\n")
    try:
        dev = sim.devices[7]
        assert dev.flash.read_file(emulate.CONFIG_PATH) is not None
        hellos = [f for _t, f in sent_frames(sim, 7) if f.name == "HELLO"]
        assert hellos and hellos[0].fields["config_version"] == \
            emulate.PROVISIONED_CONFIG_VERSION
        # Nothing due for minutes: it deep-sleeps (the wake line keeps it reachable).
        assert any("deep sleep" in line for _t, line in dev.log)
    finally:
        sim.close()


# --- deep sleep ----------------------------------------------------------------------------
DEEP = scenario.load("deep-sleep")
PRESS_MS = DEEP["device"][0]["button"][0]["at_s"] * 1000
DEEP_ID = DEEP["device"][0]["id"]


@pytest.fixture(scope="module")
def deep_run():
    with open(scenario.resolve("deep-sleep"), encoding="utf-8") as f:
        sim = run_toml(f.read())
    yield sim
    sim.close()


def test_deep_sleep_is_a_real_reset_and_boots_count_up(deep_run):
    sim = deep_run
    before_press = [t for t, detail in resets(sim, DEEP_ID)
                    if detail.startswith("DEEPSLEEP_RESET") and t < PRESS_MS]
    # deep sleep between heartbeats (900 s), each one a deep-sleep wake; no listen windows:
    # the wake line reaches the device (docs/LINK.md)
    assert len(before_press) >= PRESS_MS // 900_000 - 1
    causes = [detail for _t, detail in boots(sim, DEEP_ID)]
    assert causes[0] == "PWRON_RESET" and set(causes[1:]) == {"DEEPSLEEP_RESET"}
    counted = [int(line.split()[2]) for _t, line in log_lines(sim, DEEP_ID, "vigil: boot ")]
    assert counted == list(range(1, len(causes) + 1))
    assert [line.split()[4] for _t, line in log_lines(sim, DEEP_ID, "vigil: boot ")][1:] == \
        [str(DEEPSLEEP)] * (len(causes) - 1)
    # A deep-sleep wake resumes (firmware/core.py): the only HELLO is the power-on one.
    hellos = [f.fields for _t, f in sent_frames(sim, DEEP_ID) if f.name == "HELLO"]
    assert [(h["boot_count"], h["reset_cause"]) for h in hellos] == [(1, constants.RESET_POWER_ON)]
    assert sim.devices[DEEP_ID].crashes == []


def test_deep_sleep_keeps_the_counter_exact(deep_run):
    """RTC memory carries the exact counter over each wake: no counter is used twice, and
    none is skipped (a reboot without RTC memory would jump to the flash reservation)."""
    frames = sent_frames(deep_run, DEEP_ID)
    assert counter_reuse(frames) == []
    used = sorted({f.counter for _t, f in frames})
    assert used == list(range(1, used[-1] + 1))
    assert deep_run.centre.refused == {}


def test_the_wake_line_lets_it_deep_sleep_for_less_than_listen_windows_cost():
    """The same day on a board without the wake line (config wake_line 0: the firmware listens
    every 25 s in light sleep) costs more than twice what deep sleep with the wake line does."""
    quiet = scenario.load("deep-sleep")
    quiet["device"][0]["button"] = []
    quiet["device"][0]["config"] = {name: None for name in quiet["device"][0]["config"]}
    files = device_files(emulate.REPO)
    source = files["/lib/firmware/config.py"].decode()
    assert "wake_line=1," in source
    no_wake_line = dict(files)
    no_wake_line["/lib/firmware/config.py"] = source.replace(
        "wake_line=1,", "wake_line=0,").encode()
    deep_summary, _ = emulate.run(quiet)
    light_summary, _ = emulate.run(quiet, firmware_files=no_wake_line)
    assert deep_summary["crashes"] == light_summary["crashes"] == 0
    # What the firmware controls: the average less the board's constant draws (the DevKitC's
    # LDO, USB bridge and power LED draw the same 6.5 mA whatever the firmware does).
    deep_ma, light_ma = (s["avg_current_ma"] - s["board_mah"] * 3600 / s["virtual_s"]
                         for s in (deep_summary, light_summary))
    assert deep_ma < 0.5 * light_ma, (deep_ma, light_ma)


def test_panic_press_wakes_deep_sleep_and_reaches_the_centre(deep_run):
    sim = deep_run
    wakes = [(t, reason) for t, reason in trace(sim, DEEP_ID, "wake") if t >= PRESS_MS]
    assert wakes[0] == (PRESS_MS, 2)                  # EXT0_WAKE at the press itself
    raised = log_lines(sim, DEEP_ID, "alarm 1 kind 1 state 1")
    assert raised, "the press that woke the device raised no panic"
    alarms = centre_alarms(sim, DEEP_ID)
    assert [(a.alarm_id, a.kind) for a in alarms] == [(1, constants.ALARM_KIND_PANIC)]
    alarm_counter = [f.counter for _t, f in sent_frames(sim, DEEP_ID) if f.name == "ALARM"][0]
    acked = [t for t, counters in sim._acks_delivered()[DEEP_ID] if alarm_counter in counters]
    press_to_ack_ms = acked[0] - PRESS_MS             # boot (600 ms) and the hold included
    assert 0 < press_to_ack_ms <= PRESS_TO_ACK_MAX_MS, press_to_ack_ms
    assert alarms[0].ack_delivered_ms is not None     # the operator's ack reached the wearer


def test_deep_sleep_keeps_the_heartbeat_cadence(deep_run):
    heartbeats = [t for t, f in sent_frames(deep_run, DEEP_ID)
                  if f.name == "HEARTBEAT" and t < PRESS_MS]
    assert len(heartbeats) >= PRESS_MS // 900_000 - 1
    # 900 s apart, late by at most a boot (0.6 s) each: the timers resume less the sleep
    for gap in [b - a for a, b in zip(heartbeats, heartbeats[1:], strict=False)]:
        assert 900_000 <= gap <= 901_000, gap


def test_deep_sleep_wakes_keep_utc_and_the_fix_cadence(deep_run):
    """A wake neither takes a fix nor needs TIME_SYNC: positions keep the 900 s stationary
    cadence, and their send times are the centre's UTC (carried over the sleeps by the RTC)."""
    sim = deep_run
    wakes = [t for t, detail in resets(sim, DEEP_ID)
             if detail.startswith("DEEPSLEEP_RESET") and t < PRESS_MS]
    positions = [(t, f) for t, f in sent_frames(sim, DEEP_ID)
                 if f.name == "POSITION" and t < PRESS_MS]
    # one fix per heartbeat wake (the stationary fix rides it), never more
    assert len(positions) <= PRESS_MS // 900_000 + 1 and len(positions) <= len(wakes) + 1
    for t, f in positions:
        # within 2 s: the device takes a fix's time as "now" when the NMEA arrives, ~1 s late
        assert abs(f.fields["send_time_ms"] - (sim.utc0_ms + t)) < 2_000, (t, f.fields)
    assert sum(1 for t, f in sent_frames(sim, DEEP_ID) if f.name == "HELLO") == 1
    # The press that woke the device is dated at once, before any fix or downlink.
    alarm_t, alarm = [(t, f) for t, f in sent_frames(sim, DEEP_ID) if f.name == "ALARM"][0]
    assert abs(alarm.fields["raised_time_ms"] - (sim.utc0_ms + alarm_t)) < 100


# --- an alarm survives a power cut --------------------------------------------------------
SURVIVE = """
[scenario]
name = "alarm-survives"
duration_s = 2000

[link]
outages = [{ start_s = 50, duration_s = 150 }]

[[device]]
id = 21
location = [52.0907, 5.1214]
button = [{ at_s = 60, hold_ms = 2000 }]
"""
CUT_MS, POWER_ON_MS, CLEAR_MS = 70_000, 80_000, 1_500_000


def _clear_alarm_at(sim, device_id, t_ms, alarm_id):
    def clear():
        sim.centre.send(device_id, "COMMAND", {"command": constants.COMMAND_CLEAR_ALARM,
                                               "arg": alarm_id}, sim.utc_ms())
        sim._send(sim.centre.tick(sim.utc_ms()))
    sim.world.at(t_ms, clear)


@pytest.fixture(scope="module")
def survive_run():
    sim = start_toml(SURVIVE)
    dev = sim.devices[21]
    sim.world.at(CUT_MS, dev.power_cut)
    sim.world.at(POWER_ON_MS, dev.power_on)
    _clear_alarm_at(sim, 21, CLEAR_MS, 1)
    try:
        sim.run()
    except BaseException:
        sim.close()
        raise
    yield sim
    sim.close()


def _not_sleeps(resets_list):
    return [(t, d) for t, d in resets_list if not d.startswith("DEEPSLEEP_RESET")]


def test_alarm_raised_before_a_power_cut_is_resent_after_boot_unchanged(survive_run):
    sim = survive_run
    alarms = [(t, f) for t, f in sent_frames(sim, 21) if f.name == "ALARM"]
    raised = [(t, f) for t, f in alarms if f.fields["state"] == constants.ALARM_STATE_RAISED]
    before = [f for t, f in raised if t < CUT_MS]
    after = [f for t, f in raised if t >= POWER_ON_MS]
    assert before and after, "the alarm was not resent after the power cut"
    first = before[0]
    assert first.fields["alarm_id"] == 1
    # the same frame again: original counter, alarm id and raise time (no new alarm)
    assert {(f.counter, f.fields["alarm_id"], f.fields["raised_time_ms"]) for f in after} == {
        (first.counter, 1, first.fields["raised_time_ms"])}
    assert _not_sleeps(resets(sim, 21))[0][1].startswith("PWRON_RESET power cut")
    assert counter_reuse(sent_frames(sim, 21)) == []
    assert sim.devices[21].crashes == []


def test_alarm_reaches_the_centre_once_as_raised(survive_run):
    sim = survive_run
    alarms = centre_alarms(sim, 21)
    assert len(alarms) == 1 and alarms[0].alarm_id == 1
    alarm = alarms[0]
    assert 200_000 <= alarm.arrived_ms - sim.utc0_ms < CLEAR_MS   # after the outage
    assert alarm.ack_delivered_ms is not None                      # the operator acked it


def test_alarm_stays_active_until_clear_alarm(survive_run):
    sim = survive_run
    alarms = centre_alarms(sim, 21)
    assert [a.alarm_id for a in alarms] == [1]
    assert alarms[0].cleared_ms is not None and alarms[0].cleared_ms - sim.utc0_ms >= CLEAR_MS
    # every heartbeat reports the alarm active until the clear, and none after it; the first
    # after it comes at once: the device means to be silent for longer now (interval_s)
    statuses = [(t, f.fields["status"] & 1, f.fields["interval_s"]) for t, f in
                sent_frames(sim, 21) if f.name == "HEARTBEAT" and t >= POWER_ON_MS]
    assert [(a, i) for t, a, i in statuses if t < CLEAR_MS] == [(1, 30)]
    after = [(t - CLEAR_MS, a, i) for t, a, i in statuses if t >= CLEAR_MS]
    assert after and after[0][0] < 60_000 and {(a, i) for _t, a, i in after} == {(0, 900)}
    assert log_lines(sim, 21, "alarm 1 kind 1 state 3")
    assert _not_sleeps(resets(sim, 21)) == [(CUT_MS, "PWRON_RESET power cut")]


# --- a link outage while moving -------------------------------------------------------------
OUTAGE = """
[scenario]
name = "moving-outage"
duration_s = 3700

[link]
outages = [{ start_s = 900, duration_s = 1200 }]

[[device]]
id = 51
location = [52.0907, 5.1214]
route = { start_s = 60, speed_kmh = 5.0, waypoints = [[52.0907, 5.1214], [52.1100, 5.1400]] }
"""
OUTAGE_START_MS, OUTAGE_END_MS = 900_000, 2_100_000


def _delivered(sim, device_id):
    """[(t_ms, Frame)] as the link delivered them to the centre."""
    keyring = codec.Keyring()
    keyring.add(device_id, emulate.KEY_ID, emulate.device_key(sim.seed, device_id))
    receiver = codec.Receiver(keyring, check_replay=False)
    return [(t, item) for t, detail in trace(sim, device_id, "uplink")
            for item in receiver.feed(bytes.fromhex(detail)) if isinstance(item, codec.Frame)]


def test_positions_queued_in_an_outage_arrive_later_as_historic_with_their_fix_times():
    sim = run_toml(OUTAGE)
    try:
        sent = sent_frames(sim, 51)
        during = {f.counter: f for t, f in sent if f.name == "POSITION" and not f.historic
                  and OUTAGE_START_MS <= t < OUTAGE_END_MS}
        assert len(during) >= 3, "moving: an upload every 5 min during the 20 min outage"
        delivered = _delivered(sim, 51)
        late = {}
        for t, f in delivered:
            if f.counter in during:
                assert t >= OUTAGE_END_MS
                late.setdefault(f.counter, f)
        assert sorted(late) == sorted(during), "queued positions lost"
        # Resent byte for byte (SPEC 3.3); the centre marks them historic: each arrived
        # after newer frames of its device.
        historic = {r["counter"]: r["historic"] for r in sim.centre.evidence.rows("frames")
                    if r["device_id"] == 51 and r["outcome"] == "delivered"}
        for counter, frame in late.items():
            assert frame.raw == during[counter].raw, counter
            assert historic[counter] == 1, counter
            original = during[counter].fields["fixes"]
            assert frame.fields["fixes"] == original        # original fix times, unchanged
            assert all(OUTAGE_START_MS - 300_000 <= fix["fix_time_ms"] - sim.utc0_ms
                       < OUTAGE_END_MS for fix in original)
        assert counter_reuse(sent) == []
        assert sim.centre.refused == {}
        # the backlog waits for the next frame that gets an ack, then drains: a heartbeat
        # saw it queued, and the last one reports an empty queue
        depths = [f.fields["queue_depth"] for t, f in sent if f.name == "HEARTBEAT"]
        assert max(depths) >= 1 and depths[-1] == 0, depths
    finally:
        sim.close()
