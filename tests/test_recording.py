"""host/recording: the pcapng writer and reader (construct declarations vs the fast path),
truncated and corrupt files, bounded reading."""
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.recording import (
    LINKTYPE_USER0,
    LINKTYPE_USER1,
    Reader,
    RecordingError,
    Writer,
    pcapng,
    read_all,
)

T0_NS = 1_767_225_600_000_000_000


@given(st.integers(0, 7), st.integers(0, 2**64 - 1), st.binary(max_size=300),
       st.sampled_from([1, 2]))
def test_fast_epb_is_the_construct_declaration(interface, time_ns, data, flags):
    packed = pcapng.pack_epb(interface, time_ns, data, flags)
    assert packed == pcapng.build_epb(interface, time_ns, data, flags)
    parsed = pcapng.EpbBody.parse(pcapng.Block.parse(packed).body)
    head = pcapng.unpack_epb_head(packed)
    assert (head[2], head[3] << 32 | head[4], head[5]) == (
        parsed.interface_id, parsed.ts_high << 32 | parsed.ts_low, len(parsed.data))
    assert parsed.data == data
    assert pcapng.epb_flags(packed, 28 + len(data) + (-len(data) % 4), len(packed) - 4) == flags
    assert dict(pcapng.option_values(parsed.options)) == {
        pcapng.EPB_FLAGS: flags.to_bytes(4, "little")}


def _session(n=20):
    buf = io.BytesIO()
    with Writer(buf, meta={"clock": "virtual", "seed": 3, "devices": [7]}) as writer:
        link = writer.interface("dev7", description="link of 7", meta={"device_id": 7})
        stim = writer.interface("stimuli", linktype=LINKTYPE_USER1)
        writer.stimulus(stim, T0_NS, {"device": 7, "kind": "button", "hold_ms": 2000})
        for i in range(n):
            writer.frame(link, T0_NS + i * 1_000_123, bytes([i + 1]) * (i % 9 + 1) + b"\x00",
                         "up" if i % 3 else "down")
    return buf.getvalue()


def test_round_trip_keeps_meta_interfaces_times_directions_and_stimuli():
    reader = Reader(io.BytesIO(_session()))
    packets = list(reader)
    assert reader.error is None
    assert reader.meta == {"clock": "virtual", "seed": 3, "devices": [7],
                           "format": "vigil-recording", "version": 1}
    assert [(i.linktype, i.name, i.device_id) for i in reader.interfaces] == [
        (LINKTYPE_USER0, "dev7", 7), (LINKTYPE_USER1, "stimuli", None)]
    assert packets[0].stimulus() == {"device": 7, "kind": "button", "hold_ms": 2000}
    frames = packets[1:]
    assert [p.time_ns for p in frames] == [T0_NS + i * 1_000_123 for i in range(20)]
    assert [p.direction for p in frames] == ["up" if i % 3 else "down" for i in range(20)]
    assert [p.data for p in frames] == [bytes([i + 1]) * (i % 9 + 1) + b"\x00"
                                        for i in range(20)]


def test_every_cut_keeps_the_whole_packets_before_it_and_says_where_it_stopped():
    data = _session(6)
    whole = list(Reader(io.BytesIO(data)))
    ends = sorted(p.offset for p in whole)
    for cut in range(ends[0], len(data)):
        reader = Reader(io.BytesIO(data[:cut]), chunk_size=7)  # tiny chunks: every boundary
        got = list(reader)
        complete = [p for p in whole if p.offset + _block_len(data, p.offset) <= cut]
        assert [p.data for p in got] == [p.data for p in complete], cut
        at_boundary = cut in {p.offset + _block_len(data, p.offset) for p in whole} | {ends[0]}
        if at_boundary:
            assert reader.error is None, cut
        else:
            assert reader.error.startswith("stopped at byte %d:" % max(
                [ends[0]] + [p.offset + _block_len(data, p.offset) for p in complete])), cut


def _block_len(data, offset):
    return int.from_bytes(data[offset + 4:offset + 8], "little")


def test_corrupt_blocks_stop_with_one_line():
    data = bytearray(_session(4))
    packets = list(Reader(io.BytesIO(bytes(data))))
    third = packets[2].offset
    bad = bytearray(data)
    bad[third + 4:third + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    reader = Reader(io.BytesIO(bytes(bad)))
    assert len(list(reader)) == 2
    assert reader.error == "stopped at byte %d: corrupt block length %d" % (third, 0xFFFFFFF0)
    bad = bytearray(data)
    bad[third + _block_len(data, third) - 1] ^= 1  # trailing length
    reader = Reader(io.BytesIO(bytes(bad)))
    assert len(list(reader)) == 2 and "trailing length" in reader.error
    bad = bytearray(data)
    bad[third + 8] = 9  # interface 9 was never declared
    reader = Reader(io.BytesIO(bytes(bad)))
    assert len(list(reader)) == 2 and "interface 9 not declared" in reader.error


def test_not_pcapng_and_big_endian_are_refused_in_one_line(tmp_path):
    with pytest.raises(RecordingError, match="not a pcapng file"):
        Reader(io.BytesIO(b"hello world"))
    with pytest.raises(RecordingError, match="cannot read"):
        Reader(str(tmp_path / "missing.pcapng"))
    big = bytearray(_session(1))
    big[8:12] = (0x1A2B3C4D).to_bytes(4, "big")
    reader = Reader(io.BytesIO(bytes(big)))
    assert list(reader) == []
    assert "big-endian" in reader.error and "\n" not in reader.error


def test_other_block_types_are_skipped(tmp_path):
    data = _session(2)
    first_packet = list(Reader(io.BytesIO(data)))[0].offset
    custom = pcapng.block(0x00000BAD, b"\x00\x00\x00\x00vigil!!!")  # a custom block
    spliced = data[:first_packet] + custom + data[first_packet:]
    reader, packets = read_all(_write(tmp_path, spliced))
    assert reader.error is None and len(packets) == 3


def _write(tmp_path, data):
    path = tmp_path / "x.pcapng"
    path.write_bytes(data)
    return str(path)


def test_meta_is_json_in_a_section_comment():
    data = _session(0)
    shb = pcapng.ShbBody.parse(pcapng.Block.parse(data).body)
    comments = [v for c, v in pcapng.option_values(shb.options) if c == pcapng.OPT_COMMENT]
    assert len(comments) == 1 and comments[0].startswith(b"vigil-meta ")
    assert json.loads(comments[0][len(b"vigil-meta "):])["seed"] == 3
