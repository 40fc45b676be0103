"""The store-and-forward queue on the real MicroPython VM, on littlefs, with power cuts.

A RAM block device with 4096-byte blocks stops writing after N block operations (writes and
erases), optionally tearing the write it stops at in half. For every N across an append, a
segment rotation, an ack that deletes a segment and a further append, the filesystem is
remounted and checked: it mounts, every append that returned before the cut is still there (unless an ack was asked for it),
every ack that returned before the cut is still acked, and no record differs from what was
written. All N run inside one VM process.
"""


import pytest

from tests.vm import CUT_BLOCK_DEVICE, device_lib, needs_micropython, run_micropython

pytestmark = [pytest.mark.micropython, needs_micropython]

CUT_SCRIPT = CUT_BLOCK_DEVICE + r"""
from firmware.store import Queue

def frame(c):
    return bytes([c & 0xFF]) * (20 + c % 50)

dev = CutDevice(48)
os.VfsLfs2.mkfs(dev)
os.mount(os.VfsLfs2(dev), '/fl')
q = Queue('/fl/queue', capacity_records=100, segment_records=4)
for c in (1, 2, 3):
    q.append(c, c == 2, frame(c))
os.umount('/fl')
base = bytes(dev.d)

STEPS = (('a', 4), ('a', 5), ('k', (1, 2, 3, 4)), ('a', 6), ('k', (5,)), ('a', 7))
# Partial acks: records acked one batch at a time, so that the batch which empties a segment
# (and deletes its .seg and .ack files) comes after acks that returned: a cut between the two
# deletes must not bring those back. The ack of (3, 4, 5) spans the rotated segments.
PARTIAL = (('k', (1,)), ('a', 4), ('k', (2,)), ('a', 5), ('k', (3, 4, 5)), ('a', 6),
           ('k', (6,)), ('a', 7))

def scenario(q, done_appends, done_acks, tried_acks):
    # append fills the segment, the next one rotates, the ack deletes the first segment
    for step in STEPS:
        if step[0] == 'a':
            q.append(step[1], False, frame(step[1]))
            if not dev.cut:
                done_appends.append(step[1])
        else:
            tried_acks.extend(step[1])
            q.ack(step[1])
            if not dev.cut:
                done_acks.extend(step[1])

def check(n, torn):
    dev.d[:] = base
    dev.left = -1; dev.cut = False; dev.torn = torn; dev.ops = 0
    os.mount(os.VfsLfs2(dev), '/fl')
    q = Queue('/fl/queue', capacity_records=100, segment_records=4)
    dev.left = n
    appends = [1, 2, 3]
    acks = []
    tried_acks = []
    try:
        scenario(q, appends, acks, tried_acks)
    except OSError:
        # after the cut littlefs reads back what it never wrote and may give up: the CPU
        # would have stopped long before, so only errors before the cut are failures
        if not dev.cut:
            raise
    ops = dev.ops
    os.umount('/fl')
    dev.left = -1
    os.mount(os.VfsLfs2(dev), '/fl')  # must mount after the cut
    q = Queue('/fl/queue', capacity_records=100, segment_records=4)
    got = q.pending(100)
    counters = [r[0] for r in got]
    for c, alarm, data in got:
        assert data == frame(c), ('corrupt', n, torn, c)
        assert alarm == (c == 2), ('flag', n, torn, c)
    for c in appends:
        # an ack cut short may have retired part of its batch
        assert c in counters or c in tried_acks, ('lost', n, torn, c, counters)
    for c in acks:
        assert c not in counters, ('unacked', n, torn, c, counters)
    assert counters == sorted(counters), ('order', n, torn, counters)
    assert len(q) == len(counters)
    q.append(100, True, frame(100))  # the filesystem still takes writes
    assert Queue('/fl/queue', 100, 4).pending(100)[-1][0] == 100
    os.umount('/fl')
    return ops

cases = 0
totals = []
for steps in (STEPS, PARTIAL):
    total = check(-1, False)
    totals.append(total)
    for torn in (False, True):
        for n in range(total + 1):
            check(n, torn)
            cases += 1
    STEPS = PARTIAL
print('OK', totals[0], totals[1], cases)
"""


def test_power_cut_at_every_block_write_on_littlefs(tmp_path):
    lib = device_lib(tmp_path, compiled=True)
    result = run_micropython(CUT_SCRIPT, heapsize="2M", path=[lib], timeout_s=120)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    words = out.split()
    assert words[0] == "OK", out
    whole_ops, partial_ops, cases = int(words[1]), int(words[2]), int(words[3])
    assert min(whole_ops, partial_ops) >= 10, "each scenario should span many block operations"
    assert cases == 2 * (whole_ops + 1) + 2 * (partial_ops + 1)


def test_the_power_cut_sweep_catches_an_ack_file_deleted_before_its_segment(tmp_path):
    """Mutation check: a queue that deletes a segment's .ack before its .seg can resurrect
    acked records when power is cut between the two deletes; the partial-ack sweep sees it."""
    lib = device_lib(tmp_path, compiled=False)
    store = lib / "firmware" / "store.py"
    source = store.read_text()
    good = 'for kind in ("seg", "ack"):'
    assert good in source
    store.write_text(source.replace(good, 'for kind in ("ack", "seg"):'))
    result = run_micropython(CUT_SCRIPT, heapsize="2M", path=[lib], timeout_s=120)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode != 0 and "unacked" in out, out


HEAP_SCRIPT = r"""
import gc, os
from firmware.store import Queue
root = ROOT
q = Queue(root, capacity_records=300, segment_records=32)
evicted = 0
for c in range(1, 401):
    evicted += q.append(c, c % 50 == 0, b'x' * 120)
assert evicted == 100, evicted
assert q.evicted_total == 100
assert len(q) == 300 and q.alarm_count == 8
q.ack(range(101, 201))
q = Queue(root, capacity_records=300, segment_records=32)
got = []
while True:
    page = q.pending(25, exclude=set(got))  # pages: 300 frames would not fit in 48K at once
    if not page:
        break
    got.extend(r[0] for r in page)
want = [50, 100] + list(range(201, 401))
assert got == want, got[:5]
gc.collect()
print('OK', gc.mem_alloc())
"""


def test_queue_runs_in_48k_heap(tmp_path):
    lib = device_lib(tmp_path, compiled=True)
    root = tmp_path / "q"
    result = run_micropython(HEAP_SCRIPT.replace("ROOT", repr(str(root))), path=[lib])
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.startswith("OK"), out


def test_ten_thousand_records_fit_in_heap(tmp_path):
    lib = device_lib(tmp_path, compiled=True)
    root = tmp_path / "q"
    script = (
        "import gc\nfrom firmware.store import Queue\n"
        "q = Queue(%r, capacity_records=10000)\n"
        "for c in range(10000):\n    q.append(c, c %% 100 == 0, b'p' * 40)\n"
        "q = None\ngc.collect()\nbase = gc.mem_alloc()\n"
        "q = Queue(%r, capacity_records=10000)\ngc.collect()\n"
        "assert len(q) == 10000 and q.alarm_count == 100\n"
        "assert q.append(10000, False, b'n') == 1\n"
        "print('OK', gc.mem_alloc() - base)\n" % (str(root), str(root))
    )
    result = run_micropython(script, path=[lib], timeout_s=120)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.startswith("OK"), out
    assert int(out.split()[1]) < 24 * 1024, "queue index should stay small: " + out
