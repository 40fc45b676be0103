"""The golden vectors (protocol/vectors/vectors.json) against every implementation: the
portable codec on CPython and under the real MicroPython VM, the host fast path and the
construct reference (SPEC 12)."""
import json

import pytest

from protocol import codec, host_fast, host_make_vectors, host_reference, host_tables, messages
from tests.vm import MICROPYTHON, device_lib, needs_micropython, run_micropython

VECTORS = json.loads(host_make_vectors.VECTORS_PATH.read_text())
KEYS = {(k["device_id"], k["key_id"]): bytes.fromhex(k["key"]) for k in VECTORS["keys"]}


def test_vectors_file_is_generated_from_the_current_code():
    assert host_make_vectors.main(["--check"]) == 0
    assert VECTORS["schema_hash"] == messages.SCHEMA_HASH
    names = {f["message"] for f in VECTORS["frames"]}
    assert names == {entry[1] for entry in messages.MESSAGES}
    reasons = {b["reason"] for b in VECTORS["bad_frames"]}
    assert reasons == set(host_tables.REASONS)


def _receiver(module, downlink, test_mode):
    keyring = module.Keyring()
    for (device_id, key_id), key in KEYS.items():
        keyring.add(device_id, key_id, key)
    cls = codec.Receiver if module is codec else host_fast.FastReceiver
    return cls(keyring, downlink=downlink, test_mode=test_mode)


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=lambda v: v["name"])
def test_good_vector(vector):
    key = bytes.fromhex(vector["key"])
    wire = bytes.fromhex(vector["wire"])
    fields = host_make_vectors.from_jsonable(vector["fields"])
    args = (vector["device_id"], vector["key_id"], key)
    seal = (vector["message"], fields, vector["extra_flags"], vector["counter"])
    assert codec.Sender(*args, downlink=vector["downlink"]).seal(*seal) == wire
    assert host_fast.FastSender(*args, downlink=vector["downlink"]).seal(*seal) == wire
    assert codec.framing.cobs_encode(bytes.fromhex(vector["body"])) + b"\x00" == wire
    for module in (codec, host_fast):
        [frame] = _receiver(module, vector["downlink"], True).feed(wire)
        assert isinstance(frame, codec.Frame), frame
        assert (frame.name, frame.fields, frame.counter, frame.flags) == (
            vector["message"], fields, vector["counter"], vector["flags"])
    decoded = host_reference.decode_frame(wire[:-1], KEYS, vector["downlink"], test_mode=True)
    assert (decoded["name"], decoded["fields"], decoded["flags"]) == (
        vector["message"], fields, vector["flags"])


@pytest.mark.parametrize("vector", VECTORS["bad_frames"], ids=lambda v: v["name"])
def test_bad_vector(vector):
    wire = bytes.fromhex(vector["wire"])
    for module in (codec, host_fast):
        receiver = _receiver(module, vector["downlink"], vector["test_mode"])
        for prior in vector["prior"]:
            assert all(isinstance(i, codec.Frame) for i in receiver.feed(bytes.fromhex(prior)))
        [item] = receiver.feed(wire)
        assert isinstance(item, codec.FrameError) and item.reason == vector["reason"], item
    if vector["reason"] != "replayed":  # the reference is stateless
        with pytest.raises(host_reference.Refused) as refused:
            host_reference.decode_frame(wire[:-1], KEYS, vector["downlink"],
                                        vector["test_mode"])
        assert refused.value.reason == vector["reason"]


@pytest.mark.parametrize("stream", VECTORS["streams"], ids=lambda v: v["name"])
def test_stream_vector(stream):
    for module in (codec, host_fast):
        items = _receiver(module, stream["downlink"], False).feed(bytes.fromhex(stream["data"]))
        got = [i.reason if isinstance(i, codec.FrameError) else i.name for i in items]
        assert got == stream["expect"]


# Under the real VM: the device's /lib compiled to .mpy, run in a 48 KiB heap (the .py
# sources do not fit there), fed one compact vector per line on stdin so the whole file never
# has to be in the VM's heap at once.
_VM_SCRIPT = """
import sys, json, binascii, gc
from protocol import codec
def conv(fields):
    if "data" in fields:
        fields["data"] = binascii.unhexlify(fields["data"])
    if "items" in fields:
        fields["items"] = [tuple(i) for i in fields["items"]]
    return fields
checked = 0
while True:
    line = sys.stdin.readline()
    if not line:
        break
    v = json.loads(line)
    wire = binascii.unhexlify(v.pop("w"))
    del line
    gc.collect()  # the JSON text and its hex are gone: room for the keys
    ring = codec.Keyring()
    for d, i, k in v["keys"]:
        ring.add(d, i, binascii.unhexlify(k))
    rx = codec.Receiver(ring, downlink=v["dl"], test_mode=v["tm"])
    if v["t"] == "good":
        fields = conv(v["x"])
        d, i, k = v["keys"][0]
        tx = codec.Sender(d, i, binascii.unhexlify(k), v["dl"])
        if tx.seal(v["m"], fields, v["f"], v["c"]) != wire:
            print("FAIL seal", v["n"])
        del tx
        items = rx.feed(wire)
        if len(items) != 1 or not isinstance(items[0], codec.Frame) or \\
                items[0].fields != fields or items[0].counter != v["c"]:
            print("FAIL open", v["n"], items)
    else:
        for p in v["p"]:
            rx.feed(binascii.unhexlify(p))
        items = rx.feed(wire)
        if len(items) != 1 or getattr(items[0], "reason", None) != v["r"]:
            print("FAIL bad", v["n"], items)
    checked += 1
    v = ring = rx = wire = items = fields = None
    gc.collect()
print("checked", checked)
"""


def _vm_lines():
    """One self-contained JSON line per vector, with only the keys it needs."""
    def key(device_id, key_id):
        return [device_id, key_id, KEYS[(device_id, key_id)].hex()]
    lines = []
    for v in VECTORS["frames"]:
        lines.append({"t": "good", "n": v["name"], "keys": [key(v["device_id"], v["key_id"])],
                      "dl": v["downlink"], "tm": True, "c": v["counter"],
                      "f": v["extra_flags"], "m": v["message"], "x": v["fields"],
                      "w": v["wire"]})
    for v in VECTORS["bad_frames"]:
        lines.append({"t": "bad", "n": v["name"], "keys": [key(1, 1), key(1, 0xFF)],
                      "dl": v["downlink"], "tm": v["test_mode"], "r": v["reason"],
                      "p": v["prior"], "w": v["wire"]})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


# The whole file runs in a 128 KiB heap; a 56 KiB heap holds the vectors whose JSON line is
# short (the codec and message tables alone take ~40 KiB on this 64-bit VM since the MODE and
# TEST_INJECT types and the HELLO/HEARTBEAT mode fields; 48 KiB no longer fits, 52 KiB does).
@pytest.mark.micropython
@needs_micropython
@pytest.mark.parametrize("heapsize, max_line", [("128K", None), ("56K", 420)])
def test_vectors_under_micropython(tmp_path, heapsize, max_line):
    assert MICROPYTHON
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "vector_check.py").write_text(_VM_SCRIPT)  # compiled too: saves heap
    lib = device_lib(tmp_path, compiled=True)
    lines = _vm_lines().splitlines(keepends=True)
    if max_line:
        lines = [line for line in lines if len(line) <= max_line]
    assert len(lines) >= 20
    result = run_micropython("import vector_check", heapsize=heapsize, path=[lib],
                             stdin=b"".join(lines), timeout_s=120)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "FAIL" not in out, out
    assert out.strip().splitlines()[-1] == "checked %d" % len(lines)
