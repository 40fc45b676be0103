"""Round trips of every message through the portable codec, the host fast path and the
construct reference, with hypothesis drawing boundary values (SPEC 6)."""
import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    codec,
    config_keys,
    host_fast,
    host_make_vectors,
    host_reference,
    host_tables,
    messages,
)
from protocol import host_constants as constants

KEY = bytes(range(16))


def _ints(fmt_char):
    low, high = host_tables.RANGES[fmt_char]
    return st.integers(low, high)


def fixes():
    return st.fixed_dictionaries({
        name: _ints(char) for name, char in zip(messages.FIX_FIELDS, messages.FIX_FORMAT[1:], strict=True)})


def config_items():
    def item(key):
        _, low, high, _ = config_keys.CONFIG_KEYS[key]
        return st.tuples(st.just(key), st.integers(low, high))
    return st.lists(st.sampled_from(sorted(config_keys.CONFIG_KEYS)).flatmap(item),
                    max_size=host_tables.MAX_CONFIG_ITEMS)


_VARIABLE = {
    "fixes": lambda: {"fixes": st.lists(fixes(), min_size=1, max_size=host_tables.MAX_FIXES)},
    "items": lambda: {"items": config_items()},
    "data": lambda: {"data": st.binary(max_size=host_tables.MAX_PAYLOAD - 1)},
}


def message_fields(name):
    code, name, direction, head, size, names, kind = host_tables.BY_NAME[name]
    parts = {n: _ints(c) for n, c in zip(names, head[1:], strict=True)}
    if kind == "fix":
        parts[messages.FIX_NAME[name]] = st.none() | fixes()
    elif kind:
        parts.update(_VARIABLE[kind]())
    return st.fixed_dictionaries(parts)


MESSAGE_NAMES = [entry[1] for entry in messages.MESSAGES]


@st.composite
def messages_st(draw, names=tuple(MESSAGE_NAMES)):
    """(name, fields, downlink) for any message, in a direction it may travel."""
    name = draw(st.sampled_from(names))
    direction = host_tables.BY_NAME[name][2]
    downlink = draw(st.booleans()) if direction == host_tables.BOTH else direction == host_tables.DOWN
    return name, draw(message_fields(name)), downlink


@st.composite
def sealed(draw):
    """(name, fields, downlink, device_id, key_id, counter, flags, portable wire)."""
    name, fields, downlink = draw(messages_st())
    device_id = draw(st.integers(0, 0xFFFFFFFF))
    key_id = codec.TEST_KEY_ID if name == "TEST_INJECT" else draw(st.integers(0, 0xFF))
    counter = draw(st.integers(1, 0xFFFFFFFF))
    flags = draw(st.sampled_from([0, host_tables.FLAG_TEST]))
    if name == "TEST_INJECT":
        flags |= host_tables.FLAG_TEST
    sender = codec.Sender(device_id, key_id, KEY, downlink=downlink)
    wire = sender.seal(name, fields, flags=flags, counter=counter)
    return name, fields, downlink, device_id, key_id, counter, flags, wire


def _receivers(device_id, key_id, downlink):
    portable_keys = codec.Keyring()
    portable_keys.add(device_id, key_id, KEY)
    fast_keys = host_fast.Keyring()
    fast_keys.add(device_id, key_id, KEY)
    return (codec.Receiver(portable_keys, downlink=downlink, test_mode=True),
            host_fast.FastReceiver(fast_keys, downlink=downlink, test_mode=True))


@given(sealed())
def test_every_message_round_trips_through_all_three(case):
    name, fields, downlink, device_id, key_id, counter, flags, wire = case
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert len(wire) <= host_tables.MAX_WIRE
    for receiver in _receivers(device_id, key_id, downlink):
        [frame] = receiver.feed(wire)
        assert isinstance(frame, codec.Frame), frame
        assert (frame.name, frame.fields, frame.counter) == (name, fields, counter)
        assert (frame.device_id, frame.key_id, frame.downlink) == (device_id, key_id, downlink)
        assert frame.historic is False  # not on the wire in v2: the centre infers it
        assert bool(frame.flags & host_tables.FLAG_TEST) == bool(flags & host_tables.FLAG_TEST)
        assert frame.ack_requested == (name != "ACK")
    decoded = host_reference.decode_frame(wire[:-1], {(device_id, key_id): KEY},
                                          downlink=downlink, test_mode=True)
    assert (decoded["name"], decoded["fields"], decoded["counter"]) == (name, fields, counter)


