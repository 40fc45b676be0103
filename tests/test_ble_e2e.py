"""The whole firmware (app, core, flash queue) linked over BLE to the centre through the
wearer's phone (host/emulator/phone.py), in virtual time: nothing lost, reachability kept."""
import pytest

pytest.importorskip("bumble")
pytest.importorskip("bleak")

from host import emulate, scenario  # noqa: E402
from protocol import codec  # noqa: E402

DEVICE = 1001
SCENARIO = """
[scenario]
name = "ble-e2e"
duration_s = %(duration_s)d
seed = 2

[link]
kind = "ble"

[[device]]
id = 1001
location = [52.0907, 5.1214]
%(button)s
"""


def run_scenario(tmp_path, duration_s, button="", setup=None):
    path = tmp_path / "ble.toml"
    path.write_text(SCENARIO % {"duration_s": duration_s, "button": button})
    sc = scenario.load(str(path))
    sim = emulate.ScenarioRun(sc)
    try:
        if setup:
            setup(sim)
        sim.run()
        return sim, sim.summary(0.0)
    except BaseException:
        sim.close()
        raise


def uplink_frames(sim):
    keyring = codec.Keyring()
    keyring.add(DEVICE, emulate.KEY_ID, emulate.device_key(sim.seed, DEVICE))
    rx = codec.Receiver(keyring, check_replay=False)
    frames = []
    highest = -1
    for _t, data in sim.peers[DEVICE].uplinks:
        for f in rx.feed(data):
            if isinstance(f, codec.Frame):
                # Historic as the centre sees it (SPEC 3.3): a newer frame arrived first.
                f.historic = f.counter < highest
                highest = max(highest, f.counter)
                frames.append(f)
    return frames


def test_panic_while_the_phone_is_away_reaches_the_centre_and_nothing_is_lost(tmp_path):
    # The phone is out of range from 10 to 25 min; the panic is pressed at 12 min.
    sim, summary = run_scenario(
        tmp_path, 40 * 60, button="[[device.button]]\nat_s = 720\nhold_ms = 3000\n",
        setup=lambda s: s.peers[DEVICE].away(10 * 60_000, 15 * 60_000))
    try:
        phone = sim.peers[DEVICE]
        assert summary["alarms_raised"] == 1
        assert summary["alarms_lost"] == 0
        assert summary["alarms_acked"] == 1
        frames = uplink_frames(sim)
        # Nothing reached the phone while it was away; the alarm arrived after it came back.
        assert not [t for t, _ in phone.uplinks if 10 * 60_000 + 5_000 < t < 25 * 60_000]
        alarms = [f for f in frames if f.name == "ALARM"]
        assert alarms and not alarms[0].historic or alarms[0].historic  # sent, then resent
        positions = [f for f in frames if f.name == "POSITION"]
        assert any(f.historic for f in positions)     # the panic's fixes, flushed from flash
        # Every fix the device took while the phone was away reached the phone afterwards:
        # one position per send time, none missing from the panic on.
        utc0 = sim.utc_ms() - int(sim.world.now_ms)
        sent_s = sorted({(f.fields["send_time_ms"] - utc0) // 1000 for f in positions})
        away = [t for t in sent_s if 12 * 60 + 20 < t < 25 * 60]
        assert len(away) >= (25 * 60 - 12 * 60 - 20) // 10 - 1   # a 10 s cadence in a panic
        # Every stored record was acked by the centre: the flash queue is empty at the end,
        # so no alarm or position was lost (heartbeats and ACKs are not evidence: the RAM
        # queue of the BLE link may drop the oldest of those, and newer ones replace them).
        last_hb = [f for f in frames if f.name == "HEARTBEAT"][-1]
        assert last_hb.fields["queue_depth"] == 0
        assert phone.held == 0
    finally:
        sim.close()


def test_a_vibrate_command_reaches_the_wearer_within_30_s(tmp_path):
    sent_ms = [90_000 + k * 97_300 for k in range(10)]        # not in step with the windows

    def setup(sim):
        def vibrate():
            sim.centre.send(DEVICE, "COMMAND", {"command": 2, "arg": 1}, sim.utc_ms())
            sim._send(sim.centre.tick(sim.utc_ms()))
        for t in sent_ms:
            sim.world.at(t, vibrate)
    sim, summary = run_scenario(tmp_path, 20 * 60, setup=setup)
    try:
        on = [t for t, level in sim.devices[DEVICE].haptic.edges if level]
        delays = [min(t for t in on if t >= s) - s for s in sent_ms]
        assert len(delays) == 10
        assert max(delays) < 30_000
        assert max(delays) > 1_000        # it did wait for a window: not a pushed byte
        assert summary["downlink_wait_ms"]["max"] < 30_000
    finally:
        sim.close()
