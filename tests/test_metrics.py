"""host/metrics.py: the ground-truth figures, each against a hand-made case that can fail."""
from host import metrics
from protocol import host_constants as constants

CLEAR, UNCERTAIN = constants.PROXIMITY_CLEAR, constants.PROXIMITY_UNCERTAIN
WARNING, ALARM = constants.PROXIMITY_WARNING, constants.PROXIMITY_ALARM


def test_long_presses_use_the_provisioned_threshold_or_the_firmware_default():
    spec = {"config": {}, "button": [{"at_s": 1, "hold_ms": 1499}, {"at_s": 2, "hold_ms": 1500}]}
    assert metrics.long_presses(spec) == [(2000, 1500)]
    spec["config"] = {"long_press_ms": 1000}
    assert metrics.long_presses(spec) == [(1000, 1499), (2000, 1500)]


def test_haptic_pulse_trains_are_named_by_the_firmware_patterns():
    # operator_ack (100,100,100,100,600), then 2 s later proximity_warning (500,300,500)
    pulses = [(0, 100), (200, 100), (400, 600), (3000, 510), (3810, 500), (9000, 300)]
    assert metrics.haptic_counts(pulses) == {"operator_ack": 1, "proximity_warning": 1,
                                             "panic_confirm": 1}
    assert metrics.haptic_counts([(0, 2000)]) == {"unknown": 1}
    assert metrics.haptic_starts(pulses, ("proximity_warning",)) == [3000]


def test_a_press_is_lost_unless_its_alarm_record_reached_the_centre():
    presses = [(10_000, 2000), (50_000, 2000), (90_000, 2000)]
    logs = [(11_500, 1, 1, constants.ALARM_STATE_RAISED, 5),   # press 1: delivered
            (51_500, 1, 1, 4, 9),                              # press 2: a repeat, not delivered
            (60_000, 1, 1, constants.ALARM_STATE_CLEARED, 10)]  # a clear is nobody's press
    lost = metrics.lost_presses(presses, logs, {5, 10})
    assert lost == [(50_000, 2000), (90_000, 2000)]
    assert metrics.lost_presses(presses[:2], logs, {5, 9}) == []


def test_battery_alarms_do_not_stand_in_for_a_press():
    logs = [(11_000, 2, 2, constants.ALARM_STATE_RAISED, 5)]
    assert metrics.lost_presses([(10_000, 2000)], logs, {5}) == [(10_000, 2000)]


def test_a_crossing_is_missed_without_a_level_at_the_wearer_within_60_s():
    crossings = [100_000, 500_000, 900_000]
    levels = [(130_000, UNCERTAIN), (200_000, CLEAR), (561_000, WARNING), (890_000, WARNING)]
    # 1: uncertain after 30 s; 2: warning after 61 s (missed); 3: a warning already standing
    assert metrics.missed_crossings(crossings, levels) == 1


def test_a_warning_with_no_true_approach_within_1100_m_is_false():
    def distance_at(t_ms):
        return 900.0 if 100_000 <= t_ms <= 200_000 else 1500.0
    levels = [(150_000, WARNING), (160_000, ALARM), (300_000, CLEAR), (600_000, WARNING)]
    assert metrics.false_warnings(levels, distance_at, 1000, 3_600_000, 1000) == 1
    assert metrics.false_warnings([(50_000, WARNING)], distance_at, 1000, 3_600_000, 1000) == 0


def test_silence_latency_is_from_the_true_start_to_the_next_not_reporting():
    assert metrics.silence_latencies([1000, 50_000], [40_000, 120_000]) == [39_000, 70_000]
    assert metrics.silence_latencies([1000, 5000], [40_000]) == [35_000]


def test_crossing_latency_counts_a_predicted_warning_as_zero_and_a_late_one_in_full():
    found, never = metrics.crossing_latencies([200_000, 900_000, 2_000_000],
                                              [150_000, 925_000])
    assert found == [(200_000, 0.0), (900_000, 25_000)] and never == 1
    # a haptic from an episode long before does not cover a new crossing
    found, never = metrics.crossing_latencies([600_000], [100_000, 640_000])
    assert found == [(600_000, 40_000)] and never == 0
    assert "proximity_warning" in metrics.proximity_patterns()
    assert "operator_ack" not in metrics.proximity_patterns()


def test_the_scenario_mode_schedule_gives_each_alarm_its_endpoint():
    spec = {"offender": None, "mode_change": [
        {"at_s": 100, "mode": "paired", "offender": 9, "valid_for_s": 50, "by": "court"}]}
    assert [metrics.mode_at(spec, t) for t in (0, 99_999, 100_000, 149_999, 150_000)] == [
        "aware", "aware", "paired", "paired", "aware"]
    alarms = [(50_000, "police_dispatch"), (120_000, "police_dispatch"),
              (160_000, "police_dispatch")]
    assert metrics.misrouted(spec, alarms) == [(120_000, "police_dispatch")]