@given(sealed())
def test_fast_sender_is_byte_identical(case):
    name, fields, downlink, device_id, key_id, counter, flags, wire = case
    fast = host_fast.FastSender(device_id, key_id, KEY, downlink=downlink)
    assert fast.seal(name, fields, flags=flags, counter=counter) == wire
    payload = bytearray(host_tables.MAX_FRAME)
    end = messages.encode_into(payload, 0, messages.find(name), fields)
    assert host_fast.encode_payload(name, fields) == bytes(payload[:end])


@given(messages_st(), st.integers(1, 1000))
def test_senders_advance_counters_alike(message, start):
    name, fields, downlink = message
    portable = codec.Sender(5, 1, KEY, downlink=downlink, counter=start)
    fast = host_fast.FastSender(5, 1, KEY, downlink=downlink, counter=start)
    flags = host_tables.FLAG_TEST if name == "TEST_INJECT" else 0
    for _ in range(3):
        assert portable.seal(name, fields, flags) == fast.seal(name, fields, flags)
    assert portable.counter == fast.counter == start + 3


def test_location_messages_are_encrypted_on_the_wire():
    fix = {n: 0 for n in messages.FIX_FIELDS}
    fix.update(lat_e7=523702000, lon_e7=48952000)
    wire = codec.Sender(1, 1, KEY).seal("POSITION", {"send_time_ms": 0, "fixes": [fix]})
    body = codec.framing.cobs_decode(wire[:-1])
    assert (523702000).to_bytes(4, "big") not in body
    assert (48952000).to_bytes(4, "big") not in body


# Every frame of a size bucket looks alike on the wire: the same length, and no clear byte
# that names the type, flags or payload (SPEC 3.4). An ALARM is as long as a one-fix POSITION
# and a NO_FIX; a PROXIMITY level, OPERATOR_ACK, COMMAND or TIME_SYNC as long as an ACK.
_SMALL_DOWN = [("PROXIMITY", {"level": 0}), ("PROXIMITY", {"level": 3}),
               ("OPERATOR_ACK", {"alarm_id": 1, "operator_id": 1}),
               ("COMMAND", {"command": constants.COMMAND_LOCATE_NOW, "arg": 0}),
               ("COMMAND", {"command": constants.COMMAND_REBOOT, "arg": 0}),
               ("TIME_SYNC", {"utc_ms": 1}), ("ACK", {"highest": 1, "bitmap": 0}),
               ("CONFIG", {"config_version": 1, "items": []})]


def test_metadata_is_sealed_and_padded():
    fix = {n: 0 for n in messages.FIX_FIELDS}
    down = codec.Sender(1, 1, KEY, downlink=True, counter=100)
    bodies = [codec.framing.cobs_decode(down.seal(n, f)[:-1]) for n, f in _SMALL_DOWN]
    assert {len(b) for b in bodies} == {host_tables.MIN_FRAME}
    # Only the routing header is clear: version, direction, key id, device id, counter.
    for counter, body in enumerate(bodies, 100):
        assert body[:host_tables.HEADER_SIZE] == bytes([2, 1, 1]) + (1).to_bytes(4, "big") + \
            counter.to_bytes(4, "big")
    up = codec.Sender(1, 1, KEY)
    alarm = up.seal("ALARM", {"alarm_id": 1, "kind": 1, "state": 1, "raised_time_ms": 0,
                              "fix": None})
    position = up.seal("POSITION", {"send_time_ms": 0, "fixes": [fix]})
    no_fix = up.seal("NO_FIX", {"send_time_ms": 0, "age_s": 0, "last_fix": None})
    sizes = {len(codec.framing.cobs_decode(w[:-1])) for w in (alarm, position, no_fix)}
    assert len(sizes) == 1
    # A PROXIMITY level shows nowhere: each level's frame has the same clear header and
    # length, and its plaintext (type 0x84, flags, length 1, level) is not in the bytes.
    levels = [codec.framing.cobs_decode(
        codec.Sender(1, 1, KEY, True).seal("PROXIMITY", {"level": level})[:-1])
        for level in range(4)]
    assert len({b[:host_tables.HEADER_SIZE] for b in levels}) == 1
    assert len({len(b) for b in levels}) == 1
    for level, body in enumerate(levels):
        assert bytes([0x84, 1, 1, level]) not in body


