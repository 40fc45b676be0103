"""Streams, faults and state: random chunking with noise and log text, mutation fuzzing,
replay and wrong-key rejection, the replay window, and counters across reboots (SPEC 2, 3, 4)."""
import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from firmware import persist
from protocol import codec, host_fast, host_reference, host_tables
from tests.test_protocol_roundtrip import KEY, messages_st

UP_NAMES = ("HELLO", "HEARTBEAT", "POSITION", "NO_FIX", "ALARM", "EVENT", "ACK")
DEVICE = 0x0A0B0C0D


def _pair(downlink=False, check_replay=True):
    portable = codec.Keyring()
    portable.add(DEVICE, 1, KEY)
    fast = host_fast.Keyring()
    fast.add(DEVICE, 1, KEY)
    return (codec.Receiver(portable, downlink=downlink, check_replay=check_replay),
            host_fast.FastReceiver(fast, downlink=downlink, check_replay=check_replay))


def _describe(item):
    if isinstance(item, codec.FrameError):
        return ("error", item.reason)
    return ("frame", item.name, item.counter, item.raw)


# Noise without 0x00 merges into the next block, so a sender sharing its line with text puts
# one 0x00 before each frame (SPEC 2.3); noise and text then cost nothing but their own items.
noise = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\x00", b"\x01"))
log_text = st.sampled_from([b"I (1234) vigil: boot ok\r\n", b"Traceback (most recent call",
                            b"\r\n>>> ", b"W (99) gnss: no fix\n"])


@given(st.lists(messages_st(UP_NAMES), min_size=1, max_size=8),
       st.lists(st.none() | noise | log_text, min_size=8, max_size=8),
       st.lists(st.integers(1, 64), min_size=1, max_size=30))
def test_stream_with_chunking_noise_and_log_text(msgs, gaps, chunk_sizes):
    sender = codec.Sender(DEVICE, 1, KEY)
    stream = b""
    wires = []
    for (name, fields, _), gap in zip(msgs, gaps, strict=False):
        wire = sender.seal(name, fields)
        wires.append(wire)
        stream += (gap or b"") + b"\x00" + wire
    for receiver in _pair():
        items = []
        position = 0
        chunk = 0
        while position < len(stream):
            size = chunk_sizes[chunk % len(chunk_sizes)]
            items += receiver.feed(stream[position:position + size])
            position += size
            chunk += 1
        frames = [i for i in items if isinstance(i, codec.Frame)]
        assert [f.raw for f in frames] == [codec.framing.cobs_decode(w[:-1]) for w in wires]
        assert [f.fields for f in frames] == [m[1] for m in msgs]
        errors = [i.reason for i in items if isinstance(i, codec.FrameError)]
        assert set(errors) <= {"bad_cobs", "truncated", "bad_crc", "bad_version",
                               "unknown_type", "unknown_key", "bad_tag", "oversize"}


