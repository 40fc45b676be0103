"""A restarted centre (a new Centre on the same evidence file) keeps its alarms: a repeated
alarm is not shown to the operator twice, an alarm waiting for the operator gets its ack, an
ack the device never confirmed is sent again, and no downlink counter is used twice. Found by
bench/chaos.py (seeds 4230697605 and 4168784655 of `--seed 1`)."""
from host.centre import Centre, CentreConfig
from host.centre import centre as C
from protocol import host_constants as constants

from .test_centre import KEY, T0, Dev, alarm, kinds


def restart(c, db, **config):
    c.close()
    return Centre({(7, 1): KEY}, CentreConfig(**config), evidence=db)


def operator_acks(d, wires):
    return [f for f in d.open(wires) if f.name == "OPERATOR_ACK"]


def test_a_restart_before_the_operator_acked_still_acks_once_and_shows_it_once(tmp_path):
    db = tmp_path / "evidence.sqlite"
    d = Dev()
    c = Centre({(7, 1): KEY}, CentreConfig(operator_ack_delay_ms=60_000), evidence=db)
    c.receive("L", d.seal("ALARM", alarm()), T0)
    assert len(kinds(c, C.ALARM_RAISED)) == 1 and c.tick(T0 + 1000) == []
    c = restart(c, db, operator_ack_delay_ms=60_000)
    # The device repeats the raised alarm under a new counter; the new centre knows it.
    replies = c.receive("L", d.seal("ALARM", alarm()), T0 + 5000)
    assert kinds(c, C.ALARM_RAISED) == [], "shown to the operator a second time"
    acks = operator_acks(d, replies + [w for _l, w in c.tick(T0 + 5000)])
    assert [f.fields["alarm_id"] for f in acks] == [1], "the operator's ack is not lost"


def test_an_ack_the_device_never_confirmed_is_sent_again_after_a_restart(tmp_path):
    db = tmp_path / "evidence.sqlite"
    d = Dev()
    c = Centre({(7, 1): KEY}, CentreConfig(operator_ack_delay_ms=0), evidence=db)
    c.receive("L", d.seal("ALARM", alarm()), T0)
    first = [w for _l, w in c.tick(T0)]
    assert len(kinds(c, C.ALARM_ACKED)) == 1
    # The OPERATOR_ACK is lost on the link; the centre restarts.
    c = restart(c, db, operator_ack_delay_ms=0)
    c.receive("L", d.seal("HEARTBEAT", dict(battery_mv=3900, battery_pct=80, charging=0,
                                            link_quality=90, queue_depth=0, uptime_s=10,
                                            status=1, mode=1, interval_s=900)), T0 + 1000)
    again = operator_acks(d, [w for _l, w in c.tick(T0 + 1000)])
    assert [f.fields["alarm_id"] for f in again] == [1]
    assert kinds(c, C.ALARM_ACKED) == [], "acked again, not a new operator decision"
    before = {f.counter for f in operator_acks(Dev(), first)}
    assert again[0].counter not in before, "a new counter for the resent ack"


def test_a_confirmed_or_closed_alarm_is_left_alone_after_a_restart(tmp_path):
    db = tmp_path / "evidence.sqlite"
    d = Dev()
    c = Centre({(7, 1): KEY}, CentreConfig(operator_ack_delay_ms=0), evidence=db)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=1)), T0)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=2, raised_time_ms=T0 + 1)), T0)
    c.receive("L", d.seal("ALARM", alarm(alarm_id=2, raised_time_ms=T0 + 1,
                                         state=constants.ALARM_STATE_CANCELLED)), T0 + 1)
    ack = operator_acks(d, [w for _l, w in c.tick(T0 + 2)])
    assert [f.fields["alarm_id"] for f in ack] == [1]
    c.receive("L", d.seal("ACK", {"highest": ack[0].counter, "bitmap": 0}), T0 + 3)
    assert len(kinds(c, C.ALARM_ACK_DELIVERED)) == 1
    c = restart(c, db, operator_ack_delay_ms=0)
    assert c.tick(T0 + 10) == []
    assert all(a.ack_due_ms is None for a in c.alarm_history)
    assert {k: (a.ack_delivered_ms is not None, a.closed) for k, a in c.alarms.items()} == {
        (7, 1): (True, False), (7, 2): (False, True)}
