"""What the device reports unasked: heartbeats, positions moving and still, NO_FIX, low
battery alarms."""
import pytest

from hil.tests.rules import HEARTBEAT_S

HOME = (52.0907, 5.1214)
AWAY = (52.1300, 5.1700)        # ~5 km away: the walk lasts the whole test


def test_heartbeat_cadence(dut, clock):
    first = dut.expect("HEARTBEAT", timeout=(HEARTBEAT_S + 10) * 1000)
    t1 = clock.now_ms()
    second = dut.expect("HEARTBEAT", timeout=(HEARTBEAT_S + 10) * 1000)
    gap_ms = clock.now_ms() - t1
    assert HEARTBEAT_S * 1000 - 2_000 <= gap_ms <= HEARTBEAT_S * 1000 + 2_000, gap_ms
    assert second.fields["uptime_s"] - first.fields["uptime_s"] in range(HEARTBEAT_S - 2,
                                                                          HEARTBEAT_S + 3)
    assert second.counter > first.counter


def _fixes(dut, since):
    return [fix for _t, f in dut.of_type("POSITION", since) for fix in f.fields["fixes"]]


@pytest.mark.needs_gps
def test_gps_cadence_moving_vs_stationary(dut):
    dut.set_route([HOME])
    since = dut.mark()
    dut.wait(30 * 60_000)
    still = _fixes(dut, since)
    dut.set_route([HOME, AWAY], speed_kmh=5.0)
    since = dut.mark()
    dut.wait(30 * 60_000)
    moving = _fixes(dut, since)
    assert len(still) <= 3, "stationary: about one fix per heartbeat (900 s)"
    # moving: a fix a minute (moving_fix_s), uploaded every 5 min (moving_upload_s)
    assert len(moving) >= 20, len(moving)
    times = sorted(fix["fix_time_ms"] for fix in moving)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 120_000, gaps
    lats = [fix["lat_e7"] for fix in moving]
    assert lats == sorted(lats), "the fixes do not follow the walk north"


@pytest.mark.needs_gps
def test_no_fix_is_reported(dut):
    dut.set_route([HOME], sky=False)
    no_fix = dut.expect("NO_FIX", timeout=(HEARTBEAT_S + 300) * 1000)
    assert no_fix.fields["age_s"] == 0xFFFFFFFF or no_fix.fields["age_s"] > 0
    dut.expect_none("POSITION", 5_000)


@pytest.mark.needs_battery
def test_low_battery_alarms(dut):
    from protocol import host_constants as constants

    # The battery is sampled at least at every wake, and an idle device wakes at least for
    # its heartbeat: a low battery is reported within one heartbeat interval.
    within_ms = (HEARTBEAT_S + 60) * 1000
    dut.set_battery(18)
    first = dut.expect("ALARM", timeout=within_ms, where={"kind": constants.ALARM_KIND_BATTERY_20})
    dut.set_battery(8)
    second = dut.expect("ALARM", timeout=within_ms, where={"kind": constants.ALARM_KIND_BATTERY_10})
    assert second.fields["alarm_id"] != first.fields["alarm_id"]
    dut.expect_none("ALARM", within_ms, where={"kind": constants.ALARM_KIND_BATTERY_20})
