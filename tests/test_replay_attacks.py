"""Every replay attack of issue 8, as a test: a captured genuine frame, replayed, changes
nothing, and the local log says why in one line.

Centre side: the frame is authentic but not new, so it is acked again on the link it came
from and counted ("duplicate", "stale_hello") in the evidence log's `refusals` rows; it never
re-points the device's link, refreshes its last-seen time or flips its schema flag.
Device side: the downlink window survives a reset as a floor in flash
(firmware/persist.DownlinkFloor), so an old COMMAND, PROXIMITY, CONFIG, OPERATOR_ACK or
TIME_SYNC is dropped with one "link: dropped frame: replayed" line and is not acked.
"""
import pytest

from host.centre import Centre, CentreConfig
from host.centre import centre as C
from protocol import codec, host_make_vectors, messages
from protocol import host_constants as constants
from tests.test_centre import KEY, OTHER_KEY, T0, Dev, alarm, centre, heartbeat, hello, kinds
from tests.test_fw_app import DEVICE, boot, fake_board, run
from tests.test_fw_app import KEY as DEVICE_KEY


def refusal_counts(c, link):
    """{outcome: count} summed over the link's aggregate rows (one per flush interval)."""
    c.link_closed(link)
    counts = {}
    for r in c.evidence.rows("refusals"):
        if r["link"] == link:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + r["count"]
    return counts


# ---- the centre --------------------------------------------------------------------------------

def test_a_replay_from_another_link_does_not_steal_the_operator_ack():
    c, d = centre(operator_ack_delay_ms=1000), Dev()
    wire = d.seal("ALARM", alarm())
    c.receive("device", wire, T0)
    assert d.open(c.receive("attacker", wire, T0 + 10))[0].name == "ACK"  # acked, nothing more
    assert c.devices[7].link_id == "device"
    out = c.tick(T0 + 1000)
    assert [link for link, _ in out] == ["device"]
    assert [f.name for f in d.open(w for _, w in out)] == ["OPERATOR_ACK"]
    assert refusal_counts(c, "attacker") == {"duplicate": 1}


def test_replays_every_20_s_do_not_hide_a_silent_device():
    c, d = centre(heartbeat_s=900, silence_grace_ms=60_000), Dev()
    wire = d.seal("HEARTBEAT", heartbeat())
    c.receive("device", wire, T0)
    deadline = T0 + 2 * 900_000 + 60_000
    for t in range(T0 + 20_000, deadline + 1, 20_000):
        c.receive("attacker", wire, t)
        c.tick(t)
    assert c.devices[7].last_seen_ms == T0
    assert len(kinds(c, C.NOT_REPORTING)) == 1
    assert refusal_counts(c, "attacker")["duplicate"] == (deadline - T0) // 20_000


def test_an_old_firmware_hello_replayed_cannot_mark_the_device_mismatched():
    c, d = centre(operator_ack_delay_ms=0), Dev()
    old_hello = d.seal("HELLO", hello(schema_hash=messages.SCHEMA_HASH ^ 1))  # old firmware
    c.receive("device", old_hello, T0)
    assert c.devices[7].schema_ok is False
    c.receive("device", d.seal("HELLO", hello(boot_count=2)), T0 + 1)  # updated firmware
    assert c.devices[7].schema_ok is True
    c.receive("attacker", old_hello, T0 + 2)
    assert c.devices[7].schema_ok is True and c.devices[7].link_id == "device"
    d.open(c.receive("device", d.seal("ALARM", alarm()), T0 + 3))
    assert len(kinds(c, C.ALARM_RAISED)) == 1  # the panic is not refused
    assert refusal_counts(c, "attacker") == {"stale_hello": 1}


def test_a_restarted_centre_accepts_no_replay(tmp_path):
    db = tmp_path / "evidence.sqlite"
    d = Dev()
    c = Centre({(7, 1): KEY}, CentreConfig(operator_ack_delay_ms=0), evidence=db)
    wires = [d.seal("ALARM", alarm(alarm_id=i)) for i in range(1, 71)]
    for i, wire in enumerate(wires):
        if i != 40:  # one counter never arrived: still deliverable after the restart
            c.receive("device", wire, T0 + i)
    c.close()
    c = Centre({(7, 1): KEY}, CentreConfig(operator_ack_delay_ms=0), evidence=db)
    assert c.devices[7].frames_delivered == 69  # device state survived too
    for wire in wires:
        c.receive("attacker", wire, T0 + 1000)
    assert [e.detail["alarm_id"] for e in kinds(c, C.ALARM_RAISED)] == [41]
    assert refusal_counts(c, "attacker") == {"duplicate": 69}


