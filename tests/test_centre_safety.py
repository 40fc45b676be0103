"""Issue 9 at the centre: the operator's clear, silence by the device's state."""
from host.centre import centre as C
from protocol import host_constants as constants
from tests.test_centre import T0, Dev, alarm, centre, heartbeat, hello, kinds


def _alarm_raised(c, d, at_ms, alarm_id=1):
    c.receive("L", d.seal("HELLO", hello()), at_ms - 1000)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=alarm_id, raised_time_ms=at_ms)), at_ms)


def test_the_operator_clears_a_panic_after_operator_clear_ms_and_its_record_closes_it():
    c, d = centre(operator_clear_ms=600_000), Dev()
    _alarm_raised(c, d, T0)
    assert c.alarm_history[0].clear_due_ms == T0 + 600_000
    c.tick(T0 + 599_999)
    assert not kinds(c, C.CLEAR_REQUESTED)
    out = d.open(w for _l, w in c.tick(T0 + 600_000))
    cmds = [f.fields for f in out if f.name == "COMMAND"]
    assert cmds == [{"command": constants.COMMAND_CLEAR_ALARM, "arg": 1}]
    (ask,) = kinds(c, C.CLEAR_REQUESTED)
    assert ask.detail["alarm_id"] == 1 and ask.detail["operator_id"] == 1
    assert [r["change"] for r in c.evidence.rows("alarms")][-1] == "clear_requested"
    c.receive("L", d.seal("ALARM", alarm(state=constants.ALARM_STATE_CLEARED,
                                         raised_time_ms=T0)), T0 + 601_000)
    assert c.alarm_history[0].closed and kinds(c, C.ALARM_CLEARED)
    assert all(a.clear_due_ms is None for a in c.alarm_history)


def test_without_operator_clear_ms_no_alarm_is_ever_cleared():
    c, d = centre(), Dev()
    _alarm_raised(c, d, T0)
    for t in range(T0, T0 + 86_400_000, 3_600_000):
        c.receive("L", d.seal("HEARTBEAT", heartbeat()), t)
        c.tick(t)
    assert not kinds(c, C.CLEAR_REQUESTED) and not c.alarm_history[0].closed


def test_a_restarted_centre_sends_a_clear_that_died_with_the_process(tmp_path):
    db = tmp_path / "ev.sqlite"
    c, d = centre_at(db, operator_clear_ms=60_000), Dev()
    _alarm_raised(c, d, T0)
    c.tick(T0 + 60_000)
    c.close()
    again = centre_at(db, operator_clear_ms=60_000)
    assert again.alarm_history[0].clear_due_ms == T0 + 60_000


def centre_at(path, **config):
    return C.Centre({(7, 1): bytes(range(16))}, C.CentreConfig(**config), evidence=path)


def test_silence_during_an_open_alarm_is_not_reporting_and_escalated_after_60_s():
    c, d = centre(), Dev()
    _alarm_raised(c, d, T0)
    assert c.next_deadline_ms() <= T0 + 60_000
    c.tick(T0 + 59_999)
    assert not kinds(c, C.NOT_REPORTING)
    c.tick(T0 + 60_000)
    (silent,) = kinds(c, C.NOT_REPORTING)
    assert silent.detail["urgent"] is True and silent.detail["reason"] == "silent_during_alarm"
    (esc,) = kinds(c, C.ESCALATED)
    assert esc.time_ms == T0 + 60_000 and esc.detail["reason"] == "silent_during_alarm"


def test_silence_of_a_quiet_device_waits_two_intervals_plus_grace():
    c, d = centre(heartbeat_s=900), Dev()
    c.receive("L", d.seal("HELLO", hello()), T0)
    deadline = T0 + 2 * 900_000 + 60_000
    c.tick(deadline - 1)
    assert not kinds(c, C.NOT_REPORTING)
    c.tick(deadline)
    (silent,) = kinds(c, C.NOT_REPORTING)
    assert "urgent" not in silent.detail and not kinds(c, C.ESCALATED)


def test_a_cleared_alarm_ends_the_urgent_watch():
    c, d = centre(), Dev()
    _alarm_raised(c, d, T0)
    c.receive("L", d.seal("ALARM", alarm(state=constants.ALARM_STATE_CLEARED,
                                         raised_time_ms=T0)), T0 + 30_000)
    c.tick(T0 + 200_000)
    assert not kinds(c, C.NOT_REPORTING)


def _paired():
    return C.Centre({(7, 1): bytes(range(16))}, C.CentreConfig(pairs={7: 9004}))


