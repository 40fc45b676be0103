"""`vigil keys new|list|export` and `vigil emulate --keys`: a key store with mode 0600 that
never overwrites a key nor prints one in a listing, and the keys of an emulated session that
let `vigil decode --key-file` verify and decrypt what the session sent."""
import hashlib
import json
import os
import stat

import pytest

from host import cli, emulate
from host.keys import load_keys
from tests.scenario_text import TWO_DEVICES as SHORT


def vigil(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_list_export(capsys, tmp_path):
    store = tmp_path / "store.json"
    code, out, err = vigil(capsys, "keys", "new", store, "--device", 1004)
    assert code == 0, err
    assert out.startswith("device 1004 key 0 added to %s" % store)
    assert mode(store) == 0o600
    assert vigil(capsys, "keys", "new", store, "--device", 1004)[0] == 0   # key 1: rotation
    assert vigil(capsys, "keys", "new", store, "--device", 9, "--key-id", 5)[0] == 0
    keys = load_keys(store)
    assert keys.key_ids(1004) == [0, 1] and keys.key_ids(9) == [5]
    assert keys.get(1004, 0) != keys.get(1004, 1), "every key is fresh"
    assert mode(store) == 0o600, "rewritten with the same mode"

    code, out, _err = vigil(capsys, "keys", "list", store)
    assert code == 0
    assert out.splitlines() == [
        "device %d key %d fingerprint %s" % (d, k, hashlib.sha256(keys.get(d, k)).hexdigest()[:8])
        for d, k in ((9, 5), (1004, 0), (1004, 1))]
    for device_id, key_id in ((9, 5), (1004, 0), (1004, 1)):
        assert keys.get(device_id, key_id).hex() not in out, "list never prints a key"

    code, out, _err = vigil(capsys, "keys", "export", store, "--device", 1004)
    assert code == 0
    exported = json.loads(out)
    assert [(e["device_id"], e["key_id"]) for e in exported] == [(1004, 0), (1004, 1)]
    assert exported[0]["key"] == keys.get(1004, 0).hex()

    out_file = tmp_path / "centre-keys.json"
    assert vigil(capsys, "keys", "export", store, "--out", out_file)[0] == 0
    assert mode(out_file) == 0o600
    assert len(load_keys(out_file)) == 3


def test_a_key_is_never_overwritten(capsys, tmp_path):
    store = tmp_path / "store.json"
    vigil(capsys, "keys", "new", store, "--device", 5, "--key-id", 2)
    before = store.read_bytes()
    code, out, err = vigil(capsys, "keys", "new", store, "--device", 5, "--key-id", 2)
    assert code == 2 and out == "" and "already has key 2" in err
    assert store.read_bytes() == before


@pytest.mark.parametrize("argv, names", [
    (["keys"], ["vigil keys", "required"]),
    (["keys", "list", "/no/such/store.json"], ["/no/such/store.json", "cannot read"]),
    (["keys", "new", "/no/such/dir/store.json", "--device", "1"], ["/no/such/dir/store.json"]),
    (["keys", "new", "S", "--device", "-1"], ["--device"]),
    (["keys", "new", "S", "--device", "4294967296"], ["--device"]),
    (["keys", "new", "S", "--device", "1", "--key-id", "256"], ["--key-id"]),
    (["keys", "export", "S", "--device", "8"], ["no key for device 8"]),
])
def test_bad_keys_commands_are_one_line_exit_2(capsys, tmp_path, argv, names):
    store = tmp_path / "store.json"
    store.write_text("[]")
    argv = [str(store) if a == "S" else a for a in argv]
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)


def test_emulate_keys_let_decode_verify_and_decrypt_the_session(capsys, tmp_path):
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    keys, trace = tmp_path / "run-keys.json", tmp_path / "trace.jsonl"
    code, _out, err = vigil(capsys, "emulate", scenario, "--seed", 9, "--keys", keys,
                            "--trace", trace, "--json")
    assert code == 0, err
    assert mode(keys) == 0o600
    store = load_keys(keys)
    assert store.devices() == [77, 78]
    assert store.get(77, emulate.KEY_ID) == emulate.device_key(9, 77), "the --seed's keys"

    # What crossed the link, as a capture would hold it.
    capture = tmp_path / "session.bin"
    with open(capture, "wb") as f:
        for line in trace.read_text().splitlines():
            event = json.loads(line)
            if event["kind"] == "uplink" and event["device"] == 77:
                f.write(bytes.fromhex(event["detail"].split()[0]))

    code, out, err = vigil(capsys, "decode", capture, "--key-file", keys, "--json")
    frames = [json.loads(line) for line in out.splitlines()]
    assert frames and err == ""
    verified = [f for f in frames if f.get("tag") == "verified"]
    assert len(verified) == len(frames), [f for f in frames if f.get("tag") != "verified"]
    alarms = [f for f in verified if f["name"] == "ALARM"]
    assert alarms and alarms[0]["fields"]["kind"] == 1, "the panic, decrypted"

    code, out, _err = vigil(capsys, "decode", capture, "--json")
    unkeyed = [json.loads(line) for line in out.splitlines()]
    assert all(f.get("tag") != "verified" for f in unkeyed)
    assert all(f["fields"] is None for f in unkeyed if f.get("name") == "ALARM"), \
        "without the keys an alarm's payload stays secret"


def test_emulate_keys_unwritable_is_one_line(capsys, tmp_path):
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    code, out, err = vigil(capsys, "emulate", scenario, "--keys", tmp_path / "no" / "k.json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--keys" in err
