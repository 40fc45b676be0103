"""The store-and-forward queue on CPython: a hypothesis state machine against a list model,
torn tails on a plain directory, and the same code on a littlefs image (littlefs-python)."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from firmware.store import Queue

CAPACITY = 7
SEGMENT = 3


def frame(counter):
    return bytes([counter & 0xFF, 0x5A]) * (1 + counter % 40)


class QueueMachine(RuleBasedStateMachine):
    """Model: a list of live (counter, is_alarm) in append order."""

    @initialize(root=st.just(None))
    def start(self, root):
        import tempfile

        self.root = tempfile.mkdtemp(prefix="vigil-queue-")
        self.queue = Queue(self.root, CAPACITY, SEGMENT)
        self.model = []
        self.next_counter = 1
        self.evicted = 0

    def teardown(self):
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)

    @rule(is_alarm=st.booleans())
    def append(self, is_alarm):
        counter = self.next_counter
        self.next_counter += 1
        expected = 0
        if len(self.model) >= CAPACITY:
            routine = [r for r in self.model if not r[1]]
            if routine:
                self.model.remove(routine[0])
                expected = 1
            elif not is_alarm:
                expected = 1
                counter = None
        if counter is not None:
            self.model.append((counter, is_alarm))
        self.evicted += expected
        assert self.queue.append(self.next_counter - 1, is_alarm, frame(self.next_counter - 1)) == expected

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def ack_some(self, data):
        live = [r[0] for r in self.model]
        chosen = data.draw(st.lists(st.sampled_from(live), max_size=4, unique=True))
        stray = data.draw(st.lists(st.integers(0, self.next_counter + 3), max_size=2))
        stray = [c for c in stray if c not in live]  # acked before, evicted or never sent
        assert self.queue.ack(chosen + stray) == len(chosen)
        self.model = [r for r in self.model if r[0] not in chosen]

    @rule()
    def reload(self):
        self.queue = Queue(self.root, CAPACITY, SEGMENT)
        self.evicted = 0

    @invariant()
    def matches_model(self):
        got = self.queue.pending(100)
        assert [(c, a) for c, a, _ in got] == self.model
        assert all(f == frame(c) for c, _, f in got)
        assert len(self.queue) == len(self.model)
        assert self.queue.alarm_count == sum(1 for r in self.model if r[1])
        assert self.queue.evicted_total == self.evicted
        alarms_first = self.queue.pending(100, alarms_first=True)
        assert [c for c, _, _ in alarms_first] == [r[0] for r in self.model if r[1]] + [
            r[0] for r in self.model if not r[1]
        ]

    @invariant()
    def acked_segments_are_deleted(self):
        segs = [n for n in os.listdir(self.root) if n.endswith(".seg")]
        assert len(segs) <= len(self.model) + 1, "every older segment holds a live record"


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


def test_alarms_are_never_evicted_even_above_capacity(tmp_path):
    q = Queue(str(tmp_path), capacity_records=3, segment_records=2)
    for c in range(1, 6):
        assert q.append(c, True, b"alarm") == 0
    assert len(q) == 5 and q.alarm_count == 5
    assert q.append(6, False, b"routine") == 1, "a routine record gives way to alarms"
    assert q.evicted_total == 1
    assert [r[0] for r in q.pending(10)] == [1, 2, 3, 4, 5]


def test_get_one_record(tmp_path):
    q = Queue(str(tmp_path), 100, 4)
    for c in range(10, 20):
        q.append(c, c == 15, frame(c))
    assert q.get(15) == (True, frame(15))
    assert q.get(11) == (False, frame(11))
    q.ack([11])
    assert q.get(11) is None and q.get(99) is None
    assert Queue(str(tmp_path), 100, 4).get(18) == (False, frame(18))


def test_pending_limit_and_exclude(tmp_path):
    q = Queue(str(tmp_path), 100, 4)
    for c in range(10, 20):
        q.append(c, c == 15, frame(c))
    assert [r[0] for r in q.pending(3)] == [10, 11, 12]
    assert [r[0] for r in q.pending(3, exclude={10, 12})] == [11, 13, 14]
    assert [r[0] for r in q.pending(2, alarms_first=True)] == [15, 10]


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 20, -4, -1])
def test_torn_tail_is_ignored_and_the_segment_sealed(tmp_path, cut):
    q = Queue(str(tmp_path), 100, 8)
    for c in range(1, 4):
        q.append(c, False, frame(c))
    seg = tmp_path / "q00000000.seg"
    intact = seg.read_bytes()
    q.append(4, True, frame(4))
    whole = seg.read_bytes()
    torn = whole[: len(intact) + (cut if cut > 0 else len(whole) - len(intact) + cut)]
    seg.write_bytes(torn)  # the fourth append never returned
    q = Queue(str(tmp_path), 100, 8)
    assert [(c, f) for c, _, f in q.pending(10)] == [(c, frame(c)) for c in (1, 2, 3)]
    q.append(5, False, frame(5))
    q = Queue(str(tmp_path), 100, 8)
    assert [r[0] for r in q.pending(10)] == [1, 2, 3, 5]
    assert (tmp_path / "q00000001.seg").exists(), "appends after a torn tail go to a new segment"


def test_flipped_byte_in_tail_record_is_never_returned(tmp_path):
    q = Queue(str(tmp_path), 100, 8)
    q.append(1, False, frame(1))
    q.append(2, False, frame(2))
    seg = tmp_path / "q00000000.seg"
    data = bytearray(seg.read_bytes())
    data[-6] ^= 0x40
    seg.write_bytes(bytes(data))
    assert [r[0] for r in Queue(str(tmp_path), 100, 8).pending(10)] == [1]


def test_torn_ack_entry_keeps_the_record(tmp_path):
    q = Queue(str(tmp_path), 100, 8)
    q.append(1, False, frame(1))
    q.append(2, False, frame(2))
    q.ack([1, 2])
    ack = tmp_path / "q00000000.ack"
    ack.write_bytes(ack.read_bytes()[:-3])
    assert [r[0] for r in Queue(str(tmp_path), 100, 8).pending(10)] == [2]


def test_orphan_ack_file_is_removed_and_full_segment_deleted(tmp_path):
    q = Queue(str(tmp_path), 100, 2)
    for c in (1, 2, 3):
        q.append(c, False, frame(c))
    q.ack([1, 2])
    assert not (tmp_path / "q00000000.seg").exists()
    (tmp_path / "q00000007.ack").write_bytes(b"\0" * 8)
    q = Queue(str(tmp_path), 100, 2)
    assert not (tmp_path / "q00000007.ack").exists()
    assert [r[0] for r in q.pending(10)] == [3]


def test_bad_arguments_are_one_line_errors(tmp_path):
    q = Queue(str(tmp_path))
    with pytest.raises(ValueError, match="frame length 251"):
        q.append(1, False, bytes(251))
    with pytest.raises(ValueError, match="counter"):
        q.append(-1, False, b"x")
    with pytest.raises(ValueError, match="capacity_records"):
        Queue(str(tmp_path), capacity_records=0)


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 250)), max_size=30))
@settings(max_examples=25, deadline=None)
def test_reload_round_trip(tmp_path_factory, records):
    root = str(tmp_path_factory.mktemp("q"))
    q = Queue(root, 1000, 5)
    for i, (alarm, size) in enumerate(records):
        q.append(i, alarm, bytes([i & 0xFF]) * size)
    got = Queue(root, 1000, 5).pending(1000)
    assert got == [(i, a, bytes([i & 0xFF]) * s) for i, (a, s) in enumerate(records)]


def test_queue_on_a_littlefs_image_mounted_on_the_host(tmp_path):
    """The same module, over littlefs-python: the image the emulator boots from."""
    littlefs = pytest.importorskip("littlefs")
    fs = littlefs.LittleFS(block_size=4096, block_count=64)

    class LfsOs:
        """Enough of `os` for the queue, backed by littlefs-python."""

        def listdir(self, path):
            return fs.listdir(path)

        def stat(self, path):
            try:
                return fs.stat(path)
            except littlefs.errors.LittleFSError as e:
                raise OSError(2, str(e)) from None

        def mkdir(self, path):
            fs.mkdir(path)

        def remove(self, path):
            fs.remove(path)

    import firmware.persist as persist
    import firmware.store as store

    real_os, real_open = store.os, getattr(store, "open", None)
    store.os = persist.os = LfsOs()  # persist.makedirs makes the queue's directory

    def lfs_open(path, mode="r"):
        if "a" in mode:  # littlefs-python's append mode does not create the file
            try:
                fs.stat(path)
            except littlefs.errors.LittleFSError:
                fs.open(path, "wb").close()
        return fs.open(path, mode)

    store.open = lfs_open
    try:
        q = Queue("/queue", 100, 4)
        for c in range(1, 11):
            q.append(c, c == 3, frame(c))
        q.ack(range(1, 6))
        q = Queue("/queue", 100, 4)
        assert [r[0] for r in q.pending(20)] == [6, 7, 8, 9, 10]
        assert sorted(fs.listdir("/queue"))[0] == "q00000001.ack"
    finally:
        store.os = persist.os = real_os
        if real_open is None:
            del store.open
        else:
            store.open = real_open
