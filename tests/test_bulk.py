"""host/recording/bulk.py, the batch decoder of bench/recording.py, gives the same frames and
fields as the per-frame FastReceiver (replay window off) on the golden sessions and on
corrupted copies of them."""
import random
from pathlib import Path

import numpy as np
import pytest

from host import scenario as scenarios
from host.recording import Reader, blocks, bulk, emu
from protocol import codec, host_fast

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.pcapng"))


def _keys(path):
    meta = Reader(str(path)).meta
    return emu.session_keys(scenarios.load(meta["scenario_source"]), meta["seed"])


def _receivers(store):
    """FastReceiver for each direction, holding every key of the store, no replay check."""
    ring = host_fast.Keyring()
    for device_id in store.devices():
        for key_id in store.key_ids(device_id):
            ring.add(device_id, key_id, store.get(device_id, key_id))
    return {d: host_fast.FastReceiver(ring, downlink=d, check_replay=False)
            for d in (False, True)}


def _reference(datas, store):
    receivers = _receivers(store)
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
    assert blocks.block_starts(word).tolist() == blocks.walk_blocks(word).tolist() == [0]
    for path in GOLDEN:
        word = np.frombuffer(path.read_bytes(), dtype="<u4")
        fast = blocks.block_starts(word)
        assert fast.tolist() == blocks.walk_blocks(word).tolist() and len(fast) > 100


def test_a_truncated_recording_goes_through_the_reader_and_its_one_line_error(tmp_path):
    from host.recording import RecordingError

    data = GOLDEN[0].read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:len(data) // 2 + 3])
    assert blocks.frame_spans(cut.read_bytes()) is None
    with pytest.raises(RecordingError) as error:
        bulk.decode_file(str(cut), _keys(GOLDEN[0]))
    assert "\n" not in str(error.value)


def test_every_sealed_size_and_its_tag_reach_a_whole_aes_block():
    # bulk.py takes each sealed part with the bytes after it up to a whole block, out of the
    # tag and CRC (10 bytes): a new sealed size must keep that true, or bulk.py must pad.
    for size in codec.SEALED_SIZES:
        assert ((size + 15) >> 4 << 4) - size <= 10, size


def _reference_reasons(datas, store):
    """Each refused frame's reason from FastReceiver, in bulk.py's words (it folds a few
    together: no COBS, too short or too long is "framing"; a bad version or a frame too
    short for a sealed part after a good CRC is "bad_version_or_truncated")."""
    from cobs.cobs import decode as cobs_decode

    receivers = _receivers(store)
    reasons = {}
    for data in datas:
        block = data[:-1] if data.endswith(b"\x00") else data
        try:
            body = cobs_decode(block)
        except Exception:  # noqa: BLE001 - not COBS: the receiver refuses it too
            body = b""
        try:
            receivers[len(body) > 1 and body[1] == 1].open(block)
            continue
        except codec.FrameError as e:
            reason = e.reason
        if reason in ("bad_cobs", "oversize") or (reason == "truncated" and len(body) < 22):
            reason = "framing"
        elif reason in ("bad_version", "truncated"):
            reason = "bad_version_or_truncated"
        elif reason not in ("bad_crc", "unknown_key", "bad_tag"):
            reason = "later"  # routing, type, padding, payload: bulk.py words these its own way
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def _reframe(data, store, rng):
    """A frame with a good CRC (and, for some, a good tag) but something else wrong: its
    version, its length (cut short), its counter (0) or its direction byte."""
    from binascii import crc_hqx

    from cobs.cobs import decode as cobs_decode
    from cobs.cobs import encode as cobs_encode

    body = bytearray(cobs_decode(data[:-1]))
    what = rng.randrange(4)
    if what == 0:
        body[0] = 3
    elif what == 1:
        body = body[:rng.randrange(22, 53)]
    elif what == 2:
        body[7:11] = bytes(4)
    else:
        body[1] = 2
    if what >= 2:
        keys = host_fast.FastKeys(store.get(int.from_bytes(body[3:7], "big"), body[2]))
        body[-10:-2] = keys.tag(bytes(body[:-10]))
    body[-2:] = crc_hqx(bytes(body[:-2]), 0xFFFF).to_bytes(2, "big")
    return cobs_encode(bytes(body)) + b"\x00"


def test_bulk_matches_the_reference_on_truncated_corrupt_and_wrong_key_frames():
    from host.keys import KeyStore

    path = GOLDEN[0]
    store = _keys(path)
    _times, datas = bulk.read_frames(str(path))
    rng = random.Random(13)
    wrong = KeyStore()  # every key replaced
    for device_id in store.devices():
        for key_id in store.key_ids(device_id):
            wrong.add(device_id, key_id, rng.randbytes(16))
    frames = []
    for data in datas[:400]:
        cut = rng.randrange(1, len(data) - 1)
        frames += [
            data,
            data[:cut] + b"\x00",  # truncated
            data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:],  # a CRC byte only
            data[:cut] + b"\x00" + data[cut:],  # a zero inside: two blocks, neither whole
            data[:cut] + bytes([data[cut] ^ 1 << rng.randrange(8)]) + data[cut + 1:],
            bytes(rng.randrange(1, 256) for _ in range(rng.randrange(0, 300))) + b"\x00",
        ]
    frames += [b"\x00", b"\xff" * 250 + b"\x00", b"\x01" * 30 + b"\x00"]
    frames += [_reframe(data, store, rng) for data in datas[:60]]
    seen = set()
    for keys in (store, wrong, KeyStore()):  # right keys, wrong keys, none
        want = _reference(frames, keys)
        reasons = _reference_reasons(frames, keys)
        seen.update(reasons)
        got = bulk.decode(frames, keys)
        assert got.frames == len(frames) and got.valid == len(want)
        assert all(got.fields(i) == fields for i, fields in want.items())
        assert all(got.fields(i) is None for i in range(len(frames)) if i not in want)
        later = dict(got.refused)
        for reason in ("framing", "bad_crc", "bad_version_or_truncated", "unknown_key",
                       "bad_tag"):
            assert later.pop(reason, 0) == reasons.get(reason, 0), reason
        assert sum(later.values()) == reasons.get("later", 0)
    assert seen == {"framing", "bad_crc", "bad_version_or_truncated", "unknown_key", "bad_tag",
                    "later"}


def test_signed_parts_are_cut_exactly_whatever_the_gaps():
    rng = random.Random(5)
    buf = rng.randbytes(300_000)
    at, size, place = [], [], 0
    for gap in (0, 1, 9, 250, 99_999, 3, 0, 100_000):  # adjacent spans, long stretches
        place += gap
        n = rng.randrange(1, 241)
        at.append(place)
        size.append(n)
        place += n
    got = bulk._slices(buf, np.array(at, dtype=np.int64), np.array(size, dtype=np.int64))
    assert list(got) == [buf[a:a + n] for a, n in zip(at, size, strict=True)]
