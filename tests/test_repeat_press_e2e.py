"""Issue 9, end to end: a second long press while the panic alarm is active is not swallowed.
The real firmware on the emulated board sends it as its own ALARM record (state repeat, the
same alarm id), the centre delivers and acks it, and the wearer feels it was taken."""
from protocol import host_constants as constants

from .firmware_e2e import run_toml, sent_frames

TOML = """
[scenario]
name = "two-presses"
duration_s = 400
seed = 2

[[device]]
id = 61
location = [52.0907, 5.1214]
button = [{ at_s = 60, hold_ms = 2000 }, { at_s = 180, hold_ms = 1600 }, { at_s = 300, hold_ms = 700 }]
"""


def test_a_second_press_is_its_own_acked_record_and_a_short_one_is_nothing():
    sim = run_toml(TOML)
    try:
        alarms = {}
        for _t, f in sent_frames(sim, 61):
            if f.name == "ALARM" and f.fields["kind"] == constants.ALARM_KIND_PANIC:
                alarms[f.counter] = (f.fields["state"], f.fields["alarm_id"])
        records = [alarms[c] for c in sorted(alarms)]
        assert records == [(constants.ALARM_STATE_RAISED, 1), (constants.ALARM_STATE_REPEAT, 1)]
        acked = set()
        for _t, counters in sim._acks_delivered()[61]:
            acked |= set(counters)
        assert set(alarms) <= acked, "every press record reaches the centre and is acked"
        rows = [r["change"] for r in sim.centre.evidence.rows("alarms")]
        assert "raised" in rows and "repeat" in rows
        # the wearer feels the second press taken at once: a pulse as the hold reaches 1.5 s
        second_ms = 180_000 + 1_500
        assert [t for t, _ms in sim.devices[61].haptic.pulses() if 0 <= t - second_ms < 100]
        log = [line for _t, line in sim.devices[61].log]
        assert any("alarm 1 kind 1 state 4" in line for line in log)
    finally:
        sim.close()