def test_a_retransmission_is_the_same_bytes():
    """No CTR keystream reuse: re-sealing a record under its counter gives the same bytes."""
    sender = codec.Sender(1, 1, KEY)
    fields = {"kind": 1, "time_ms": 5, "value": 2}
    first = sender.seal("EVENT", fields)
    assert sender.seal("EVENT", fields, counter=1) == first
    with pytest.raises(messages.PayloadError):
        sender.seal("EVENT", fields, flags=2, counter=1)  # no HISTORIC flag in v2


def test_a_v1_frame_is_refused_with_a_clear_reason():
    v1 = bytes.fromhex(host_make_vectors.V1_HEARTBEAT.hex())
    for receiver in _receivers(1, 1, False):
        [item] = receiver.feed(v1)
        assert item.reason == "bad_version"
        assert "v1 frame" in str(item) and "v2" in str(item)


BAD_FIELDS = [
    ("HEARTBEAT", {"battery_mv": 70000, "battery_pct": 0, "charging": 0, "link_quality": 0,
                   "queue_depth": 0, "uptime_s": 0, "status": 0, "mode": 1, "interval_s": 0}),
    ("HEARTBEAT", {"battery_mv": 1}),
    ("PROXIMITY", {"level": -1}),
    ("PROXIMITY", {"level": "2"}),
    ("POSITION", {"send_time_ms": 0, "fixes": []}),
    ("CONFIG", {"config_version": 1, "items": [(1, 59)]}),
    ("CONFIG", {"config_version": 1, "items": [(99, 1)]}),
    ("NOPE", {}),
]


def test_invalid_fields_are_refused_by_both_senders():
    for name, fields in BAD_FIELDS:
        downlink = name in ("CONFIG", "PROXIMITY")
        for sender_class in (codec.Sender, host_fast.FastSender):
            sender = sender_class(1, 1, KEY, downlink=downlink)
            try:
                sender.seal(name, fields)
            except messages.PayloadError:
                continue
            raise AssertionError("%s accepted %s %r" % (sender_class.__name__, name, fields))


def test_oversized_test_inject_is_refused_without_growing_the_buffer():
    sender = codec.Sender(1, codec.TEST_KEY_ID, KEY, downlink=True)
    for sender_ in (sender, host_fast.FastSender(1, codec.TEST_KEY_ID, KEY, downlink=True)):
        for size in (host_tables.MAX_PAYLOAD, 300):
            try:
                sender_.seal("TEST_INJECT", {"op": 1, "data": bytes(size)})
            except messages.PayloadError:
                pass
            else:
                raise AssertionError("a %d-byte payload was sealed" % (size + 1))
    assert len(sender._buf) == host_tables.MAX_FRAME
    wire = sender.seal("TEST_INJECT", {"op": 1, "data": bytes(host_tables.MAX_PAYLOAD - 1)})
    assert len(codec.framing.cobs_decode(wire[:-1])) == host_tables.MAX_FRAME


def test_schema_hash_is_in_hello_and_stable():
    assert 0 <= messages.SCHEMA_HASH <= 0xFFFFFFFF
    # Changing the table changes the hash (SPEC 7): the hash covers the text of the table.
    assert messages.SCHEMA_HASH == binascii.crc32(host_make_vectors.schema_text().encode())
    assert "02:HEARTBEAT:up:>HBBBHIB" in host_make_vectors.schema_text()