def test_a_stale_victim_fix_gives_uncertain_a_locate_and_an_escalation_in_the_evidence():
    from tests.test_centre import LAT, LON, fix
    from tests.test_centre_proximity import north_of
    c, d = _paired(), Dev()
    c.receive("L", d.seal("POSITION", {"send_time_ms": T0, "fixes": [fix(T0)]}), T0)
    now = T0 + 20 * 60_000  # indoors 20 min: up to 1.7 km walked
    out = []
    for distance_m in (2000, 1900):
        now += 15_000
        out += c.offender_fix(9004, now, north_of(distance_m), LON, 10, now)
    frames = d.open(w for _l, w in out)
    assert [f.fields["level"] for f in frames if f.name == "PROXIMITY"] == [
        constants.PROXIMITY_UNCERTAIN]
    (prox,) = kinds(c, C.PROXIMITY)
    assert prox.detail["level"] == "uncertain" and prox.detail["basis"] == "stale_victim"
    assert [e.detail["reason"] for e in kinds(c, C.LOCATE_REQUESTED)][-1] == "uncertain"
    assert not kinds(c, C.ESCALATED)
    for distance_m in (400, 380):  # within alarm_m of where she was last seen
        now += 15_000
        c.offender_fix(9004, now, north_of(distance_m), LON, 10, now)
    (esc,) = kinds(c, C.ESCALATED)
    assert esc.detail["reason"] == "offender_near_last_known_position"
    rows = c.evidence.rows("proximity")
    assert len(rows) == 4 and {r["basis"] for r in rows} == {"stale_victim"}
    assert all(r["victim_radius_m"] > 1000 for r in rows)
    assert [r["escalate"] for r in rows] == [0, 0, 1, 0]
    assert LAT == rows[0]["victim_lat_e7"]


def test_silence_is_judged_against_the_interval_the_device_last_sent():
    c, d = centre(heartbeat_s=900), Dev()
    c.receive("L", d.seal("HEARTBEAT", {**heartbeat(), "interval_s": 30}), T0)
    assert c.next_deadline_ms() == T0 + 2 * 30_000 + 60_000  # tracking: 30 s promised
    c.receive("L", d.seal("HEARTBEAT", {**heartbeat(), "interval_s": 3600}), T0 + 10_000)
    assert c.next_deadline_ms() == T0 + 10_000 + 2 * 3_600_000 + 60_000
    c.tick(T0 + 10_000 + 2 * 3_600_000 + 60_000)
    (silent,) = kinds(c, C.NOT_REPORTING)
    assert silent.detail["heartbeat_s"] == 3600


def test_a_repeat_press_is_shown_to_the_operator_and_acked_again():
    c, d = centre(operator_ack_delay_ms=5000), Dev()
    _alarm_raised(c, d, T0)
    c.tick(T0 + 5000)
    assert len(kinds(c, C.ALARM_ACKED)) == 1
    c.receive("L", d.seal("ALARM", alarm(state=4, raised_time_ms=T0)), T0 + 60_000)
    (rep,) = kinds(c, C.ALARM_REPEAT)
    assert rep.detail["alarm_id"] == 1 and rep.detail["endpoint"] == "police_dispatch"
    assert c.alarm_history[0].ack_due_ms == T0 + 65_000
    out = d.open(w for _l, w in c.tick(T0 + 65_000))
    assert [f.fields["alarm_id"] for f in out if f.name == "OPERATOR_ACK"] == [1]
    assert [r["change"] for r in c.evidence.rows("alarms")].count("repeat") == 1


def test_alarms_are_routed_by_the_mode_in_force_when_they_were_raised():
    c, d = centre(), Dev()
    c.receive("L", d.seal("HELLO", hello()), T0)
    c.set_mode(7, 2, offender_id=9004, valid_from_ms=T0 + 100_000,
               valid_until_ms=T0 + 200_000, by="court", now_ms=T0 + 1000)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=1, raised_time_ms=T0 + 50_000)),
              T0 + 50_000)
    c.tick(T0 + 100_000)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=2, raised_time_ms=T0 + 150_000)),
              T0 + 150_000)
    c.tick(T0 + 200_000)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=3, raised_time_ms=T0 + 250_000)),
              T0 + 250_000)
    # an alarm raised while paired that arrives late still goes to probation
    c.receive("L", d.seal("ALARM", alarm(alarm_id=4, raised_time_ms=T0 + 199_000)),
              T0 + 260_000)
    routes = {e.detail["alarm_id"]: e.detail["endpoint"] for e in kinds(c, C.ALARM_RAISED)}
    assert routes == {1: "police_dispatch", 2: "probation", 3: "police_dispatch",
                      4: "probation"}
    changes = [(e.time_ms - T0, e.detail["mode"], e.detail["by"])
               for e in kinds(c, C.MODE_CHANGED)]
    assert changes == [(100_000, "paired", "court"), (200_000, "aware", "expiry")]
    assert kinds(c, C.MODE_ORDERED)[0].detail["by"] == "court"


def test_proximity_runs_only_while_paired():
    from tests.test_centre import LON, fix
    from tests.test_centre_proximity import north_of
    c, d = centre(), Dev()
    c.receive("L", d.seal("POSITION", {"send_time_ms": T0, "fixes": [fix(T0)]}), T0)
    c.offender_fix(9004, T0 + 1000, north_of(300), LON, 10, T0 + 1000)
    assert not c.evidence.rows("proximity"), "aware: no proximity at all"
    c.set_mode(7, 2, offender_id=9004, by="court", now_ms=T0 + 2000)
    c.receive("L", d.seal("POSITION", {"send_time_ms": T0 + 3000, "fixes": [fix(T0 + 3000)]}),
              T0 + 3000)
    c.offender_fix(9004, T0 + 4000, north_of(300), LON, 10, T0 + 4000)
    assert c.evidence.rows("proximity")
    c.set_mode(7, 1, by="operator", now_ms=T0 + 5000)
    n = len(c.evidence.rows("proximity"))
    c.offender_fix(9004, T0 + 6000, north_of(300), LON, 10, T0 + 6000)
    assert len(c.evidence.rows("proximity")) == n
