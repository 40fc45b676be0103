"""The monitoring-centre core: frames, dedupe and ACKs, schema, silence, operator, evidence."""
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.centre import Centre, CentreConfig
from host.centre import centre as C
from protocol import codec, messages
from protocol import host_constants as constants

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))
T0 = 1_767_600_000_000
LAT, LON = 520907000, 51214000


def fix(time_ms, lat_e7=LAT, lon_e7=LON, accuracy_m=5):
    return dict(fix_time_ms=time_ms, lat_e7=lat_e7, lon_e7=lon_e7, alt_m=0, speed_cmps=0,
                course_cdeg=0, accuracy_m=accuracy_m, hdop_x10=10, sats=8, source=1)


def hello(schema_hash=messages.SCHEMA_HASH, boot_count=1):
    return dict(fw_major=1, fw_minor=2, fw_patch=3, schema_hash=schema_hash, reset_cause=1,
                boot_count=boot_count, config_version=0, mode=1, interval_s=900)


def heartbeat(status=0):
    return dict(battery_mv=3900, battery_pct=80, charging=0, link_quality=90, queue_depth=0,
                uptime_s=10, status=status, mode=1, interval_s=900)


def alarm(alarm_id=1, state=constants.ALARM_STATE_RAISED, raised_time_ms=T0, fix_=None):
    return dict(alarm_id=alarm_id, kind=constants.ALARM_KIND_PANIC, state=state,
                raised_time_ms=raised_time_ms, fix=fix_)


class Dev:
    """A device: seals uplinks, opens the centre's downlinks."""

    def __init__(self, device_id=7, key=KEY, key_id=1):
        self.id = device_id
        self.sender = codec.Sender(device_id, key_id, key)
        ring = codec.Keyring()
        ring.add(device_id, key_id, KEY)
        self.receiver = codec.Receiver(ring, downlink=True)

    def seal(self, name, fields, **kw):
        return self.sender.seal(name, fields, **kw)

    def open(self, wires):
        frames = []
        for wire in wires:
            for item in self.receiver.feed(wire):
                if isinstance(item, codec.FrameError) and item.reason == "replayed":
                    continue  # a retransmitted downlink: the device dedupes it
                assert isinstance(item, codec.Frame), item
                frames.append(item)
        return frames


def centre(**config):
    return Centre({(7, 1): KEY, (8, 1): KEY}, CentreConfig(**config))


def kinds(c, kind):
    return [e for e in c.events if e.kind == kind]


def test_hello_acked_and_registered():
    c, d = centre(), Dev()
    frames = d.open(c.receive("L", d.seal("HELLO", hello()), T0))
    assert [(f.name, f.fields) for f in frames] == [("ACK", {"highest": 1, "bitmap": 0}),
                                                    ("TIME_SYNC", {"utc_ms": T0})]
    dev = c.devices[7]
    assert (dev.firmware, dev.boot_count, dev.schema_ok, dev.link_id) == ("1.2.3", 1, True, "L")
    assert kinds(c, C.HELLO)[0].detail["firmware"] == "1.2.3"


def test_heartbeat_updates_registry():
    c, d = centre(), Dev()
    c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0 + 5)
    dev = c.devices[7]
    assert (dev.battery_mv, dev.battery_pct, dev.last_heartbeat_ms, dev.last_seen_ms) == (
        3900, 80, T0 + 5, T0 + 5)


def test_ack_bitmap_covers_reordered_frames():
    c, d = centre(), Dev()
    wires = [d.seal("HEARTBEAT", heartbeat()) for _ in range(4)]  # counters 1..4
    c.receive("L", wires[3], T0)
    acks = d.open(c.receive("L", wires[1], T0))
    assert acks[-1].fields == {"highest": 4, "bitmap": 0b10}  # bit i = counter highest-1-i
    acks = d.open(c.receive("L", wires[0] + wires[2], T0))
    assert acks[-1].fields == {"highest": 4, "bitmap": 0b111}
    assert c.devices[7].frames_delivered == 4


def test_one_ack_per_device_per_receive():
    c, d = centre(), Dev()
    data = b"".join(d.seal("HEARTBEAT", heartbeat()) for _ in range(5))
    acks = d.open(c.receive("L", data, T0))
    assert len(acks) == 1 and acks[0].fields == {"highest": 5, "bitmap": 0b1111}


