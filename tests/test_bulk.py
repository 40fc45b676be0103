"""host/recording/bulk.py, the batch decoder of bench/recording.py, gives the same frames and
fields as the per-frame FastReceiver (replay window off) on the golden sessions and on
corrupted copies of them."""
import random
from pathlib import Path

import pytest

from host import scenario as scenarios
from host.recording import Reader, bulk, emu
from protocol import codec, host_fast

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.pcapng"))


def _keys(path):
    meta = Reader(str(path)).meta
    return emu.session_keys(scenarios.load(meta["scenario_source"]), meta["seed"])


def _reference(datas, store):
    ring = host_fast.Keyring()
    for device_id in store.devices():
        for key_id in store.key_ids(device_id):
            ring.add(device_id, key_id, store.get(device_id, key_id))
    receivers = {d: host_fast.FastReceiver(ring, downlink=d, check_replay=False)
                 for d in (False, True)}
    out = {}
    for i, data in enumerate(datas):
        block = data[:-1] if data.endswith(b"\x00") else data
        body = b""
        try:
            from cobs.cobs import decode as cobs_decode

            body = cobs_decode(block)
        except Exception:
            pass
        try:
            frame = receivers[len(body) > 1 and body[1] == 1].open(block)
        except codec.FrameError:
            continue
        out[i] = frame.fields
    return out


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_bulk_matches_the_per_frame_decoder(path):
    store = _keys(path)
    _times, datas = bulk.read_frames(str(path))
    rng = random.Random(path.stem)
    damaged = []
    for data in datas:  # and a copy with every tenth frame damaged somewhere
        data = bytearray(data)
        if rng.random() < 0.1 and len(data) > 2:
            data[rng.randrange(len(data) - 1)] ^= 1 << rng.randrange(8)
        damaged.append(bytes(data))
    for frames in (datas, damaged):
        want = _reference(frames, store)
        result = bulk.decode(frames, store)
        assert result.frames == len(frames)
        assert result.valid == len(want)
        assert result.valid + sum(result.refused.values()) == len(frames)
        for i, fields in want.items():
            assert result.fields(i) == fields, i
    assert len(want) > 100
