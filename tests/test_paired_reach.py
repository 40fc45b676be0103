"""docs/LINK.md, "Deep sleep near an offender", the fallback without a wake line: a paired
device listens at least every 30 s whatever reachability_s says, so the centre's pre-alert
reaches it within 30 s; an aware device keeps its configured 10 min bound. The real firmware
on the emulated board with wake_line = 0 (as on BLE)."""
import random

from host import emulate, scenario
from host.deploy import device_files
from protocol import host_constants as constants
from tests.vm import REPO

TOML = """
[scenario]
name = "paired-reach"
duration_s = 3600

[[device]]
id = 41
location = [52.0907, 5.1214]

[device.config]
reachability_s = 600
"""
UNWIRED_PIN = 14                 # not wired to anything on this board (firmware/pins.py)
MODE_SENT_MS = 60_000
PAIRED_FROM_MS = MODE_SENT_MS + 600_000          # the MODE itself waits for a listen window


def _no_wake_line_files():
    files = dict(device_files(REPO))
    source = files["/lib/firmware/config.py"].decode()
    assert "wake_line=1," in source
    files["/lib/firmware/config.py"] = source.replace("wake_line=1,", "wake_line=0,").encode()
    return files


def _waits(paired):
    sim = emulate.ScenarioRun(scenario.parse(TOML, "<test>"), 1,
                              firmware_files=_no_wake_line_files())
    # No wake line on this board: the peer's "wake" goes to a pad nothing listens on, so it
    # may send only while the device's own listen window holds LINK_READY high.
    sim.devices[41].link.wake_pin = UNWIRED_PIN
    sent = []

    def send(name, fields):
        def go():
            sent.append(sim.world.now_ms)
            sim.centre.send(41, name, fields, sim.utc_ms())
            sim._send(sim.centre.tick(sim.utc_ms()))
        return go

    if paired:
        sim.world.at(MODE_SENT_MS, send("MODE", {
            "mode": constants.MODE_PAIRED, "offender_id": 9004, "valid_from_ms": 0,
            "valid_until_ms": sim.utc0_ms + 86_400_000}))
    rng = random.Random(3)
    times = sorted(rng.uniform(PAIRED_FROM_MS, 2_900_000) for _ in range(12))
    for t_ms in times:
        sim.world.at(t_ms, send("COMMAND", {"command": constants.COMMAND_VIBRATE, "arg": 0}))
    try:
        sim.run()
        dev = sim.devices[41]
        starts = [t for t, _ in dev.haptic.pulses()]
        scheme = [line for _t, line in dev.log if "mode paired" in line]
        waits = []
        for t_sent in sent[1 if paired else 0:]:
            after = [t for t in starts if t >= t_sent]
            waits.append(after[0] - t_sent if after else None)
        return waits, scheme
    finally:
        sim.close()


def test_a_paired_device_without_a_wake_line_is_reached_within_30_s():
    waits, scheme = _waits(paired=True)
    assert scheme, "the MODE never reached the device"
    assert None not in waits and max(waits) <= 30_000, waits


def test_an_aware_device_keeps_its_configured_bound():
    waits, _scheme = _waits(paired=False)
    assert None not in waits and max(waits) > 30_000 and max(waits) <= 600_000, waits