def test_duplicate_acked_again_but_delivered_once():
    c, d = centre(operator_ack_delay_ms=0), Dev()
    wire = d.seal("ALARM", alarm())
    first = d.open(c.receive("L", wire, T0))
    again = d.open(c.receive("L", wire, T0 + 100))
    assert first[0].name == "ACK" and again[0].name == "ACK"
    assert again[0].fields["highest"] == first[0].fields["highest"] == 1
    assert len(kinds(c, C.ALARM_RAISED)) == 1
    assert c.devices[7].duplicates == 1
    assert [r["outcome"] for r in c.evidence.rows("frames")] == ["delivered"]
    c.link_closed("L", T0 + 200)  # duplicates are counted per link, one row per outcome
    assert [(r["link"], r["outcome"], r["count"]) for r in c.evidence.rows("refusals")] == [
        ("L", "duplicate", 1)]


def test_duplicate_older_than_window_gets_its_own_ack():
    c, d = centre(), Dev()
    old = d.seal("HEARTBEAT", heartbeat())
    c.receive("L", old, T0)
    d.sender.counter = 200
    c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0)
    acks = d.open(c.receive("L", old, T0))
    assert [a.fields for a in acks] == [{"highest": 1, "bitmap": 0}]


@given(st.lists(st.integers(0, 11), min_size=1, max_size=40), st.randoms())
def test_duplicated_and_reordered_stream_delivers_each_frame_once(picks, rnd):
    """Any order and multiplicity of 12 alarms' frames: each alarm raised exactly once, each
    frame's counter acked every time it arrives."""
    c, d = centre(operator_ack_delay_ms=0), Dev()
    wires = [d.seal("ALARM", alarm(alarm_id=i + 1)) for i in range(12)]
    rnd.shuffle(picks)
    for i in picks:
        acks = d.open(c.receive("L", wires[i], T0))
        ack = acks[0].fields
        off = ack["highest"] - (i + 1)
        assert off == 0 or (0 < off <= 64 and ack["bitmap"] >> (off - 1) & 1)
    raised = sorted(e.detail["alarm_id"] for e in kinds(c, C.ALARM_RAISED))
    assert raised == sorted({i + 1 for i in picks})


def test_refused_frames_never_change_state():
    c, d = centre(), Dev()
    forged = bytearray(codec.framing.cobs_decode(d.seal("ALARM", alarm())[:-1]))
    forged[-4] ^= 1  # inside the tag; fix up the CRC so only the tag is wrong
    crc = codec.framing.crc16(bytes(forged[:-2]))
    forged[-2:] = crc.to_bytes(2, "big")
    wrong_key = Dev(key=OTHER_KEY).seal("ALARM", alarm())
    unknown = Dev(device_id=99).seal("HEARTBEAT", heartbeat())
    noise = b"garbage\x00\x01\x02\x00"
    out = c.receive("L", codec.framing.cobs_encode(bytes(forged)) + b"\x00" + wrong_key +
                    unknown + noise, T0)
    assert out == []
    assert c.devices == {} and c.alarms == {} and c.next_deadline_ms() is None
    assert c.refused["bad_tag"] == 2 and c.refused["unknown_key"] == 1
    assert sum(c.refused.values()) == 5
    # One event per link and reason (the local log keeps unknown_key apart from bad_tag).
    assert sorted(e.detail["reason"] for e in kinds(c, C.REFUSED)) == [
        "bad_cobs", "bad_tag", "unknown_key"]
    assert c.evidence.rows("frames") == []
    c.link_closed("L", T0)
    counts = {r["outcome"]: r["count"] for r in c.evidence.rows("refusals")}
    assert counts == {"refused:bad_tag": 2, "refused:unknown_key": 1, "refused:bad_cobs": 2}
    # The genuine frame with the forged one's counter is still delivered afterwards.
    d.sender.counter = 1
    assert d.open(c.receive("L", d.seal("ALARM", alarm()), T0))[0].name == "ACK"
    assert len(kinds(c, C.ALARM_RAISED)) == 1


def test_schema_mismatch_refused_until_right_hello():
    c, d = centre(operator_ack_delay_ms=0), Dev()
    assert c.receive("L", d.seal("HELLO", hello(schema_hash=messages.SCHEMA_HASH ^ 1)), T0) == []
    held = d.seal("ALARM", alarm())
    assert c.receive("L", held, T0) == []
    assert c.receive("L", d.seal("HELLO", hello(schema_hash=1234)), T0) == []
    mismatch = kinds(c, C.SCHEMA_MISMATCH)
    assert len(mismatch) == 1 and mismatch[0].detail["theirs"] == "0x%08x" % (
        messages.SCHEMA_HASH ^ 1)
    assert c.refused["schema_mismatch"] == 3 and c.alarms == {}
    assert c.devices[7].schema_ok is False
    # Updated firmware: the right HELLO, then the held alarm (same counter) is delivered.
    d.open(c.receive("L", d.seal("HELLO", hello(boot_count=2)), T0 + 1))
    acks = d.open(c.receive("L", held, T0 + 2))
    assert acks[0].name == "ACK" and len(kinds(c, C.ALARM_RAISED)) == 1