def test_downlink_counters_are_never_reused_after_a_restart(tmp_path):
    """ACKs are sealed without a downlinks row; reserve-ahead still covers their counters."""
    db = tmp_path / "evidence.sqlite"
    d = Dev()
    c = Centre({(7, 1): KEY}, CentreConfig(), evidence=db)
    used = [f.counter for f in d.open(c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0))]
    used += [f.counter for f in d.open(c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0))]
    c.close()
    c = Centre({(7, 1): KEY}, CentreConfig(), evidence=db)
    after = d.open(c.receive("L", d.seal("HEARTBEAT", heartbeat()), T0 + 1))
    assert min(f.counter for f in after) > max(used)


def test_unknown_key_and_bad_tag_look_alike_from_outside():
    c = centre()
    unknown = Dev(device_id=99).seal("HEARTBEAT", heartbeat())
    forged = Dev(key=OTHER_KEY).seal("HEARTBEAT", heartbeat())
    assert c.receive("a", unknown, T0) == [] and c.receive("b", forged, T0) == []
    assert c.devices == {} and c.next_deadline_ms() is None
    # Only the local log tells them apart, one line each.
    lines = [e.line() for e in kinds(c, C.REFUSED)]
    assert len(lines) == 2 and "reason=unknown_key" in lines[0] and "reason=bad_tag" in lines[1]
    assert all("\n" not in line for line in lines)


def test_a_v1_frame_is_refused_with_a_clear_reason():
    c = centre()
    assert c.receive("L", host_make_vectors.V1_HEARTBEAT, T0) == []
    [event] = kinds(c, C.REFUSED)
    assert event.detail["reason"] == "bad_version" and "v1 frame" in event.detail["detail"]


def test_windows_are_per_key_id_so_a_rotation_is_not_a_replay():
    c = Centre({(7, 1): KEY, (7, 2): OTHER_KEY}, CentreConfig())
    old, new = Dev(key_id=1), Dev(key=OTHER_KEY, key_id=2)
    for _ in range(5):
        c.receive("L", old.seal("HEARTBEAT", heartbeat()), T0)
    c.receive("L", new.seal("HEARTBEAT", heartbeat()), T0 + 1)  # key 2 starts at counter 1
    assert c.devices[7].frames_delivered == 6 and c.devices[7].key_id == 2
    c.receive("L", old.seal("HEARTBEAT", heartbeat(), counter=3), T0 + 2)  # old key: a replay
    assert c.devices[7].frames_delivered == 6


# ---- the device ------------------------------------------------------------------------------

def _recorder(app):
    seen = []
    handle = app.core.handle

    def record(event, now):
        seen.append(event[:1] + event[1:2])
        return handle(event, now)

    app.core.handle = record
    return seen


def test_the_app_refuses_a_downlink_replayed_within_one_boot(tmp_path):
    """Fails if firmware/app.py builds its downlink receiver with check_replay=False."""
    a, hw, clock = boot(tmp_path)
    seen = _recorder(a)
    wire = codec.Sender(DEVICE, 1, DEVICE_KEY, downlink=True).seal(
        "PROXIMITY", {"level": constants.PROXIMITY_WARNING})
    hw.link_uart.rx += wire + wire
    run(a, clock, 100)
    assert [e for e in seen if e[0] in ("rx", "rx_duplicate")] == [
        ("rx", "PROXIMITY"), ("rx_duplicate", 1)]  # acked again, acted on once


DOWNLINKS = [
    ("COMMAND", {"command": constants.COMMAND_REBOOT, "arg": 0}),
    ("PROXIMITY", {"level": constants.PROXIMITY_CLEAR}),
    ("CONFIG", {"config_version": 9, "items": [(1, 60)]}),
    ("OPERATOR_ACK", {"alarm_id": 1, "operator_id": 1}),
    ("TIME_SYNC", {"utc_ms": 1}),
]


@pytest.mark.parametrize("name, fields", DOWNLINKS, ids=[d[0] for d in DOWNLINKS])
def test_an_old_downlink_replayed_after_a_reset_is_dropped(tmp_path, capsys, name, fields):
    a, hw, clock = boot(tmp_path)
    centre_side = codec.Sender(DEVICE, 1, DEVICE_KEY, downlink=True)
    captured = centre_side.seal(name, fields)
    hw.link_uart.rx += captured
    run(a, clock, 100)
    # A reset: a new board, the same flash.
    a2, hw2, clock2 = boot(tmp_path, fake_board())
    seen = _recorder(a2)
    capsys.readouterr()
    hw2.link_uart.rx += captured
    run(a2, clock2, 100)
    assert not [e for e in seen if e[0] in ("rx", "rx_duplicate")]  # not acted on, not acked
    assert not a2.reboot
    dropped = [line for line in capsys.readouterr().out.splitlines() if "dropped" in line]
    assert dropped == ["vigil: link: dropped frame: replayed: at or below the floor"]
    # The centre, told of the reset by the HELLO, skips past the floor: new downlinks pass.
    centre_side.counter += 256
    hw2.link_uart.rx += centre_side.seal(name, fields)
    run(a2, clock2, 100)
    assert [e for e in seen if e[0] == "rx"] == [("rx", name)]
