"""The construct reference (written from SPEC.md) against the codecs: its encoder builds the
same bytes, its COBS and CRC match, and it refuses what they refuse with the same reason."""
import os

from hypothesis import given
from hypothesis import strategies as st

from protocol import codec, framing, host_fast, host_reference
from tests.test_protocol_roundtrip import KEY, sealed


@given(sealed())
def test_reference_encoder_builds_the_same_bytes(case):
    name, fields, downlink, device_id, key_id, counter, flags, wire = case
    assert host_reference.encode_frame(name, fields, device_id, key_id, KEY, counter,
                                       downlink, flags) == wire


@given(st.binary(max_size=600))
def test_cobs_and_crc_match_the_codec(data):
    assert host_reference.cobs_stuff(data) == framing.cobs_encode(data)
    assert host_reference.cobs_unstuff(framing.cobs_encode(data)) == data
    assert host_reference.crc16_ccitt_false(data) == framing.crc16(data)


def test_crc_check_value():
    assert host_reference.crc16_ccitt_false(b"123456789") == 0x29B1


@given(sealed(), st.binary(min_size=1, max_size=6), st.integers(0, 300))
def test_reference_and_codecs_refuse_alike(case, noise, where):
    name, fields, downlink, device_id, key_id, counter, flags, wire = case
    block = bytearray(wire[:-1])
    position = where % (len(block) + 1)
    block[position:position] = noise.replace(b"\x00", b"\x01")
    block = bytes(block)
    keys = {(device_id, key_id): KEY}
    try:
        host_reference.decode_frame(block, keys, downlink, test_mode=True)
        expected = None
    except host_reference.Refused as refused:
        expected = refused.reason
    portable = codec.Keyring()
    portable.add(device_id, key_id, KEY)
    fast = host_fast.Keyring()
    fast.add(device_id, key_id, KEY)
    for receiver in (codec.Receiver(portable, downlink, False, True),
                     host_fast.FastReceiver(fast, downlink, False, True)):
        try:
            receiver.open(block)
            got = None
        except codec.FrameError as e:
            got = e.reason
        assert got == expected


def test_reference_imports_no_codec_tables():
    source = open(os.path.join(os.path.dirname(host_reference.__file__),
                               "host_reference.py")).read()
    assert "from protocol" not in source and "import protocol" not in source
