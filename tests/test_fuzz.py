"""A small, fast version of bench/fuzz.py: mutated and random inputs through the centre's
receive path, both codecs and `vigil decode`'s decoder. Nothing may raise, and the centre
may deliver neither a forged frame nor a genuine one twice."""
from hypothesis import given, settings
from hypothesis import strategies as st

from host.centre import fuzzing

TARGET = fuzzing.FuzzTarget()


def _clean(target):
    stats = target.stats()
    assert target.first_crash is None, target.first_crash
    assert (stats["crashes"], stats["forged_accepted"], stats["replayed_accepted"]) == (0, 0, 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes(data):
    TARGET.run(data)
    _clean(TARGET)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TARGET.corpus), st.integers(0, 300), st.binary(max_size=8))
def test_genuine_frames_with_bytes_spliced_in(wire, at, junk):
    TARGET.run(wire[:at] + junk + wire[at:])
    _clean(TARGET)


def test_structure_aware_mutants_reach_the_tag_check_and_are_all_refused():
    target = fuzzing.fuzz(2_000, seed=11)
    _clean(target)
    assert target.stats()["inputs"] >= 2_000
    # The mutator gets past framing: many mutants are refused only at the tag or later.
    refused = target.centre.refused
    assert refused.get("bad_tag", 0) + refused.get("unknown_key", 0) > 100
    assert refused.get("bad_version", 0) > 10


def test_the_oracle_catches_a_replay_and_a_forgery():
    """The oracles can fail: a centre that forgets its windows delivers a replay, and one
    that skips the tag check delivers a forgery."""
    target = fuzzing.FuzzTarget()
    target.centre._windows.clear()
    target.centre.evidence.delivered = lambda *a, **k: False
    target.run(target.corpus[1])  # the genuine HEARTBEAT again
    assert target.stats()["replayed_accepted"] == 1
    forged = bytearray(target.corpus[1])
    target.centre.evidence.frame("t", "x", "delivered",
                                 type("F", (), {"raw": bytes(forged[:-1]), "device_id": 7,
                                                "key_id": 1, "counter": 99, "name": "HEARTBEAT",
                                                "flags": 1, "historic": False,
                                                "fields": {}})())
    assert target.stats()["forged_accepted"] == 1
