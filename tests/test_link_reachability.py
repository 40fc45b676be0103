"""docs/LINK.md end to end: a downlink from the centre reaches the wearer within 30 s in every
power state (awake, light sleep, deep sleep), through the wake line and the ready line, on
the bench adapter and on the product's modem in eDRX; the peer never sends into a deaf UART."""
import random

import pytest

from protocol import host_constants as constants
from tests.firmware_e2e import start_toml

SCENARIO = """
[scenario]
name = "reach"
duration_s = 14400
profile = "{profile}"

[[device]]
id = 41
location = [52.0907, 5.1214]
"""
BOUND_MS = 30_000


def _vibrate_at(sim, t_ms, sent):
    def send():
        sent.append((sim.world.now_ms, sim.devices[41].state))
        sim.centre.send(41, "COMMAND", {"command": constants.COMMAND_VIBRATE, "arg": 0},
                        sim.utc_ms())
        sim._send(sim.centre.tick(sim.utc_ms()))
    sim.world.at(t_ms, send)


@pytest.mark.parametrize("profile", ["esp32-devkitc", "product"])
def test_a_downlink_reaches_the_wearer_within_30_s_in_every_power_state(profile):
    sim = start_toml(SCENARIO.format(profile=profile))
    rng = random.Random(7)
    sent = []
    times = sorted(rng.uniform(60_000, 14_000_000) for _ in range(40))
    for t_ms in times:
        _vibrate_at(sim, t_ms, sent)
    try:
        sim.run()
        dev = sim.devices[41]
        starts = [t for t, _ in dev.haptic.pulses()]
        waits = []
        for t_sent, _state in sent:
            after = [t for t in starts if t >= t_sent]
            assert after, "a vibrate sent at %.0f ms never reached the wearer" % t_sent
            waits.append(after[0] - t_sent)
        states = {state for _t, state in sent}
        assert "deep" in states and ({"light", "idle", "wait", "run"} & states), states
        assert max(waits) <= BOUND_MS, sorted(waits)[-5:]
        assert dev.link.stats["down_unheard_bytes"] == 0
        assert dev.link.stats["wakes"] > 0
        if profile == "product":
            # The modem's paging cycle shows: a sleeping device waits for its paging occasion.
            assert max(waits) > 1000
    finally:
        sim.close()
