"""Round trips of every message through the portable codec, the host fast path and the
construct reference, with hypothesis drawing boundary values (SPEC 6)."""
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec, host_fast, host_reference, messages

KEY = bytes(range(16))


def _ints(fmt_char):
    low, high = messages._RANGES[fmt_char]
    return st.integers(low, high)


def fixes():
    return st.fixed_dictionaries({
        name: _ints(char) for name, char in zip(messages.FIX_FIELDS, messages.FIX_FORMAT[1:], strict=True)})


def config_items():
    def item(key):
        _, low, high, _ = messages.CONFIG_KEYS[key]
        return st.tuples(st.just(key), st.integers(low, high))
    return st.lists(st.sampled_from(sorted(messages.CONFIG_KEYS)).flatmap(item),
                    max_size=messages.MAX_CONFIG_ITEMS)


_VARIABLE = {
    "fixes": lambda: {"fixes": st.lists(fixes(), min_size=1, max_size=messages.MAX_FIXES)},
    "items": lambda: {"items": config_items()},
    "data": lambda: {"data": st.binary(max_size=codec.MAX_PAYLOAD - 1)},
}


def message_fields(name):
    code, name, direction, head, size, names, kind = messages.BY_NAME[name]
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
    direction = messages.BY_NAME[name][2]
    downlink = draw(st.booleans()) if direction == messages.BOTH else direction == messages.DOWN
    return name, draw(message_fields(name)), downlink


@st.composite
def sealed(draw):
    """(name, fields, downlink, device_id, key_id, counter, flags, portable wire)."""
    name, fields, downlink = draw(messages_st())
    device_id = draw(st.integers(0, 0xFFFFFFFF))
    key_id = codec.TEST_KEY_ID if name == "TEST_INJECT" else draw(st.integers(0, 0xFF))
    counter = draw(st.integers(1, 0xFFFFFFFF))
    flags = draw(st.sampled_from([0, codec.FLAG_HISTORIC]))
    if name == "TEST_INJECT":
        flags |= codec.FLAG_TEST
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
    assert len(wire) <= codec.MAX_WIRE
    for receiver in _receivers(device_id, key_id, downlink):
        [frame] = receiver.feed(wire)
        assert isinstance(frame, codec.Frame), frame
        assert (frame.name, frame.fields, frame.counter) == (name, fields, counter)
        assert (frame.device_id, frame.key_id, frame.downlink) == (device_id, key_id, downlink)
        assert frame.historic == bool(flags & codec.FLAG_HISTORIC)
        assert frame.ack_requested == (name != "ACK")
    decoded = host_reference.decode_frame(wire[:-1], {(device_id, key_id): KEY},
                                          downlink=downlink, test_mode=True)
    assert (decoded["name"], decoded["fields"], decoded["counter"]) == (name, fields, counter)


@given(sealed())
def test_fast_sender_is_byte_identical(case):
    name, fields, downlink, device_id, key_id, counter, flags, wire = case
    fast = host_fast.FastSender(device_id, key_id, KEY, downlink=downlink)
    assert fast.seal(name, fields, flags=flags, counter=counter) == wire
    payload = bytearray(codec.MAX_FRAME)
    end = messages.encode_into(payload, 0, name, fields)
    assert host_fast.encode_payload(name, fields) == bytes(payload[:end])


@given(messages_st(), st.integers(1, 1000))
def test_senders_advance_counters_alike(message, start):
    name, fields, downlink = message
    portable = codec.Sender(5, 1, KEY, downlink=downlink, counter=start)
    fast = host_fast.FastSender(5, 1, KEY, downlink=downlink, counter=start)
    flags = codec.FLAG_TEST if name == "TEST_INJECT" else 0
    for _ in range(3):
        assert portable.seal(name, fields, flags) == fast.seal(name, fields, flags)
    assert portable.counter == fast.counter == start + 3


def test_location_messages_are_encrypted_on_the_wire():
    fix = {n: 0 for n in messages.FIX_FIELDS}
    fix.update(lat_e7=523702000, lon_e7=48952000)
    wire = codec.Sender(1, 1, KEY).seal("POSITION", {"send_time_ms": 0, "fixes": [fix]})
    body = codec.framing.cobs_decode(wire[:-1])
    assert body[2] & codec.FLAG_ENCRYPTED
    assert (523702000).to_bytes(4, "big") not in body
    assert (48952000).to_bytes(4, "big") not in body


BAD_FIELDS = [
    ("HEARTBEAT", {"battery_mv": 70000, "battery_pct": 0, "charging": 0, "link_quality": 0,
                   "queue_depth": 0, "uptime_s": 0, "status": 0}),
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
        for size in (codec.MAX_PAYLOAD, 300):
            try:
                sender_.seal("TEST_INJECT", {"op": 1, "data": bytes(size)})
            except messages.PayloadError:
                pass
            else:
                raise AssertionError("a %d-byte payload was sealed" % (size + 1))
    assert len(sender._buf) == codec.MAX_FRAME
    wire = sender.seal("TEST_INJECT", {"op": 1, "data": bytes(codec.MAX_PAYLOAD - 1)})
    assert len(codec.framing.cobs_decode(wire[:-1])) == codec.MAX_FRAME


def test_schema_hash_is_in_hello_and_stable():
    assert 0 <= messages.SCHEMA_HASH <= 0xFFFFFFFF
    # Changing the table changes the hash (SPEC 7): the hash covers the text of the table.
    assert messages.SCHEMA_HASH == messages.binascii.crc32(messages._schema_text().encode())
    assert "02:HEARTBEAT:up:>HBBBHIB" in messages._schema_text()
