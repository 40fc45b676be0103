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
from protocol import messages

from .firmware_e2e import run_toml, sent_frames

DEEPSLEEP = messages.RESET_DEEPSLEEP


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
    """The provisioned bytes are persist's own file format: FlashState reads them back."""
    (tmp_path / "config.bin").write_bytes(emulate.config_file_bytes(3, {10: 600, 1: 1800}))
    assert persist.FlashState(str(tmp_path)).load_config() == (3, {10: 600, 1: 1800})
    persist.FlashState(str(tmp_path)).save_config(3, {10: 600, 1: 1800})
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
        # 600 s reachability: the first listen window is 595 s away, so it deep-sleeps.
        assert any("deep sleep" in line for _t, line in dev.log)
    finally:
        sim.close()