def _mutate(wire, data):
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
    body = bytearray(wire)
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(body) - 1))
            body[index] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        body = body[:data.draw(st.integers(0, len(body) - 1))] + b"\x00"
    elif kind == "insert":
        index = data.draw(st.integers(0, len(body)))
        body[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    elif kind == "delete":
        index = data.draw(st.integers(0, len(body) - 2))
        del body[index:index + data.draw(st.integers(1, 8))]
    else:
        body += data.draw(st.binary(max_size=300))
    return bytes(body)


@given(messages_st(UP_NAMES), st.data())
def test_mutations_yield_documented_errors_and_no_forgery(message, data):
    name, fields, _ = message
    wire = codec.Sender(DEVICE, 1, KEY).seal(name, fields, counter=7)
    original = codec.framing.cobs_decode(wire[:-1])
    mutated = _mutate(wire, data)
    portable, fast = _pair(check_replay=False)
    results = []
    for receiver in (portable, fast):
        items = receiver.feed(mutated) + receiver.feed(b"\x00")
        for item in items:
            if isinstance(item, codec.FrameError):
                assert item.reason in host_tables.REASONS
            else:  # accepted: then it is the authentic frame, unchanged
                assert item.raw == original and item.fields == fields
        results.append([_describe(i) for i in items])
    assert results[0] == results[1]
    for block in mutated.split(b"\x00"):
        if not block or len(block) > host_tables.MAX_WIRE - 1:
            continue
        try:
            decoded = host_reference.decode_frame(block, {(DEVICE, 1): KEY})
        except host_reference.Refused as refused:
            assert refused.reason in host_tables.REASONS
        else:
            assert decoded["fields"] == fields and decoded["counter"] == 7


@given(st.binary(max_size=600))
def test_random_bytes_never_raise_and_agree(data):
    portable, fast = _pair()
    a = [_describe(i) for i in portable.feed(data) + portable.feed(b"\x00")]
    b = [_describe(i) for i in fast.feed(data) + fast.feed(b"\x00")]
    assert a == b
    assert all(kind == "error" for kind, *_ in a)


@given(messages_st(UP_NAMES))
def test_replayed_and_wrong_key_frames_are_rejected(message):
    name, fields, _ = message
    wire = codec.Sender(DEVICE, 1, KEY).seal(name, fields)
    forged = codec.Sender(DEVICE, 1, bytes(16)).seal(name, fields)
    for receiver in _pair():
        [first] = receiver.feed(wire)
        assert isinstance(first, codec.Frame)
        [again] = receiver.feed(wire)
        assert again.reason == "replayed"
        assert again.frame.raw == first.raw  # acked again, delivered once
        [wrong] = receiver.feed(forged)
        assert wrong.reason == "bad_tag"


@given(st.permutations(list(range(1, 41))), st.integers(0, 10**6))
def test_window_accepts_reordered_frames_exactly_once(order, base):
    sender = codec.Sender(DEVICE, 1, KEY)
    fields = {"kind": 1, "time_ms": 0, "value": 0}
    wires = {c: sender.seal("EVENT", fields, 0, base + c) for c in order}
    for receiver in _pair():
        accepted = []
        for counter in order + order[:5]:
            [item] = receiver.feed(wires[counter])
            if isinstance(item, codec.Frame):
                accepted.append(item.counter)
            else:
                assert item.reason == "replayed"
        assert sorted(accepted) == [base + c for c in range(1, 41)]


def test_window_edges():
    window = codec.ReplayWindow()
    assert not window.seen(1)
    window.accept(100)
    assert window.seen(100)
    assert not window.seen(36) and not window.seen(99)  # 64 below highest: still tracked
    assert window.seen(35)  # 65 below: too old, refused as a replay
    window.accept(36)
    assert window.seen(36)
    window.accept(200)  # a jump past the window forgets everything below it
    assert window.bitmap == 0 and window.seen(100) and not window.seen(199)


@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["reboot", "deepsleep"])),
                min_size=1, max_size=8))
def test_counters_survive_reboots_and_deep_sleep_without_reuse(runs):
    """The firmware's own reserve-ahead counter (firmware/persist.MessageCounter, a real
    file) across resets (a new MessageCounter from the file) and deep sleeps (the exact
    counter kept in RTC memory)."""
    block = 16
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state", "counter.bin")
        rtc_counter = None  # RTC memory: kept across deep sleep, lost on a reset
        receivers = _pair()
        seen = []
        writes = 0
        for frames, how_it_ends in runs:
            counter = persist.MessageCounter(path, block=block)  # a boot reads the file
            start = counter.resume(rtc_counter)
            sender = codec.Sender(DEVICE, 1, KEY, counter=start)
            for _ in range(frames):
                before = counter.reserved
                counter.ensure(sender.counter)  # persist before the counter is used
                writes += counter.reserved != before
                wire = sender.seal("HEARTBEAT", {"battery_mv": 4000, "battery_pct": 90,
                                                 "charging": 0, "link_quality": 50,
                                                 "queue_depth": 0, "uptime_s": 1,
                                                 "status": 0, "mode": 1,
                                                 "interval_s": 900})
                for receiver in receivers:
                    [frame] = receiver.feed(wire)
                    assert isinstance(frame, codec.Frame), frame
                seen.append(frame.counter)
            rtc_counter = sender.counter if how_it_ends == "deepsleep" else None
        assert seen == sorted(set(seen))  # strictly increasing: never reused
        assert writes <= len(seen) // block + 2 * len(runs)


@given(messages_st())
def test_a_sender_on_the_rings_keys_seals_the_same_bytes(msg):
    # The device shares one key derivation between its Sender and its Keyring.
    name, fields, downlink = msg
    ring = codec.Keyring()
    ring.add(DEVICE, 1, KEY)
    shared = codec.Sender(DEVICE, 1, ring[(DEVICE, 1)], downlink=downlink)
    own = codec.Sender(DEVICE, 1, KEY, downlink=downlink)
    assert shared.seal(name, fields, counter=9) == own.seal(name, fields, counter=9)
