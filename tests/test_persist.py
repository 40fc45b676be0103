"""Durable small state: codec, atomic files, the reserve-ahead counter, RTC memory."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import persist
from firmware.persist import MessageCounter, rtc_save, rtc_take
from host.keys import device_key_file_bytes

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.integers(0, 300) | st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@given(values)
def test_codec_round_trip(obj):
    assert persist.decode(persist.encode(obj)) == obj


@given(st.binary(max_size=64))
def test_decode_garbage_is_a_value_error_never_a_crash(data):
    try:
        persist.decode(data)
    except ValueError:
        pass


def test_encode_rejects_what_it_cannot_store():
    with pytest.raises(ValueError, match="64 bits"):
        persist.encode(1 << 64)
    with pytest.raises(ValueError, match="cannot store a float"):
        persist.encode(1.5)


@given(values, st.integers(0, 200), st.integers(0, 255))
@settings(max_examples=60)
def test_corrupt_file_falls_back_to_default(tmp_path_factory, obj, position, flip):
    path = str(tmp_path_factory.mktemp("f") / "x.bin")
    persist.write_file(path, obj)
    assert persist.read_file(path) == obj
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if flip and position < len(data):
        data[position] ^= flip
        with open(path, "wb") as f:
            f.write(bytes(data))
        assert persist.read_file(path, "default") == "default"
    with open(path, "wb") as f:
        f.write(bytes(data[: position % max(1, len(data))]))
    assert persist.read_file(path, "default") == "default"


def test_missing_file_gives_default(tmp_path):
    assert persist.read_file(str(tmp_path / "nope"), 7) == 7


class Rtc:
    def __init__(self):
        self.blob = b""

    def memory(self, data=None):
        if data is None:
            return self.blob
        self.blob = bytes(data)


class Sender:
    """Counts like protocol.codec.Sender over a MessageCounter: each counter is ensured
    (reserved on flash) before it is used."""

    def __init__(self, counter, exact=None):
        self.counter = counter
        self.next = counter.resume(exact)

    def take(self):
        used = self.next
        self.counter.ensure(used)
        self.next = used + 1
        return used


def test_counter_reserves_ahead_and_never_reuses_after_a_reboot(tmp_path):
    path = str(tmp_path / "state" / "counter.bin")
    writes = []
    real_write = persist.write_file

    def counting_write(p, obj):
        writes.append(obj)
        real_write(p, obj)

    persist.write_file = counting_write
    try:
        counter = Sender(MessageCounter(path, block=256))
        assert counter.next == 1
        used = [counter.take() for _ in range(600)]
        assert used == list(range(1, 601))
        assert writes == [257, 513, 769], "one flash write per block, not per frame"
        # power cut: RAM is gone, the file says 769
        counter = Sender(MessageCounter(path, block=256))
        assert counter.next == 769
        assert counter.take() == 769
    finally:
        persist.write_file = real_write


def test_counter_resumes_exactly_across_deep_sleep(tmp_path):
    path = str(tmp_path / "counter.bin")
    rtc = Rtc()
    counter = Sender(MessageCounter(path, block=16))
    for _ in range(5):
        counter.take()
    rtc_save(rtc, {"counter": counter.next})
    # deep sleep: a reset that keeps RTC memory
    state = rtc_take(rtc)
    counter = Sender(MessageCounter(path, block=16), state["counter"])
    assert counter.next == 6, "no block skipped"
    assert counter.take() == 6
    # a later watchdog reset must not reuse the stale blob
    assert rtc_take(rtc) is None
    assert MessageCounter(path, block=16).resume(None) == 17


def test_counter_never_goes_back_if_the_file_is_behind_rtc(tmp_path):
    path = str(tmp_path / "counter.bin")
    counter = Sender(MessageCounter(path, block=8), 1000)
    assert counter.next == 1000
    assert counter.take() == 1000
    assert MessageCounter(path, block=8).resume() == 1008


def test_counter_ensure_for_a_sender_that_counts_itself(tmp_path):
    path = str(tmp_path / "counter.bin")
    counter = MessageCounter(path, block=10)
    counter.ensure(1)
    assert counter.reserved == 11
    counter.ensure(10)
    assert counter.reserved == 11
    counter.ensure(11)
    assert MessageCounter(path, block=10).resume() == 21


def test_counter_space_exhausted_is_a_clear_error(tmp_path):
    counter = Sender(MessageCounter(str(tmp_path / "c.bin"), block=256), 0xFFFFFFFF)
    assert counter.take() == 0xFFFFFFFF
    with pytest.raises(ValueError, match="rotate the key"):
        counter.take()


@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=12))
@settings(max_examples=40)
def test_counter_model_across_reboots_and_deep_sleeps(tmp_path_factory, runs):
    """Each run takes n counters, then either deep-sleeps (RTC kept) or loses power."""
    path = str(tmp_path_factory.mktemp("c") / "counter.bin")
    rtc = Rtc()
    used = set()
    last = 0
    for n, deep_sleep in runs:
        state = rtc_take(rtc)
        counter = Sender(MessageCounter(path, block=8), state["counter"] if state else None)
        for _ in range(n):
            c = counter.take()
            assert c not in used and c > last
            used.add(c)
            last = c
        if deep_sleep:
            rtc_save(rtc, {"counter": counter.next})
            if state is not None and n == 0:
                assert counter.next == state["counter"]


def test_flash_state_defaults_and_round_trips(tmp_path):
    state_dir = str(tmp_path / "state")
    assert persist.load_config(state_dir) == (0, {})
    assert persist.bump_boot_count(state_dir) == 1     # the directory is made on the way
    assert persist.bump_boot_count(state_dir) == 2
    persist.save_config(state_dir, 3, [(1, 900), (2, 30)])
    assert persist.load_config(state_dir) == (3, {1: 900, 2: 30})
    assert persist.bump_boot_count(state_dir) == 3
    (tmp_path / "state" / "config.bin").write_bytes(b"VS garbage")
    (tmp_path / "state" / "boot.bin").write_bytes(persist._seal(b"VS", "not an int"))
    assert persist.load_config(state_dir) == (0, {})
    assert persist.bump_boot_count(state_dir) == 1


def test_write_file_makes_missing_directories(tmp_path):
    path = str(tmp_path / "a" / "b" / "x.bin")
    persist.write_file(path, [1, b"2"])
    assert persist.read_file(path) == [1, b"2"]


def test_keys_round_trip_and_reject_bad_keys(tmp_path):
    keys_dir = str(tmp_path / "keys")
    assert persist.load_keys(keys_dir) is None
    keys = {1: bytes(range(16)), 2: b"k" * 16}
    (tmp_path / "keys").mkdir()
    # the host writes the key file (host.keys), the device reads it (persist.load_keys)
    (tmp_path / "keys" / "device.key").write_bytes(device_key_file_bytes(0xC0FFEE, keys))
    assert persist.load_keys(keys_dir) == (0xC0FFEE, keys)
    persist.write_file(keys_dir + "/device.key", [0xC0FFEE, keys])  # the same file
    assert (tmp_path / "keys" / "device.key").read_bytes() == device_key_file_bytes(
        0xC0FFEE, keys
    )
    with pytest.raises(ValueError, match="16 bytes"):
        device_key_file_bytes(1, {1: b"short"})
    (tmp_path / "keys" / "device.key").write_bytes(b"\0" * 30)
    assert persist.load_keys(keys_dir) is None


def test_rtc_blob_round_trip_checksum_and_size_limit():
    rtc = Rtc()
    assert rtc_take(rtc) is None
    rtc_save(rtc, {"counter": 5, "alarm": [1, 2], "fixes": b"\x01\x02"})
    rtc.blob = rtc.blob[:-1] + bytes([rtc.blob[-1] ^ 1])
    assert rtc_take(rtc) is None, "a corrupted blob is ignored"
    rtc_save(rtc, {"counter": 5})
    assert rtc_take(rtc) == {"counter": 5}
    with pytest.raises(ValueError, match="RTC memory holds 2040"):
        rtc_save(rtc, {"big": bytes(3000)})
