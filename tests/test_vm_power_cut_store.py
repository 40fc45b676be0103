"""Issue 10: a power cut at every flash write N while the firmware, in the MicroPython VM on
its own littlefs, rotates its flash queue (segments fill, a new one starts, a fully acked one
is deleted) and saves a CONFIG. For every N: the image mounts, every record the firmware
reported stored (append returned) and did not see acked is still in the queue, an acked
record never comes back, and the saved config is the old one or the new one, never garbage.
The image is read back on the host (littlefs-python) with the firmware's own Queue and
load_config, as the next boot would."""
import os

import pytest

from host import flash_image
from host.deploy import device_files
from host.emulate import REPO
from host.emulator import World

from .vm import needs_micropython

pytestmark = [pytest.mark.micropython, needs_micropython]

SEGMENT_RECORDS = 4
RECORDS = 11
ACK_AFTER, ACKED = 6, (1, 2, 3, 4)   # the whole first segment: it is deleted
CONFIG_AFTER, CONFIG = 8, (7, {1: 600, 9: 2000})

WORK = """
from firmware import persist
from firmware.store import Queue
q = Queue("/queue", segment_records=%d)
print("ready")
for c in range(1, %d):
    q.append(c, c == 3, b"frame-%%d" %% c)
    print("stored", c)
    if c == %d:
        q.ack(%r)
        print("acked")
    if c == %d:
        persist.save_config("/state", %d, %r)
        print("config")
print("done")
""" % (SEGMENT_RECORDS, RECORDS + 1, ACK_AFTER, ACKED, CONFIG_AFTER, CONFIG[0], CONFIG[1])


def _run(cut_after):
    files = device_files(REPO)
    files["/main.py"] = WORK.encode()
    with World(seed=3) as world:
        dev = world.add_device(81, files=files, runtime="micropython")
        if cut_after is not None:
            dev.cut_power_after_flash_writes(cut_after)
        dev.power_on()
        world.run_until(30_000)
        lines = [line for _t, line in dev.log]
        return lines, dev.flash.image, list(dev.crashes)


def _read_back(image, tmp_path):
    """The queue and config as the next boot would load them (the firmware's own code)."""
    from firmware import persist
    from firmware.store import Queue

    fs = flash_image.mount(image)
    for path, is_dir, _size in flash_image.walk(fs):
        if path.startswith(("/queue", "/state")):
            local = tmp_path / path.lstrip("/")
            if is_dir:
                local.mkdir(parents=True, exist_ok=True)
            else:
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(flash_image.read_file(fs, path))
    queue = Queue(str(tmp_path / "queue"), segment_records=SEGMENT_RECORDS)
    live = {c: frame for c, _a, frame in queue.pending(limit=100)}
    config = persist.load_config(str(tmp_path / "state"))
    return live, config, sorted(os.listdir(tmp_path / "queue"))


def test_the_work_runs_in_full_without_a_cut():
    lines, _image, crashes = _run(None)
    assert "done" in lines and crashes == []


def test_every_cut_leaves_a_mountable_image_and_no_stored_record_lost(tmp_path_factory):
    segments_deleted = 0
    phases = set()
    n = 0
    while True:
        lines, image, crashes = _run(n)
        assert crashes == [], n
        live, config, names = _read_back(image, tmp_path_factory.mktemp("cut%d" % n))
        stored = [int(line.split()[1]) for line in lines if line.startswith("stored ")]
        acked = "acked" in lines
        for c in stored:
            if c in ACKED and ACK_AFTER in stored:
                continue                     # the ack had begun: retired or not, both right
            assert live.get(c) == b"frame-%d" % c, (n, c, sorted(live))
        if acked:
            assert not set(ACKED) & set(live), (n, sorted(live))
        assert set(live) <= set(range(1, RECORDS + 1)), n
        assert config in ((0, {}), CONFIG), (n, config)
        if "config" in lines:
            assert config == CONFIG, n
        if acked and "q00000000.seg" not in names:
            segments_deleted += 1
        if "done" in lines:
            break
        # where the cut fell: in the append of record k (k = last stored + 1), in the ack,
        # or in the config save
        last = stored[-1] if stored else 0
        if last == ACK_AFTER and not acked:
            phases.add("ack")
        elif last == CONFIG_AFTER and "config" not in lines:
            phases.add("config")
        else:
            phases.add(last + 1)
        n += 1
    # The sweep covered what it claims: cuts inside the append that starts a new segment
    # (record 5), inside the ack that deletes the first segment, and inside the config save.
    assert {SEGMENT_RECORDS + 1, "ack", "config"} <= phases, sorted(map(str, phases))
    assert n >= 20 and segments_deleted >= 1, (n, segments_deleted)
