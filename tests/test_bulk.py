"""host/recording/bulk.py, the batch decoder of bench/recording.py, gives the same frames and
fields as the per-frame FastReceiver (replay window off) on the golden sessions and on
corrupted copies of them."""
import random
from pathlib import Path

import numpy as np
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


@pytest.mark.parametrize("path", GOLDEN[:1], ids=lambda p: p.stem)
def test_decode_file_mapped_and_split_matches_the_list_decoder(path, monkeypatch):
    store = _keys(path)
    _times, datas = bulk.read_frames(str(path))
    want = bulk.decode(datas, store)
    monkeypatch.setattr(bulk, "BATCH", 64)  # many batches, and worth splitting
    for workers in (1, 2):
        got = bulk.decode_file(str(path), store, workers=workers)
        assert (got.frames, got.valid, got.refused) == (want.frames, want.valid, want.refused)
        assert len(got.cpu_s) == (2 if workers == 2 else 0)
        assert all(got.fields(i) == want.fields(i) for i in range(len(datas)))
        for group in got.groups.values():  # rows in frame order
            assert (np.diff(group["index"]) > 0).all()


def test_block_walk_in_numpy_falls_back_when_packet_bytes_look_like_a_block():
    word = np.array([6, 40, 6, 12, 12, 0, 0, 0, 0, 40], dtype="<u4")  # a fake block at 2
    assert bulk._block_starts(word).tolist() == bulk.walk_blocks(word).tolist() == [0]
    for path in GOLDEN:
        word = np.frombuffer(path.read_bytes(), dtype="<u4")
        fast = bulk._block_starts(word)
        assert fast.tolist() == bulk.walk_blocks(word).tolist() and len(fast) > 100


def test_a_truncated_recording_goes_through_the_reader_and_its_one_line_error(tmp_path):
    from host.recording import RecordingError

    data = GOLDEN[0].read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:len(data) // 2 + 3])
    assert bulk.frame_spans(cut.read_bytes()) is None
    with pytest.raises(RecordingError) as error:
        bulk.decode_file(str(cut), _keys(GOLDEN[0]))
    assert "\n" not in str(error.value)


def test_every_sealed_size_and_its_tag_reach_a_whole_aes_block():
    # bulk.py takes each sealed part with the bytes after it up to a whole block, out of the
    # tag and CRC (10 bytes): a new sealed size must keep that true, or bulk.py must pad.
    for size in codec.SEALED_SIZES:
        assert ((size + 15) >> 4 << 4) - size <= 10, size