def test_silence_after_two_missed_heartbeats_and_back():
    c, d = centre(heartbeat_s=900, silence_grace_ms=60_000), Dev()
    c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0)
    deadline = T0 + 2 * 900_000 + 60_000
    assert c.next_deadline_ms() == deadline
    c.tick(deadline - 1)
    assert kinds(c, C.NOT_REPORTING) == []
    c.tick(deadline)
    assert len(kinds(c, C.NOT_REPORTING)) == 1 and not c.devices[7].reporting
    c.tick(deadline + 10 * 900_000)
    assert len(kinds(c, C.NOT_REPORTING)) == 1  # raised once
    c.receive("L", d.seal("HEARTBEAT", heartbeat()), deadline + 20 * 900_000)
    assert len(kinds(c, C.REPORTING)) == 1 and c.devices[7].reporting


def test_silence_uses_per_device_and_low_power_interval():
    """Without an interval from the device (interval_s 0: not told), the config's."""
    c, d, e = centre(device_heartbeat_s={8: 60}), Dev(), Dev(device_id=8)
    untold = dict(interval_s=0)
    c.receive("A", d.seal("HEARTBEAT", {**heartbeat(status=constants.STATUS_LOW_POWER),
                                        **untold}), T0)
    c.receive("B", e.seal("HEARTBEAT", {**heartbeat(), **untold}), T0)
    c.tick(T0 + 2 * 60_000 + 60_000)
    assert [ev.device_id for ev in kinds(c, C.NOT_REPORTING)] == [8]
    c.tick(T0 + 2 * 3600_000 + 60_000)
    assert [ev.device_id for ev in kinds(c, C.NOT_REPORTING)] == [8, 7]


@pytest.mark.parametrize("delay_ms", [0, 5000, 30_000])
def test_operator_ack_after_delay(delay_ms):
    c, d = centre(operator_ack_delay_ms=delay_ms), Dev()
    arrive = T0 + 700
    c.receive("L", d.seal("ALARM", alarm(raised_time_ms=T0)), arrive)
    if delay_ms:
        assert c.tick(arrive + delay_ms - 1) == []
    assert c.next_deadline_ms() == arrive + delay_ms
    out = c.tick(arrive + delay_ms)
    frames = d.open(w for _, w in out)
    assert [(f.name, f.fields["alarm_id"]) for f in frames] == [("OPERATOR_ACK", 1)]
    record = c.alarms[(7, 1)]
    assert (record.raised_time_ms, record.arrived_ms, record.acked_ms) == (
        T0, arrive, arrive + delay_ms)
    # The device transport-acks the OPERATOR_ACK: delivered, no more retries.
    c.receive("L", d.seal("ACK", {"highest": frames[0].counter, "bitmap": 0}), arrive + delay_ms + 50)
    assert record.ack_delivered_ms == arrive + delay_ms + 50
    assert c.downlinks_pending() == []
    changes = [r["change"] for r in c.evidence.rows("alarms")]
    assert changes == ["raised", "acked", "ack_delivered"]


def test_operator_ack_retried_until_acked_and_again_on_repeat():
    c, d = centre(operator_ack_delay_ms=0, downlink_retry_ms=10_000), Dev()
    c.receive("L", d.seal("ALARM", alarm()), T0)
    first = c.tick(T0)
    assert len(first) == 1
    assert c.tick(T0 + 9_999) == []
    retry = c.tick(T0 + 10_000)
    assert [w for _, w in retry] == [w for _, w in first]  # same counter, same bytes
    assert c.tick(T0 + 29_999) == [] and len(c.tick(T0 + 30_000)) == 1  # backoff doubles
    # The alarm frame arrives again (new counter): the operator acks again at once.
    replies = d.open(c.receive("L", d.seal("ALARM", alarm()), T0 + 40_000))
    names = [f.name for f in replies] + [f.name for f in d.open(w for _, w in c.tick(T0 + 40_000))]
    assert names.count("OPERATOR_ACK") >= 1 and len(kinds(c, C.ALARM_RAISED)) == 1


def test_cancelled_alarm_not_acked():
    c, d = centre(operator_ack_delay_ms=5000), Dev()
    c.receive("L", d.seal("ALARM", alarm()), T0)
    c.receive("L", d.seal("ALARM", alarm(state=constants.ALARM_STATE_CANCELLED)), T0 + 1000)
    assert c.tick(T0 + 10_000) == [] and c.alarms[(7, 1)].cancelled_ms == T0 + 1000
    assert len(kinds(c, C.ALARM_CANCELLED)) == 1


def test_downlink_waits_for_a_link_and_goes_out_on_contact():
    c, d = centre(), Dev()
    counter = c.send(7, "COMMAND", {"command": constants.COMMAND_LOCATE_NOW, "arg": 0}, T0)
    assert c.tick(T0) == []  # no link known yet
    frames = d.open(c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0 + 5))
    assert [f.name for f in frames] == ["ACK", "COMMAND"] and frames[1].counter == counter


def test_evidence_is_append_only():
    c, d = centre(), Dev()
    c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0)
    with pytest.raises(Exception, match="append-only"):
        c.evidence._db.execute("UPDATE frames SET outcome = 'x'")
    with pytest.raises(Exception, match="append-only"):
        c.evidence._db.execute("DELETE FROM frames")


def test_restart_from_evidence_keeps_counters(tmp_path):
    db = tmp_path / "evidence.sqlite"
    d = Dev()
    c = Centre({(7, 1): KEY}, CentreConfig(operator_ack_delay_ms=0), evidence=db)
    old = d.seal("ALARM", alarm())
    c.receive("L", old, T0)
    sent = d.open(w for _, w in c.tick(T0))
    c.close()
    c = Centre({(7, 1): KEY}, CentreConfig(), evidence=db)
    c.receive("L", old, T0 + 1)
    assert kinds(c, C.ALARM_RAISED) == []  # not delivered (shown to the operator) again
    assert list(c.alarms) == [(7, 1)]  # the alarm itself is known from the evidence log
    counter = c.send(7, "PROXIMITY", {"level": 0}, T0 + 2)
    assert counter > sent[-1].counter


def test_randomised_lossy_session_all_alarms_acked():
    """30 % loss both ways, retransmitting device: every alarm is raised once and acked."""
    rnd = random.Random(4)
    c, d = centre(operator_ack_delay_ms=1000), Dev()
    now = T0
    pending = {}  # alarm id -> wire (device retransmits until transport ACK)
    acked_by_operator = set()
    for alarm_id in range(1, 21):
        pending[alarm_id] = d.seal("ALARM", alarm(alarm_id=alarm_id, raised_time_ms=now))
        for _ in range(60):
            now += 2000
            replies = []
            for wire in list(pending.values()):
                if rnd.random() >= 0.3:
                    replies += c.receive("L", wire, now)
            replies += [w for _, w in c.tick(now)]
            for frame in d.open(w for w in replies if rnd.random() >= 0.3):
                if frame.name == "ACK":
                    h, b = frame.fields["highest"], frame.fields["bitmap"]
                    for aid in list(pending):
                        ctr = aid  # the device seals only alarms: alarm i has counter i
                        if ctr == h or 0 < h - ctr <= 64 and b >> (h - ctr - 1) & 1:
                            del pending[aid]
                elif frame.name == "OPERATOR_ACK":
                    acked_by_operator.add(frame.fields["alarm_id"])
            if alarm_id in acked_by_operator and not pending:
                break
    assert len(kinds(c, C.ALARM_RAISED)) == 20
    assert acked_by_operator == set(range(1, 21))


def test_a_record_from_before_a_reboot_far_below_the_window_is_delivered_once():
    """After a reboot the device's counters jump ahead by a reserve block, so an alarm it
    queued before the reboot arrives far below the 64-wide window. The centre must deliver
    it (it never had it) and only once; an old frame it did deliver stays a duplicate."""
    c, d = centre(), Dev()
    delivered_early = d.seal("HEARTBEAT", heartbeat())            # counter 1
    c.receive("L", delivered_early, T0)
    lost_alarm = d.seal("ALARM", alarm(alarm_id=4))                # counter 2: lost in transit
    d.sender.counter = 2 + 256                                     # reboot: next reserve block
    for i in range(80):                                            # newer frames arrive first
        c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0 + 1000 + i)
    assert not any(a.alarm_id == 4 for a in c.alarm_history)
    replies = d.open(c.receive("L", lost_alarm, T0 + 5000))
    assert [a.alarm_id for a in c.alarm_history] == [4], "delivered although far below the window"
    assert any(f.name == "ACK" and f.fields["highest"] == 2 for f in replies)
    c.receive("L", lost_alarm, T0 + 6000)
    c.receive("L", delivered_early, T0 + 7000)
    assert [a.alarm_id for a in c.alarm_history] == [4], "and only once"
    assert c.devices[7].duplicates == 2
